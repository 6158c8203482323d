"""Algorithm 1: hand-computed tiny tables, exact vs Monte Carlo vs the plain loop, determinism, conditionals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.bootstrap import (
    ALGORITHM1_COLUMNS,
    algorithm1,
    algorithm1_exact,
    algorithm1_loop,
    algorithm1_mc,
    algorithm1_table,
)
from analysis.runs import prepare_runs


def test_three_runs_by_hand():
    # a: 1.0 and 0.0 (weight 1/4 each), b: 0.5 (weight 1/2); n = 3 draws.
    # a wins iff its 1.0 run is drawn (1 - (3/4)^3 = 37/64) or every draw is a's 0.0 run ((1/4)^3 = 1/64).
    t = algorithm1_exact(np.array([1.0, 0.0, 0.5]), ["a", "a", "b"])
    assert t.values == ("a", "b")
    assert t.win_rate == pytest.approx([38 / 64, 26 / 64])
    # a's best given a drawn (P = 7/8): 1.0 with prob (37/64)/(7/8) = 37/56, else 0.0
    assert t.best_mean == pytest.approx([37 / 56, 0.5])
    assert (t.best_lo[0], t.best_hi[0]) == (0.0, 1.0)
    assert t.n_runs.tolist() == [2, 1]


def test_ties_are_split_uniformly_among_tied_draws():
    # two runs tie at the top with different values and equal weight: each wins half of the time.
    t = algorithm1_exact(np.array([1.0, 1.0]), ["a", "b"])
    assert t.win_rate == pytest.approx([0.5, 0.5])
    # 4 runs: a has one run at 1.0 and one at 0 (weights 1/4 each); b one run at 1.0 (weight 1/2), n = 3.
    # P(max = 1) = 1 - (1/4)^3; at the top level a's share is (1/4)/(3/4) = 1/3.
    t = algorithm1_exact(np.array([1.0, 0.0, 1.0]), ["a", "a", "b"])
    p_top = 1 - (1 / 4) ** 3
    assert t.win_rate[0] == pytest.approx(p_top / 3 + (1 / 4) ** 3)


def test_mode_min_mirrors_mode_max():
    y = np.array([0.3, 0.9, 0.5, 0.1, 0.7])
    labels = ["a", "b", "a", "c", "b"]
    lo = algorithm1_exact(y, labels, mode="min")
    hi = algorithm1_exact(-y, labels, mode="max")
    assert lo.win_rate == pytest.approx(hi.win_rate)
    assert lo.best_mean == pytest.approx(-hi.best_mean)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_mc_and_loop_converge_to_exact(mode):
    rng = np.random.default_rng(0)
    y = np.round(rng.random(40), 1)  # many ties
    labels = rng.choice(["a", "b", "c", "d"], 40)
    exact = algorithm1_exact(y, labels, mode=mode)
    mc = algorithm1_mc(y, labels, mode=mode, resamples=100_000, rng=np.random.default_rng(1))
    loop = algorithm1_loop(y, labels, mode=mode, resamples=4000, rng=np.random.default_rng(2))
    se_mc = np.sqrt(exact.win_rate * (1 - exact.win_rate) / 100_000)
    se_loop = np.sqrt(exact.win_rate * (1 - exact.win_rate) / 4000)
    assert np.all(np.abs(mc.win_rate - exact.win_rate) <= 5 * se_mc + 1e-9)
    assert np.all(np.abs(loop.win_rate - exact.win_rate) <= 5 * se_loop + 1e-9)
    assert mc.best_mean == pytest.approx(exact.best_mean, abs=3e-3)
    assert loop.best_mean == pytest.approx(exact.best_mean, abs=2e-2)
    assert np.array_equal(mc.best_lo, exact.best_lo) and np.array_equal(mc.best_hi, exact.best_hi)


def test_mc_same_seed_same_numbers_regardless_of_global_state():
    y, labels = np.array([0.2, 0.4, 0.4, 0.9, 0.1]), ["x", "y", "x", "y", "z"]
    np.random.seed(1)
    a = algorithm1(y, labels, method="mc", resamples=3000, rng=np.random.default_rng(5))
    np.random.seed(2)
    b = algorithm1(y, labels, method="mc", resamples=3000, rng=np.random.default_rng(5))
    assert np.array_equal(a.win_rate, b.win_rate) and np.array_equal(a.best_mean, b.best_mean)
    with pytest.raises(ValueError, match="rng"):
        algorithm1(y, labels, method="mc")
    with pytest.raises(ValueError, match="method"):
        algorithm1(y, labels, method="bayes")


def test_mc_memory_does_not_depend_on_resamples():
    # chunked: a huge B with a tiny chunk must still run (only level histograms are kept)
    t = algorithm1_mc(
        np.array([0.1, 0.5, 0.9]), ["a", "b", "a"], resamples=50_000, chunk=64, rng=np.random.default_rng(0)
    )
    assert t.win_rate.sum() == pytest.approx(1.0)


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(8)],
            "status": ["FINISHED"] * 6 + ["FAILED", "FINISHED"],
            "params.sft_checkpoint": ["0", "0", "0", "1e18", "1e18", "1e18", "0", "0"],
            "params.curriculum": ["True", "False", "True", "False", "True", "True", "True", "False"],
            "params.curriculum_temperature": ["0.1", "", "0.3", "", "0.1", "0.3", "0.1", ""],
            "metrics.heldout_goal_success": ["0.5", "0.2", "0.7", "0.4", "0.1", "0.3", "0.9", ""],
        }
    )


def test_table_columns_conditionals_failed_and_strata():
    prepared = prepare_runs(_table(), metric="metrics.heldout_goal_success", stratum="params.sft_checkpoint")
    assert prepared.excluded == {"not_finished": 1, "missing_or_nan_metric": 1}
    table = algorithm1_table(prepared)
    assert list(table.columns) == ALGORITHM1_COLUMNS
    assert set(table.stratum) == {"0", "1e18"}
    # the conditional child only uses runs where it is active: stratum 0 has 2 (0.1 -> 0.5, 0.3 -> 0.7)
    child = table[(table.stratum == "0") & (table.hparam == "curriculum_temperature")].set_index("value")
    assert child.n_runs.to_dict() == {"0.1": 1, "0.3": 1}
    expected = algorithm1_exact(np.array([0.5, 0.7]), ["0.1", "0.3"])
    assert child.win_rate.to_numpy() == pytest.approx(expected.win_rate)
    assert np.allclose(table.groupby(["stratum", "hparam"]).win_rate.sum(), 1.0)


def test_planted_best_values_rank_first_on_a_simulated_study():
    from analysis.simulate import simulate_study

    runs, _, truth = simulate_study(1370, seed=3)
    prepared = prepare_runs(runs, metric="metrics.heldout_goal_success", stratum="params.sft_checkpoint")
    table = algorithm1_table(prepared)
    strong_first = []
    for stratum, plan in truth["strata"].items():
        for h, info in plan.items():
            if info["class"] == "strong":
                part = table[(table.stratum == stratum) & (table.hparam == h)]
                strong_first.append(part.loc[part.win_rate.idxmax(), "value"] == info["best"])
    # Algorithm 1 is noisy (that is issue 8's point), but strong effects should mostly come out on top
    assert np.mean(strong_first) >= 0.6, strong_first


@pytest.mark.parametrize("mode", ["max", "min"])
def test_batched_win_rates_equal_the_exact_formula_per_resample(mode):
    # the outer bootstrap of win_rate_intervals: all resamples at once == `_exact` on each resampled study
    from analysis.bootstrap import _coded_levels, _exact, _exact_win_rates, _factorize

    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, 40) / 5.0  # ties on purpose
    codes, values = _factorize(rng.choice(["a", "b", "c", "d"], 40, p=[0.6, 0.3, 0.08, 0.02]).tolist())
    picks = rng.integers(0, 40, size=(30, 40))
    batched = _exact_win_rates(y, codes, len(values), picks, mode=mode)
    missing = 0
    for b, pick in enumerate(picks):
        present, drawn = np.unique(codes[pick], return_inverse=True)
        want = np.zeros(len(values))
        want[present] = _exact(
            _coded_levels(y[pick], drawn, [values[i] for i in present], mode=mode)
        ).win_rate
        missing += len(values) - len(present)
        np.testing.assert_allclose(batched[b], want, atol=1e-12)
    assert missing > 0  # some resample lacks a value, which then wins 0


def test_win_rate_intervals_bracket_the_exact_win_rates():
    from analysis.bootstrap import win_rate_intervals
    from analysis.simulate import simulate_study

    runs, _, _ = simulate_study(200, seed=1)
    prepared = prepare_runs(runs, metric="metrics.heldout_goal_success", stratum="params.sft_checkpoint")
    ci = win_rate_intervals(prepared, reps=40, seed=0)
    table = algorithm1_table(prepared).merge(ci, on=["stratum", "hparam", "value"])
    assert len(table) == len(ci)
    assert (table.win_lo <= table.win_hi).all()
    inside = (table.win_lo - 1e-9 <= table.win_rate) & (table.win_rate <= table.win_hi + 1e-9)
    assert inside.mean() > 0.9
    assert ci.equals(win_rate_intervals(prepared, reps=40, seed=0))
