"""Arms at an equal number of runs k: hand-computed curves, a planted envelope bias, the ratio, bad input."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis.arms import (
    COMPUTE_TO_MATCH_COLUMNS,
    FRONTIER_K_COLUMNS,
    arm_labels,
    compare_arms,
    equal_k_curves,
    scores_at_budgets,
)
from analysis.choices import ArmError, ArmOptions
from analysis.curves import compute_to_reach, frontier, reached_by_budget
from analysis.report import ReportOptions, build_report

# arm A: runs evaluated at 10 and 20 FLOPs; arm B at 15 and 30
A = {"a1": [0.2, 0.5], "a2": [0.4, 0.4], "a3": [0.1, 0.9]}
B = {"b1": [0.3, 0.6], "b2": [0.5, 0.7], "b3": [0.2, 0.2]}


def _two_arms() -> tuple[pd.DataFrame, pd.Series]:
    rows = [(r, s + 1, f, v[s]) for arm, fl in ((A, (10.0, 20.0)), (B, (15.0, 30.0))) for r, v in arm.items()
            for s, f in enumerate(fl)]  # fmt: skip
    curves = pd.DataFrame(rows, columns=["run_id", "step", "flops", "success"])
    return curves, pd.Series({**dict.fromkeys(A, "A"), **dict.fromkeys(B, "B")})


def _mean_max(values, k):
    return np.mean([max(c) for c in itertools.combinations(values, k)])


def test_equal_k_curves_by_hand_two_arms_three_runs():
    curves, arms = _two_arms()
    res = compare_arms(curves, arms, "success", baseline="A", k=2, reps=50)
    f = res.frontier.set_index(["arm", "flops"])
    assert list(res.frontier.columns) == FRONTIER_K_COLUMNS and res.k == 2 and res.k_rule == "given"
    # budget 10: A's first evaluations; B has none yet (NaN, 0 runs present)
    assert f.loc[("A", 10.0), "expected_best"] == pytest.approx(_mean_max([0.2, 0.4, 0.1], 2))  # 1/3
    assert np.isnan(f.loc[("B", 10.0), "expected_best"]) and f.loc[("B", 10.0), "n_runs"] == 0
    assert f.loc[("A", 15.0), "expected_best"] == pytest.approx(1 / 3)  # last evaluation <= 15 is the first
    assert f.loc[("B", 15.0), "expected_best"] == pytest.approx(_mean_max([0.3, 0.5, 0.2], 2))  # 0.4333
    assert f.loc[("A", 20.0), "expected_best"] == pytest.approx(_mean_max([0.5, 0.4, 0.9], 2))  # 0.7667
    assert f.loc[("B", 30.0), "expected_best"] == pytest.approx(_mean_max([0.6, 0.7, 0.2], 2))  # 0.6667
    # A's peak 0.7667 (at 20 FLOPs) is never reached by B
    (row,) = res.compute_to_match.to_dict(orient="records")
    assert list(res.compute_to_match.columns) == COMPUTE_TO_MATCH_COLUMNS
    assert row["target"] == pytest.approx(0.7667, abs=1e-4) and row["baseline_flops_at_peak"] == 20.0
    assert np.isnan(row["flops_to_match"]) and np.isnan(row["ratio"]) and row["p_reached"] < 1
    # B as the baseline: its peak 0.6667 at 30 FLOPs; A's curve first reaches it at 20: ratio 2/3
    (row,) = compare_arms(curves, arms, "success", baseline="B", k=2, reps=200).compute_to_match.to_dict(
        orient="records"
    )
    assert row["flops_to_match"] == 20.0 and row["ratio"] == pytest.approx(2 / 3)
    assert row["lo"] <= row["ratio"] <= row["hi"]
    # k = 1 is the mean run; k = 3 (all runs) the best run; default k: the smallest arm (3)
    one = compare_arms(curves, arms, "success", k=1, reps=10).frontier.set_index(["arm", "flops"])
    assert one.loc[("A", 10.0), "expected_best"] == pytest.approx(np.mean([0.2, 0.4, 0.1]))
    full = compare_arms(curves, arms, "success", reps=10)
    assert full.k == 3 and full.k_rule == "smallest arm" and full.compute_to_match.empty
    assert full.frontier.set_index(["arm", "flops"]).loc[("A", 20.0), "expected_best"] == pytest.approx(0.9)


def test_equal_k_curves_is_the_u_statistic_over_present_runs():
    rng = np.random.default_rng(3)
    scores = rng.random((6, 4))
    scores[[0, 2], 0] = np.nan  # two runs absent at the first budget
    got = equal_k_curves(scores, 3)
    assert got[0] == pytest.approx(_mean_max(scores[[1, 3, 4, 5], 0], 3))
    for g in range(1, 4):
        assert got[g] == pytest.approx(_mean_max(scores[:, g], 3))
    assert np.isnan(equal_k_curves(scores, 5)[0])  # 4 runs present < k = 5


def test_checkpoint_rule_is_reached_by_budget_per_budget():
    rng = np.random.default_rng(0)
    curves = pd.DataFrame(
        [(f"r{r}", s, 10.0 * s + r, rng.random()) for r in range(4) for s in range(1, 8)],
        columns=["run_id", "step", "flops", "success"],
    )
    grid = np.array([11.0, 25.0, 43.0, 80.0])
    ids, got = scores_at_budgets(curves, "success", grid, "checkpoint")
    for g, budget in enumerate(grid):
        expect = reached_by_budget(curves, "success", budget)
        for r, run in enumerate(ids):
            assert (got[r, g] == expect[run]) if run in expect.index else np.isnan(got[r, g])
    _, last = scores_at_budgets(curves, "success", grid, "last")
    assert last[0, 1] == curves.query("run_id == 'r0' and step == 2").success.item()


def _same_distribution(n_a: int, n_b: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Two arms whose runs come from one distribution: success rises with FLOPs towards a run's own level."""
    rng = np.random.default_rng(seed)
    rows, arms = [], {}
    for arm, n in (("A", n_a), ("B", n_b)):
        for r in range(n):
            run = f"{arm}{r}"
            arms[run] = arm
            level = rng.beta(4, 4)
            for step in range(1, 9):
                score = level * (1 - np.exp(-step / 3)) + rng.normal(0, 0.03)
                rows.append((run, step, 1e15 * step, float(np.clip(score, 0, 1))))
    return pd.DataFrame(rows, columns=["run_id", "step", "flops", "success"]), pd.Series(arms)


def test_the_envelope_favours_the_arm_with_more_runs_equal_k_does_not():
    curves, arms = _same_distribution(10, 2, seed=4)
    rng = np.random.default_rng(0)
    env = {a: frontier(curves[curves.run_id.map(arms) == a], "success", rng=rng, reps=20) for a in "AB"}
    assert env["A"].frontier.max() > env["B"].frontier.max() + 0.1  # selection alone: 10 runs vs 2
    reach = compute_to_reach(curves, "success", env["B"].frontier.max(), groups=arms, rng=rng, reps=50)
    reach = reach.set_index("group").flops_to_target
    assert reach["A"] < reach["B"]  # the envelope says A needs less compute than B to reach B's best
    res = compare_arms(curves, arms, "success", baseline="B", reps=400, seed=1)
    assert res.k == 2
    (row,) = res.compute_to_match.to_dict(orient="records")
    assert row["lo"] <= 1.0 <= row["hi"]  # at equal k the arms are indistinguishable
    peaks = res.frontier.groupby("arm").expected_best.max()
    assert abs(peaks["A"] - peaks["B"]) < env["A"].frontier.max() - env["B"].frontier.max()


def test_the_ratio_bootstrap_is_deterministic_under_a_seed():
    curves, arms = _same_distribution(6, 5, seed=2)
    one = compare_arms(curves, arms, "success", baseline="B", reps=300, seed=7)
    two = compare_arms(curves, arms, "success", baseline="B", reps=300, seed=7)
    pd.testing.assert_frame_equal(one.compute_to_match, two.compute_to_match)
    pd.testing.assert_frame_equal(one.frontier, two.frontier)
    other = compare_arms(curves, arms, "success", baseline="B", reps=300, seed=8)
    assert not other.frontier[["lo", "hi"]].equals(one.frontier[["lo", "hi"]])


def test_bad_arm_input_says_what_to_pass():
    curves, arms = _two_arms()
    runs = pd.DataFrame({"run_id": list(arms.index), "status": "FINISHED", "params.arm": arms.to_numpy()})
    with pytest.raises(ArmError, match=r"--arm 'params.nope' is not a column.*params.arm"):
        arm_labels(runs, "params.nope")
    with pytest.raises(ArmError, match=r"--baseline 'sft' is not an arm.*\['A', 'B'\]"):
        compare_arms(curves, arm_labels(runs, "params.arm"), "success", baseline="sft")
    with pytest.raises(ArmError, match=r"--k 4 is larger than arm 'A' \(3 runs.*--k 3 or fewer"):
        compare_arms(curves, arms, "success", k=4)
    runs.loc[0, "params.arm"] = ""  # a run without a value is in no arm
    assert "a1" not in arm_labels(runs, "params.arm").index


@pytest.fixture(scope="module")
def arm_study(tmp_path_factory):
    """A small runs table with an arm column, the two arms' curves, as CSV files."""
    d = tmp_path_factory.mktemp("arms")
    curves, arms = _same_distribution(12, 8, seed=5)
    rng = np.random.default_rng(5)
    final = curves.sort_values("step").groupby("run_id").success.last()
    runs = pd.DataFrame(
        {
            "run_id": arms.index,
            "status": "FINISHED",
            "params.arm": np.where(arms.to_numpy() == "A", "sft+rl", "sft"),
            "params.learning_rate": rng.choice(["1e-5", "1e-6"], len(arms)),
            "metrics.heldout_goal_success": final.reindex(arms.index).to_numpy(),
        }
    )
    runs.to_csv(d / "runs.csv", index=False)
    curves.rename(columns={"success": "heldout_goal_success"}).to_csv(d / "curves.csv", index=False)
    return d


def _report(d, out, *extra):
    cmd = [sys.executable, "-m", "analysis", "report", str(d / "runs.csv"), "--curves", str(d / "curves.csv")]
    return subprocess.run([*cmd, "--out", str(out), *extra], capture_output=True, text=True, timeout=300)


def test_report_writes_the_equal_k_frontier_ratio_figure_and_headline(arm_study, tmp_path):
    res = _report(arm_study, tmp_path / "r", "--arm", "params.arm", "--baseline", "sft", "--k", "3")
    assert res.returncode == 0, res.stderr
    assert "sft+rl reaches sft's peak" in res.stdout
    out = tmp_path / "r"
    match = pd.read_csv(out / "compute_to_match.csv")
    assert list(match.columns) == COMPUTE_TO_MATCH_COLUMNS and match.arm.tolist() == ["sft+rl"]
    bounds = ", ".join("inf" if np.isinf(v) else f"{v:.3g}" for v in (match.lo[0], match.hi[0]))
    assert f"its FLOPs [{bounds}]" in " ".join(res.stdout.split()), res.stdout  # the interval is printed
    assert list(pd.read_csv(out / "frontier_k.csv").columns) == FRONTIER_K_COLUMNS
    assert (out / "frontier_k.png").stat().st_size > 10_000 and (out / "frontier.csv").exists()
    arms = json.loads((out / "summary.json").read_text())["arms"]
    assert arms["k"] == 3 and arms["k_rule"] == "given" and arms["arm_runs"] == {"sft": 8, "sft+rl": 12}
    assert arms["compute_to_match"][0]["arm"] == "sft+rl"
    html = (out / "report.html").read_text()
    first = html.index("<h2>")
    assert html.index("<h2>Headline: arms at equal k = 3") == first and "headline-arms" in html
    assert "is all the runs of" not in html  # k = 3 is below both arms' sizes
    assert html.index('alt="frontier_k"') < html.index('alt="frontier"')  # top of the compute section


def test_report_arms_through_build_report_default_k(tmp_path):
    curves, arms = _same_distribution(5, 4, seed=6)
    runs = pd.DataFrame(
        {
            "run_id": arms.index,
            "status": "FINISHED",
            "params.arm": arms.to_numpy(),
            "params.lr": ["a", "b"] * 4 + ["a"],
            "metrics.heldout_goal_success": 0.5,
        }
    )
    options = ReportOptions(plots=False, win_ci_reps=0, arms=ArmOptions("params.arm", baseline="A", reps=50))
    curves = curves.rename(columns={"success": "heldout_goal_success"})
    result = build_report(runs, tmp_path / "r", options, curves_source=curves)
    assert result.summary["arms"]["k"] == 4 and result.summary["arms"]["k_rule"] == "smallest arm"
    assert "k = 4 is all the runs of B" in (tmp_path / "r" / "report.html").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--arm", "params.nope"], "--arm 'params.nope' is not a column"),
        (["--arm", "params.arm", "--baseline", "rl"], "--baseline 'rl' is not an arm"),
        (["--arm", "params.arm", "--k", "9"], "--k 9 is larger than arm 'sft' (8 runs"),
        (["--baseline", "sft"], "pass --arm COLUMN too"),
    ],
)
def test_report_arm_errors_exit_2_with_the_fix(arm_study, tmp_path, extra, message):
    res = _report(arm_study, tmp_path / "r", "--no-plots", *extra)
    assert res.returncode == 2, res.stderr
    assert message in " ".join(res.stderr.split())


def test_sft_only_runs_are_an_arm_but_not_in_the_hyperparameter_analysis(tmp_path):
    """The export's SFT-only pseudo-run (params.arm sft, no hyperparameter values) is compared as an arm and
    left out of Algorithm 1 and the effects; params.arm is no hyperparameter unless named."""
    curves, arms = _same_distribution(6, 1, seed=7)  # A: six RL runs; B0: the SFT-only run
    runs = pd.DataFrame(
        {
            "run_id": arms.index,
            "status": "FINISHED",
            "params.arm": np.where(arms.to_numpy() == "A", "sft+rl", "sft"),
            "params.sft_checkpoint": ["1e15"] * 3 + ["2e15"] * 3 + [""],
            "params.lr": ["a", "b", "a", "b", "a", "b", ""],
            "metrics.heldout_goal_success": [0.1, 0.4, 0.2, 0.5, 0.3, 0.6, 0.45],
        }
    )
    options = ReportOptions(
        stratum="params.sft_checkpoint",
        plots=False,
        win_ci_reps=0,
        arms=ArmOptions("params.arm", baseline="sft", reps=20),
    )
    curves = curves.rename(columns={"success": "heldout_goal_success"})
    result = build_report(runs, tmp_path / "r", options, curves_source=curves)
    s = result.summary
    assert s["excluded"]["sft_only_arm"] == 1 and s["hparams"] == ["lr"]
    assert {k: v["n_runs"] for k, v in s["strata"].items()} == {"1e15": 3, "2e15": 3}
    assert s["arms"]["arm_runs"] == {"sft": 1, "sft+rl": 6}
    effects = pd.read_csv(tmp_path / "r" / "effects.csv", dtype={"stratum": str})
    assert set(effects["stratum"]) == {"1e15", "2e15"} and set(effects["hparam"]) == {"lr"}
    named = build_report(
        runs, tmp_path / "n", ReportOptions(hparams=("arm", "lr"), plots=False, win_ci_reps=0)
    )
    assert named.summary["hparams"] == ["arm", "lr"] and named.summary["excluded"]["sft_only_arm"] == 1
