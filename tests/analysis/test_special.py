"""analysis._special against scipy.special (a test-only dependency here): the report imports no scipy."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.special import gammaln, stdtr, stdtrit

from analysis._special import log_factorials, t_cdf, t_quantile


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 30, 101, 433, 1309, 20_000])
@pytest.mark.parametrize("p", [0.001, 0.5, 0.9, 0.975, 0.99, 1 - 0.025 / 12, 0.99999])
def test_t_quantile_matches_scipy(dof, p):
    assert t_quantile(dof, p) == pytest.approx(stdtrit(dof, p), rel=1e-9, abs=1e-12)
    assert t_cdf(float(stdtrit(dof, p)), dof) == pytest.approx(p, rel=1e-10)


def test_t_cdf_matches_scipy_over_a_grid():
    for dof in (1, 2, 5, 6, 50):
        for t in (-8.0, -1.3, 0.0, 0.2, 2.5, 40.0):
            assert t_cdf(t, dof) == pytest.approx(stdtr(dof, t), rel=1e-11, abs=1e-15)


def test_t_quantile_rejects_non_integer_dof():
    with pytest.raises(ValueError, match="positive integer"):
        t_quantile(2.5, 0.9)


def test_log_factorials_match_gammaln():
    np.testing.assert_allclose(log_factorials(2000), gammaln(np.arange(2001) + 1.0), rtol=1e-12, atol=1e-9)


def test_the_report_modules_import_no_scipy():
    code = "import sys, analysis.report, analysis.curves, analysis.effects; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
