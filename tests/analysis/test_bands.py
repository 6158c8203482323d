"""Distribution-free CDF bands: the exact coverage recursion, Learned-Miller-DeStefano's level, the table."""

import numpy as np
import pytest
from scipy.special import betaincinv

from analysis.bands import _equal_tailed, beta_quantiles, cdf_band, ld_pointwise_level, simultaneous_coverage


@pytest.mark.parametrize("n", [1, 4, 60, 333])
@pytest.mark.parametrize("q", [1e-5, 0.025, 0.5, 0.975])
def test_beta_quantiles_match_scipy(n, q):
    i = np.arange(1, n + 1)
    np.testing.assert_allclose(beta_quantiles(n, q), betaincinv(i, n + 1 - i, q), rtol=1e-9, atol=1e-13)


def test_coverage_recursion_by_hand_and_against_simulation():
    assert simultaneous_coverage([0.2], [0.7]) == pytest.approx(0.5)  # n = 1: P(0.2 <= U <= 0.7)
    # n = 2, band [0, 1/2] x [1/2, 1]: U_(1) <= 1/2 <= U_(2), i.e. one uniform each side: 2 (1/2)(1/2)
    assert simultaneous_coverage([0.0, 0.5], [0.5, 1.0 - 1e-15]) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    for n in (3, 25):
        lo = np.sort(rng.uniform(0, 0.6, n)) * np.linspace(0.2, 1, n)
        lo, hi = np.sort(lo), np.minimum(np.sort(lo + rng.uniform(0.2, 0.5, n)), 1 - 1e-12)
        u = np.sort(rng.random((200_000, n)), axis=1)
        simulated = ((u >= lo) & (u <= hi)).all(axis=1).mean()
        assert simultaneous_coverage(lo, hi) == pytest.approx(simulated, abs=0.004)


@pytest.mark.parametrize("n", [1, 2, 17, 120])
def test_ld_level_makes_the_band_simultaneous_at_exactly_95_percent(n):
    alpha = ld_pointwise_level(n, 0.95, table=False)
    lo, hi = beta_quantiles(n, alpha / 2), beta_quantiles(n, 1 - alpha / 2)
    assert simultaneous_coverage(lo, hi) == pytest.approx(0.95, abs=1e-8)
    assert alpha == pytest.approx(ld_pointwise_level(n, 0.95), rel=1e-6)  # the shipped table agrees
    if n == 1:
        assert alpha == pytest.approx(0.05)


def test_ld_band_covers_a_continuous_cdf_at_exactly_the_nominal_rate_and_dkw_over_covers():
    rng = np.random.default_rng(1)
    n, studies = 20, 20_000
    y = np.sort(rng.random((studies, n)), axis=1)  # F(t) = t
    left, right = np.hstack([np.zeros((studies, 1)), y]), np.hstack([y, np.ones((studies, 1))])
    rates = {}
    for method in ("ld_equal_tailed", "ld_highest_density", "dkw"):
        lower, upper = cdf_band(n, method=method)  # on [y_(i), y_(i+1)): F in [lower_i, upper_i]
        rates[method] = ((lower <= left) & (right <= upper)).all(axis=1).mean()
    assert rates["ld_equal_tailed"] == pytest.approx(0.95, abs=0.005)  # exact (sd 0.0015), not merely >= 95%
    assert rates["ld_highest_density"] == pytest.approx(0.95, abs=0.005)
    assert rates["dkw"] > 0.955  # conservative


def test_ld_band_is_tighter_than_dkw_at_the_ends():
    ld, dkw = cdf_band(100), cdf_band(100, method="dkw")
    assert ld[1][0] < dkw[1][0] and ld[0][-1] > dkw[0][-1]  # upper at the bottom, lower at the top
    with pytest.raises(ValueError, match="ld_equal_tailed, ld_highest_density, dkw"):
        cdf_band(10, method="ks")


def test_highest_density_intervals_are_opdas_and_the_shortest():
    from analysis.bands import _beta_cdf_density, highest_density_intervals

    lo, hi = highest_density_intervals(10, 0.9)
    # opda 0.8's utils.beta_highest_density_interval(i, 11 - i, 0.9) for i = 2, 3, 4
    np.testing.assert_allclose(lo[1:4], [0.013183, 0.06375, 0.133701], atol=1e-6)
    np.testing.assert_allclose(hi[1:4], [0.343473, 0.47139, 0.586316], atol=1e-6)
    assert lo[0] == 0.0 and hi[0] == pytest.approx(1 - 0.1 ** (1 / 10))  # Beta(1, n): decreasing density
    assert hi[-1] == 1.0 and lo[-1] == pytest.approx(0.1 ** (1 / 10))
    for n in (3, 40, 200):
        lo, hi = highest_density_intervals(n, 0.99)
        cdf_lo, dens_lo = _beta_cdf_density(n, lo)
        cdf_hi, dens_hi = _beta_cdf_density(n, hi)
        np.testing.assert_allclose((cdf_hi - cdf_lo)[1:-1], 0.99, atol=1e-10)  # the coverage asked for
        np.testing.assert_allclose(dens_lo[1:-1], dens_hi[1:-1], rtol=1e-8)  # equal densities: shortest
        et_lo, et_hi = _equal_tailed(n, 0.01)
        assert np.all(hi - lo <= et_hi - et_lo + 1e-12)


def test_highest_density_band_is_narrower_at_the_ends_than_equal_tailed():
    (et_lo, et_hi), (hd_lo, hd_hi) = cdf_band(50), cdf_band(50, method="ld_highest_density")
    assert hd_hi[0] < et_hi[0] and hd_lo[-1] > et_lo[-1]
