"""Tuning curves, frontier, compute-to-target and budgets on data with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.curves import (
    compute_to_reach,
    expected_max_curve,
    expected_max_weights,
    frontier,
    reached_by_budget,
)


def test_expected_max_is_the_exact_average_over_subsets():
    y = np.array([0.3, 0.1, 0.9, 0.5, 0.7])
    curve = expected_max_curve(y)
    for k in range(1, 6):
        brute = np.mean([max(s) for s in itertools.combinations(y, k)])
        assert curve[k - 1] == pytest.approx(brute)
    assert curve[0] == pytest.approx(y.mean()) and curve[-1] == pytest.approx(y.max())
    assert expected_max_curve(y, mode="min")[-1] == pytest.approx(y.min())


def test_expected_max_is_unbiased_where_the_bootstrap_max_is_not():
    rng = np.random.default_rng(0)
    k, n, trials = 5, 10, 4000
    truth = np.mean(rng.random((200_000, k)).max(axis=1))  # E[max of 5 U(0,1)] = 5/6
    ours, boot = [], []
    for _ in range(trials):
        y = rng.random(n)
        ours.append(expected_max_curve(y, k)[k - 1])
        boot.append(np.mean(y[rng.integers(0, n, (200, k))].max(axis=1)))
    assert np.mean(ours) == pytest.approx(truth, abs=0.005)
    assert np.mean(boot) < truth - 0.02  # the bootstrap max is biased low with n = 10


def test_weights_large_n_do_not_overflow():
    w = expected_max_weights(5000, 50)
    assert np.all(np.isfinite(w)) and w.sum(axis=0) == pytest.approx(np.ones(50))


def _curves() -> pd.DataFrame:
    # run a reaches 0.5 at 10 FLOPs and 0.8 at 30; run b reaches 0.6 at 20
    return pd.DataFrame(
        {
            "run_id": ["a", "a", "a", "b", "b"],
            "step": [1, 2, 3, 1, 2],
            "flops": [10.0, 20.0, 30.0, 10.0, 20.0],
            "success": [0.5, 0.4, 0.8, 0.1, 0.6],
        }
    )


def test_frontier_is_the_upper_envelope():
    f = frontier(
        _curves(), "success", grid=np.array([5.0, 10.0, 20.0, 30.0]), reps=50, rng=np.random.default_rng(0)
    )
    assert np.isnan(f.frontier[0])
    assert f.frontier[1:].tolist() == [0.5, 0.6, 0.8]
    assert np.all(f.lo[1:] <= f.frontier[1:]) and np.all(f.frontier[1:] <= f.hi[1:])


def test_compute_to_reach_with_groups():
    groups = pd.Series({"a": "sft+rl", "b": "sft"})
    r = compute_to_reach(_curves(), "success", 0.6, groups=groups, rng=np.random.default_rng(0), reps=100)
    r = r.set_index("group")
    assert r.loc["sft+rl", "flops_to_target"] == 30.0
    assert r.loc["sft", "flops_to_target"] == 20.0
    none = compute_to_reach(_curves(), "success", 0.99, rng=np.random.default_rng(0), reps=10)
    assert np.isnan(none.flops_to_target[0]) and none.p_reached[0] == 0.0


def test_reached_by_budget_uses_the_rolling_mean_rule():
    scores = reached_by_budget(_curves(), "success", 20.0)
    # run a evals <= 20: [0.5, 0.4]: rolling means [0.5, 0.45] -> first eval, raw 0.5
    assert scores.to_dict() == {"a": 0.5, "b": 0.6}
    assert reached_by_budget(_curves(), "success", 1.0).empty


def test_reached_by_budget_is_the_shared_checkpoint_rule():
    from analysis.selection import select_checkpoint

    curves = pd.DataFrame(
        {
            "run_id": ["a"] * 5,
            "step": range(5),
            "flops": [1.0, 2, 3, 4, 5],
            "success": [0.2, np.nan, 0.9, 0.1, 0.3],
        }
    )
    for budget in (2.0, 3.0, 5.0):
        values = curves.success[curves.flops <= budget].to_numpy()
        assert reached_by_budget(curves, "success", budget)["a"] == values[select_checkpoint(values)]
    only_nan = curves.assign(success=np.nan)
    assert reached_by_budget(only_nan, "success", 5.0).empty


def test_distribution_free_band_holds_the_true_curve_and_the_estimate():
    from analysis.curves import tuning_curve_band

    rng = np.random.default_rng(0)
    levels = np.linspace(0, 1, 11)
    pmf = rng.dirichlet(np.ones(11))
    cdf = np.cumsum(pmf)
    k = np.arange(1, 31)
    truth = (levels[:, None] * (cdf[:, None] ** k - np.r_[0, cdf[:-1]][:, None] ** k)).sum(axis=0)
    inside = 0
    for _ in range(200):
        y = rng.choice(levels, size=30, p=pmf)
        lo, hi = tuning_curve_band(y, bounds=(0.0, 1.0))
        plug_in = np.array([np.mean(y[rng.integers(0, 30, (4000, kk))].max(axis=1)) for kk in (1, 5, 30)])
        assert np.all(lo[[0, 4, 29]] <= plug_in + 0.01) and np.all(plug_in <= hi[[0, 4, 29]] + 0.01)
        inside += np.all((lo <= truth + 1e-12) & (truth <= hi + 1e-12))
    assert inside / 200 >= 0.95  # simultaneous, distribution-free: at least the nominal level
    lo_min, hi_min = tuning_curve_band(y, bounds=(0.0, 1.0), mode="min")
    assert np.all(np.diff(hi_min) <= 1e-12) and np.all(lo_min <= hi_min)  # expected minimum falls with k
    with pytest.raises(ValueError, match="--bounds"):
        tuning_curve_band(y + 5, bounds=(0.0, 1.0))
