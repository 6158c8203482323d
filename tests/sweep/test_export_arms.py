"""The exported tables' arms on a real sweep with SFT branch points: `params.arm` per trial, the SFT-only arm as
a pseudo-run whose curve is the branch points' step-0 evaluations, and the report comparing the three arms."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sweep.arms import ARMS, arm_of
from sweep.export import export_sweep, runs_tables
from tests.sweep.test_branch_points import BUILDER, _space

BP1, BP2 = "1500000000000000.0", "3000000000000000.0"  # the fake builder's branch points


def test_arm_of_is_one_rule():
    assert [arm_of(v) for v in ("0", 0, "", None, BP1, 3e15)] == ["rl", "rl", "rl", "rl", "sft+rl", "sft+rl"]
    assert ARMS == ("sft", "rl", "sft+rl")


@pytest.fixture(scope="module")
def arm_sweep(ray_cluster, tmp_path_factory):
    from sweep.driver import launch

    tmp = tmp_path_factory.mktemp("arms")
    result = launch(
        _space("auto"),  # 2 gammas x 3 branch points (base student, BP1, BP2), every trial evaluates step 0
        out_dir=tmp,
        objective="sweep.objectives:surrogate",
        branch_builder=BUILDER,
        options={"num_evals": 2, "eval_at_start": True, "sft": {"student": "tiny", "calls": str(tmp / "c")}},
        search="grid",
    )
    assert result.num_finished == 6
    return tmp, result.settings


def test_export_has_the_arm_column_and_the_sft_only_pseudo_run(arm_sweep):
    tmp, s = arm_sweep
    runs, curves = runs_tables(s.sweep_dir)
    trials = runs[~runs["run_id"].str.startswith("sft:")]
    assert len(trials) == 6 and len(runs) == 7
    expected = trials["params.sft_checkpoint"].map({"0": "rl", BP1: "sft+rl", BP2: "sft+rl"})
    assert (trials["params.arm"] == expected).all() and (trials["params.arm"] == "rl").sum() == 2
    (row,) = [r for _, r in runs[runs["params.arm"] == "sft"].iterrows()]
    assert row["run_id"].startswith("sft:") and row["status"] == "FINISHED"
    assert row["params.gamma"] == "" and row["params.sft_checkpoint"] == ""
    # its curve, hand-checked: per branch point, the mean of the two trials' step-0 evaluations
    step0 = curves[(curves["step"] == 0) & curves["run_id"].isin(trials["run_id"])]
    assert len(step0) == 6 and sorted(step0["flops"].unique()) == [0.0, 1.5e15, 3.0e15]
    curve = curves[curves["run_id"] == row["run_id"]].reset_index(drop=True)
    assert list(curve["step"]) == [0, 1, 2] and list(curve["flops"]) == [0.0, 1.5e15, 3.0e15]
    assert list(curve["rl_flops"]) == [0.0, 0.0, 0.0]
    by_bp = trials.set_index("run_id")["params.sft_checkpoint"]
    for i, bp in enumerate(("0", BP1, BP2)):
        pair = step0[step0["run_id"].map(by_bp) == bp]
        assert len(pair) == 2
        for metric in ("heldout_goal_success", "heldout_task_success"):
            a, b = pair[metric]
            assert curve.loc[i, metric] == pytest.approx((a + b) / 2)
    # its metrics: the last checkpoint's score
    assert row["metrics.heldout_goal_success"] == pytest.approx(curve.loc[2, "heldout_goal_success"])
    assert row["metrics.flops"] == 3.0e15 and row["metrics.num_evals"] == 3.0
    # the files round-trip, and --no-sft-arm leaves the pseudo-run out
    runs_path, curves_path = export_sweep(s.sweep_dir, tmp / "runs.parquet")
    assert pd.read_parquet(runs_path).equals(runs.reset_index(drop=True))
    plain, plain_curves = runs_tables(s.sweep_dir, sft_arm=False)
    assert len(plain) == 6 and not plain_curves["run_id"].str.startswith("sft:").any()


def test_report_compares_the_arms_and_keeps_the_sft_run_out_of_the_hyperparameters(arm_sweep):
    from analysis.choices import ArmOptions
    from analysis.report import ReportOptions, build_report

    tmp, s = arm_sweep
    runs_path, curves_path = export_sweep(s.sweep_dir, tmp / "runs.parquet")
    options = ReportOptions(
        stratum="params.sft_checkpoint",
        arms=ArmOptions(column="params.arm", baseline="sft", reps=50),
        win_ci_reps=0,
        plots=False,
    )
    result = build_report(runs_path, tmp / "report", options, curves_source=curves_path)
    summary = json.loads((tmp / "report" / "summary.json").read_text())
    assert summary["excluded"]["sft_only_arm"] == 1
    assert set(summary["strata"]) == {"0", BP1, BP2} and "arm" not in summary["hparams"]
    match = pd.read_csv(tmp / "report" / "compute_to_match.csv")
    assert set(match["arm"]) == {"rl", "sft+rl"} and set(match["baseline"]) == {"sft"}
    assert result.summary["arms"]["arm_runs"] == {"rl": 2, "sft": 1, "sft+rl": 4}


def test_study_flops_counts_the_sft_run_once_and_each_trial_s_last_rl_and_eval_flops():
    from sweep.export import study_flops

    runs = pd.DataFrame({"run_id": ["a", "b", "sft:x"], "params.arm": ["rl", "sft+rl", "sft"]})
    curves = pd.DataFrame(
        {
            "run_id": ["a", "a", "b", "b", "sft:x", "sft:x"],
            "step": [0, 2, 2, 0, 0, 1],  # b's rows out of order: its last is step 2
            "flops": [0.0, 5.0, 107.0, 100.0, 0.0, 100.0],
            "rl_flops": [0.0, 5.0, 7.0, 0.0, 0.0, 0.0],
            "eval_flops": [1.0, 2.0, 4.0, 3.0, 2.0, 3.0],
        }
    )
    assert study_flops(runs, curves) == {"sft": 100.0, "rl": 12.0, "eval": 6.0, "total": 118.0}
    no_sft = study_flops(runs[runs["params.arm"] != "sft"], curves[curves["run_id"] != "sft:x"])
    assert no_sft == {"sft": 0.0, "rl": 12.0, "eval": 6.0, "total": 18.0}
