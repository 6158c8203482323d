"""The simulator: layout, failures, conditionals, and truth that matches what it samples."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.simulate import SPACE, planted_metric, simulate_study


def test_layout_failures_conditionals_and_curves():
    runs, curves, truth = simulate_study(600, seed=1)
    assert {"run_id", "status", "params.sft_checkpoint", "metrics.heldout_goal_success"} <= set(runs.columns)
    assert {f"params.{h}" for h in SPACE} <= set(runs.columns)
    assert (runs.status == "FAILED").sum() > 0
    assert runs.loc[runs.status == "FINISHED", "metrics.heldout_goal_success"].isna().sum() > 0
    off = runs["params.curriculum"] == "False"
    assert (runs.loc[off, "params.curriculum_temperature"] == "").all()
    assert (runs.loc[~off, "params.curriculum_temperature"] != "").all()
    assert set(curves.run_id) <= set(runs.run_id[runs.status == "FINISHED"])
    assert (curves.groupby("run_id").flops.diff().dropna() > 0).all()
    assert runs["metrics.heldout_goal_success"].dropna().duplicated().any()  # discrete: ties happen
    assert set(truth["strata"]) == {"0", "2.5e+18", "7.6e+18"}


def test_same_seed_same_study():
    a, _, _ = simulate_study(50, seed=4)
    b, _, _ = simulate_study(50, seed=4)
    assert a.equals(b)


def test_truth_marginal_means_match_the_sampled_runs():
    runs, _, truth = simulate_study(60_000, seed=2, fail_rate=0.0, nan_rate=0.0)
    y = runs["metrics.heldout_goal_success"]
    for stratum in ("0", "7.6e+18"):
        in_s = runs["params.sft_checkpoint"] == stratum
        for h in ("temperature", "curriculum", "curriculum_target_return", "std_normalize"):
            for value, mean in truth["strata"][stratum][h]["marginal_mean"].items():
                sel = in_s & (runs[f"params.{h}"] == value)
                assert y[sel].mean() == pytest.approx(mean, abs=0.01), (stratum, h, value)


def test_planted_metric_accepts_numbers_and_strings():
    rng = np.random.default_rng(0)
    good = dict(temperature=0.25, learning_rate=1e-6, sft_checkpoint=7.6e18)
    bad = dict(temperature="1.0", learning_rate="5e-06", sft_checkpoint="7.6e+18")
    g = np.mean([planted_metric(good, rng=rng) for _ in range(300)])
    b = np.mean([planted_metric(bad, rng=rng) for _ in range(300)])
    assert g > b + 0.05
