"""The package facade: every public name resolves, and `import analysis` stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import analysis


def test_every_public_name_resolves_to_its_module_attribute():
    for name in analysis.__all__:
        assert callable(getattr(analysis, name)), name
    assert analysis.iqm([0, 1, 2, 3, 100]) == pytest.approx(2.0)
    assert analysis.select_checkpoint([0.1, 0.9, 0.8, 0.0]) == 2  # rolling means 0.1, 0.5, 0.6, 0.57
    with pytest.raises(AttributeError, match="public names"):
        analysis.no_such_name  # noqa: B018


def test_import_analysis_and_selection_import_no_pandas_scipy_or_matplotlib():
    code = (
        "import sys, analysis, analysis.selection\n"
        "print(sorted(m for m in ('pandas', 'scipy', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_facade_runs_a_small_study():
    runs, _, _ = analysis.simulate_study(300, seed=3)
    prepared = analysis.prepare_runs(
        runs, metric="metrics.heldout_goal_success", stratum="params.sft_checkpoint"
    )
    table = analysis.algorithm1_table(prepared)
    assert np.allclose(table.groupby(["stratum", "hparam"]).win_rate.sum(), 1.0)
    effects, _ = analysis.main_effects(
        prepared.frame, metric=prepared.metric, stratum=prepared.stratum, hparams=prepared.hparams
    )
    assert set(effects.stratum) == {"0", "2.5e+18", "7.6e+18"}
