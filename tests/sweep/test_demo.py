"""`agentsweep demo`, cut down (`--scale smoke`): the real recipe end to end, the report by branch point with the
frontier, and a failing report failing the demo."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner

from sweep.cli import cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


@pytest.fixture(scope="module")
def smoke_demo(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(cli, ["demo", "--scale", "smoke", "--out", str(out)])
    return out, result


def test_demo_smoke_runs_the_real_recipe_and_reports_by_branch_point(smoke_demo):
    from sweep.demo import SCALES

    out, result = smoke_demo
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "runs.parquet")
    n = SCALES["smoke"].num_trials
    assert set(table["status"]) == {"FINISHED"} and len(table) == n + 1  # the trials and the SFT-only run
    runs = table[table["params.arm"] != "sft"]
    assert len(runs) == n and set(runs["params.arm"]) <= {"rl", "sft+rl"}
    assert (runs["params.arm"] == "rl").eq(runs["params.sft_checkpoint"].astype(float) == 0).all()
    assert "objective: `sweep.objectives:rl`" in (out / "DEMO.md").read_text()
    # the real RL trainer ran: every trial's curve has its branch point's evaluation (step 0) and the last update's,
    # which carries the measured env, generation and update wall times and the kept share of episodes (metrics
    # only trainers.rl.train_rl reports; the surrogate objective has none of them)
    curves = pd.read_parquet(out / "runs.curves.parquet")
    trial_curves = curves[curves["run_id"].isin(runs["run_id"])]
    last = trial_curves[trial_curves["step"] == SCALES["smoke"].num_updates]
    assert (
        set(trial_curves[trial_curves["step"] == 0]["run_id"]) == set(runs["run_id"]) == set(last["run_id"])
    )
    for metric in ("rollout_env_s", "rollout_gen_s", "update_s", "tokens"):
        assert (last[metric] > 0).all(), metric
    assert last["kept_frac"].between(0, 1).all()
    assert runs["metrics.heldout_goal_success"].between(0, 1).all()
    # SFT branch points from the shipped student, plus the base student
    assert runs["params.sft_checkpoint"].astype(float).min() == 0
    assert runs["params.sft_checkpoint"].astype(float).nunique() >= 2
    # the report, stratified by branch point, with the curves: report.html, the frontier and FLOPs-to-target
    report = out / "report"
    for name in ("report.html", "frontier.csv", "frontier.png", "compute_to_target.csv", "effects.csv"):
        assert (report / name).is_file(), name
    summary = json.loads((report / "summary.json").read_text())
    assert summary["stratum"] == "params.sft_checkpoint" and len(summary["strata"]) >= 2
    frontier = pd.read_csv(report / "frontier.csv")
    assert len(frontier) and frontier["frontier"].between(0, 1).all()
    html = (report / "report.html").read_text()
    assert '<img alt="frontier"' in html and "FLOPs to reach the target" in html
    # the arms (SFT only as a run of its own, RL only, SFT+RL) at equal k, SFT+RL's compute to match SFT only
    (sft_id,) = table.loc[table["params.arm"] == "sft", "run_id"]
    sft_curve = curves[curves["run_id"] == sft_id]
    assert sft_id.startswith("sft:") and len(sft_curve) >= 2 and sft_curve["flops"].is_monotonic_increasing
    match = pd.read_csv(report / "compute_to_match.csv")
    assert "sft+rl" in set(match["arm"]) and set(match["baseline"]) == {"sft"}
    assert (report / "frontier_k.png").is_file() and '<img alt="frontier_k"' in html
    assert summary["arms"]["column"] == "params.arm" and summary["excluded"]["sft_only_arm"] == 1
    # the terminal ends with the headline numbers, the compute-to-match ratio with its interval among them
    assert "headline" in result.output and "frontier's best" in result.output.split("headline")[-1]
    tail = " ".join(result.output.split("headline")[-1].split())
    assert "compute to match the SFT-only arm's peak" in tail and "SFT+RL " in tail
    # each arm's ratio with its interval printed as text (rich once took "[inf, inf]" for a style tag and dropped it)
    assert tail.split("compute to match the SFT-only arm's peak")[1].count("[") >= 2, tail
    # the paper's five findings, each with its verdict, on the page and on the terminal
    findings = pd.read_csv(report / "findings.csv")
    assert len(findings) == 5 and 'id="findings"' in html
    assert tail.count("paper's finding") == 5 and "paper's finding 'SFT+RL > SFT-only > RL-only':" in tail, (
        tail
    )
    assert "agentsweep ui" in result.output


def test_demo_exits_nonzero_when_the_report_fails(smoke_demo, monkeypatch):
    """The same sweep's results (no new trials), the report made to fail: the demo exits 1 and says why."""
    import sweep.demo
    import sweep.driver
    from sweep.settings import SweepResult, load_settings

    out, first = smoke_demo
    assert first.exit_code == 0, first.output
    (sweep_dir,) = [p for p in out.glob("demo-*") if (p / "sweep.json").is_file()]
    settings = load_settings(sweep_dir)
    n = sweep.demo.SCALES["smoke"].num_trials

    def finished_sweep(*args, **kwargs):
        return SweepResult(settings=settings, num_finished=n, num_failed=0, num_trials=n, wall_s=math.nan)

    monkeypatch.setattr(sweep.driver, "launch", finished_sweep)
    monkeypatch.setattr(sweep.demo, "REPORT_EXTRA_ARGS", ("--bins", "1"))  # a report that exits non-zero
    result = CliRunner().invoke(cli, ["demo", "--scale", "smoke", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "`agentsweep report` failed (exit 2" in result.output
