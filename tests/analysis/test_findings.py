"""The paper's findings beside ours: planted truths give each verdict, a report writes the table, peaks by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.arms import PEAK_COLUMNS, PEAK_DIFFERENCE_COLUMNS, compare_arms
from analysis.choices import ArmOptions
from analysis.findings import FINDINGS_COLUMNS, paper_findings
from analysis.report import ReportOptions, build_report

BRANCH = {"rl": [0.0], "sft+rl": [1e12, 4e12]}  # base student; an early and a late SFT branch point


def _study(
    *,
    seed: int,
    lift: float,
    curriculum_base: float,
    error_log_sft: float,
    late: float,
    late_gain: float = 0.0,
    base: float = 0.1,
    runs: int = 24,
):
    """A runs table and curves planted with the findings' truths: RL from each branch point for 2 evaluations
    (step 0, the branch point's own, and after RL), the SFT-only arm's pseudo-run over the branch points."""
    rng = np.random.default_rng(seed)
    start = {0.0: base, 1e12: 0.5, 4e12: 0.5 + late}
    rows, curve_rows = [], []
    for arm, points in BRANCH.items():
        for bp in points:
            for i in range(runs):
                cur, err, lr = bool(rng.integers(2)), bool(rng.integers(2)), float(rng.choice([1e-5, 1e-4]))
                gain = (
                    lift + (curriculum_base * cur if bp == 0 else 0.0) + (error_log_sft * err if bp else 0.0)
                )
                gain += late_gain if bp == 4e12 else 0.0
                final = float(np.clip(start[bp] + gain + rng.normal(0, 0.03), 0, 1))
                run = f"{arm}-{bp:g}-{i}"
                rows.append((run, "FINISHED", arm, str(bp), str(cur), str(err), str(lr), final))
                curve_rows += [(run, 0, bp + 1e10, start[bp]), (run, 4, bp + 2e11, final)]
    rows.append(("sft:x", "FINISHED", "sft", "", "", "", "", max(start.values())))
    curve_rows += [("sft:x", 0, 1e10, 0.1), ("sft:x", 1, 1e12, 0.5), ("sft:x", 2, 4e12, 0.5 + late)]
    columns = ["run_id", "status", "params.arm", "params.sft_checkpoint", "params.curriculum", "params.error_log",
               "params.learning_rate", "metrics.heldout_goal_success"]  # fmt: skip
    curves = pd.DataFrame(curve_rows, columns=["run_id", "step", "flops", "heldout_goal_success"])
    return pd.DataFrame(rows, columns=columns), curves


def _findings(runs, curves, tmp_path, name="r"):
    options = ReportOptions(
        stratum="params.sft_checkpoint", arms=ArmOptions(column="params.arm", baseline="sft", reps=200),
        plots=False, win_ci_reps=0,
    )  # fmt: skip
    result = build_report(runs, tmp_path / name, options, curves_source=curves)
    table = pd.read_csv(tmp_path / name / "findings.csv")
    assert list(table.columns) == FINDINGS_COLUMNS and len(table) == 5
    assert [r["verdict"] for r in result.summary["findings"]] == list(table["verdict"])
    return table.set_index("finding")["verdict"].to_dict(), table


def test_planted_truths_are_reproduced_and_their_opposites_are_not(tmp_path):
    # the paper's world: RL lifts (from the early branch point past SFT-only's later peak, with less compute),
    # curriculum helps only from the base student, error logs do nothing after SFT, RL from the late branch point
    # ends where RL from the early one does
    world = dict(lift=0.2, curriculum_base=0.25, error_log_sft=0.0, late=0.1, late_gain=-0.1)
    verdicts, table = _findings(*_study(seed=0, **world), tmp_path)
    assert verdicts["SFT+RL > SFT-only > RL-only"] == "reproduced"
    assert verdicts["SFT+RL matches SFT-only with 55% of the compute"] == "reproduced"
    assert verdicts["curriculum helps only from scratch"] == "reproduced"
    assert verdicts["error logs help only without SFT"] == "not resolvable at this scale"  # no effect in base
    assert verdicts["branch early, not from the instruct model"] == "reproduced"
    row = table.set_index("finding").loc["curriculum helps only from scratch"]
    assert row["lo"] > 0 and row["estimate"] == pytest.approx(
        0.25, abs=0.05
    )  # true - false in the base stratum
    # the opposite world: RL hurts, curriculum hurts from scratch, error logs help after SFT, the late point wins
    verdicts, _ = _findings(
        *_study(seed=1, lift=-0.05, curriculum_base=-0.25, error_log_sft=0.2, late=0.3, base=0.4),
        tmp_path,
        "opposite",
    )
    assert verdicts["SFT+RL > SFT-only > RL-only"] == "not reproduced"
    assert verdicts["SFT+RL matches SFT-only with 55% of the compute"] == "not reproduced"
    assert verdicts["curriculum helps only from scratch"] == "not reproduced"
    assert verdicts["error logs help only without SFT"] == "not reproduced"  # it helps from SFT: "only" fails
    assert verdicts["branch early, not from the instruct model"] == "not reproduced"


def test_findings_not_measured_without_arms_or_knobs(tmp_path):
    table = paper_findings()
    assert (table["verdict"] == "not measured").all() and list(table.columns) == FINDINGS_COLUMNS
    # without the base student's stratum the by-branch-point findings are not measured (not read off SFT strata)
    runs, curves = _study(seed=0, lift=0.2, curriculum_base=0.25, error_log_sft=0.0, late=0.0)
    keep = runs["params.sft_checkpoint"] != "0.0"
    verdicts, _ = _findings(runs[keep], curves[curves.run_id.isin(runs[keep].run_id)], tmp_path)
    for finding in ("curriculum helps only from scratch", "branch early, not from the instruct model"):
        assert verdicts[finding] == "not measured"


def test_peaks_and_their_differences_by_hand():
    curves = pd.DataFrame(
        [
            ("a1", 1, 10.0, 0.2),
            ("a1", 2, 20.0, 0.6),
            ("a2", 1, 10.0, 0.4),
            ("b1", 1, 15.0, 0.3),
            ("b2", 1, 15.0, 0.1),
        ],
        columns=["run_id", "step", "flops", "s"],
    )
    arms = pd.Series({"a1": "A", "a2": "A", "b1": "B", "b2": "B"})
    res = compare_arms(curves, arms, "s", k=1, reps=400, seed=0)
    assert (
        list(res.peaks.columns) == PEAK_COLUMNS
        and list(res.peak_differences.columns) == PEAK_DIFFERENCE_COLUMNS
    )
    peaks = res.peaks.set_index("arm")
    # A's mean run: 0.3 at 10 FLOPs, (0.6 + 0.4) / 2 = 0.5 from 20; B's: 0.2 from 15
    assert peaks.loc["A", "peak"] == pytest.approx(0.5) and peaks.loc["A", "flops_at_peak"] == 20.0
    assert peaks.loc["B", "peak"] == pytest.approx(0.2)
    assert peaks.loc["A", "lo"] <= 0.5 <= peaks.loc["A", "hi"] and peaks.loc["A", "hi"] <= 0.6 + 1e-12
    d = res.peak_differences.set_index(["arm", "versus"])
    assert d.loc[("A", "B"), "difference"] == pytest.approx(0.3)
    assert d.loc[("B", "A"), "difference"] == pytest.approx(-0.3)
    assert d.loc[("A", "B"), "lo"] == pytest.approx(-d.loc[("B", "A"), "hi"])


def test_report_on_the_study_sweep_prints_unreached_intervals_and_the_findings(tmp_path):
    """The shipped study tables (benchmarks/study/sweep): neither arm reaches SFT-only's peak, so each ratio's
    interval is [inf, inf], which the terminal must print (rich once took it for a style tag and dropped it)."""
    import subprocess
    import sys
    from pathlib import Path

    sweep = Path(__file__).resolve().parents[2] / "benchmarks" / "study" / "sweep"
    cmd = [sys.executable, "-m", "analysis", "report", str(sweep / "runs.parquet"), "--curves",
           str(sweep / "runs.curves.parquet"), "--stratum", "params.sft_checkpoint", "--arm", "params.arm",
           "--baseline", "sft", "--out", str(tmp_path / "r")]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    match = pd.read_csv(tmp_path / "r" / "compute_to_match.csv")
    assert np.isinf(match.lo).all() and np.isinf(match.hi).all()
    text = " ".join(res.stdout.split())
    assert text.count("its FLOPs [inf, inf]") == len(match) == 2, res.stdout
    findings = pd.read_csv(tmp_path / "r" / "findings.csv")
    assert text.count("finding '") == len(findings) == 5
