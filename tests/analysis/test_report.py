"""`agentsweep report` end to end on a simulated study: files, contracts, both rankings, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from analysis.bootstrap import ALGORITHM1_COLUMNS
from analysis.effects import EFFECTS_COLUMNS, IMPORTANCE_COLUMNS
from analysis.simulate import simulate_study, write_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    runs, curves, truth = simulate_study(900, seed=11)
    write_study(runs, curves, truth, d / "runs.csv", d / "curves.csv")
    return d


def test_cli_report_writes_every_file_and_the_contracts(study):
    out = study / "report"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "report",
            str(study / "runs.csv"),
            "--curves",
            str(study / "curves.csv"),
            "--stratum",
            "params.sft_checkpoint",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    assert "report.html" in res.stdout
    hp = pd.read_csv(out / "hparams.csv", dtype={"value": str, "stratum": str})
    assert list(hp.columns[:8]) == ALGORITHM1_COLUMNS
    assert list(pd.read_csv(out / "effects.csv").columns[:10]) == EFFECTS_COLUMNS
    assert list(pd.read_csv(out / "importance.csv").columns[:6]) == IMPORTANCE_COLUMNS
    for name in (
        "tuning_curves.csv",
        "aggregates.csv",
        "frontier.csv",
        "compute_to_target.csv",
        "budget_winners.csv",
        "tuning_curves.png",
        "frontier.png",
    ):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["excluded"]["not_finished"] > 0 and summary["n_runs_used"] < 900
    html = (out / "report.html").read_text()
    assert "Algorithm 1" in html and "Effects" in html and "data:image/png;base64" in html
    # the planted strongest effects come out on top of the importance ranking
    truth = json.loads((study / "runs.truth.json").read_text())
    imp = pd.read_csv(out / "importance.csv", dtype={"stratum": str})
    for stratum, plan in truth["strata"].items():
        ranked = imp[imp.stratum == stratum].sort_values("importance", ascending=False).hparam.tolist()
        nulls = [h for h, info in plan.items() if info["class"] == "null"]
        strong = [h for h, info in plan.items() if info["class"] == "strong"]
        assert max(ranked.index(h) for h in strong) < min(ranked.index(h) for h in nulls)


def test_cli_errors_exit_nonzero_with_a_message(study, tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "report",
            str(study / "runs.csv"),
            "--metric",
            "metrics.nope",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "metrics.nope" in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "does not exist" in res.stderr


def test_mc_method_and_min_mode_run(study, tmp_path):
    from analysis.report import ReportOptions, build_report

    result = build_report(
        study / "runs.csv",
        tmp_path / "r",
        ReportOptions(method="mc", resamples=500, mode="min", seed=3, plots=False, win_ci_reps=0),
    )
    hp = pd.read_csv(tmp_path / "r" / "hparams.csv")
    assert set(hp.stratum.astype(str)) == {"all"}
    assert result.summary["method"] == "mc" and result.summary["resamples"] == 500


def test_a_sweep_with_fewer_runs_than_coefficients_reports_without_fake_significance(tmp_path):
    from analysis.report import build_report

    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(5)],
            "status": "FINISHED",
            "params.lr": ["1e-4", "3e-4", "1e-4", "3e-4", "1e-4"],
            "params.temperature": ["0.5", "1.0", "1.0", "0.5", "0.5"],
            "params.batch": ["8", "8", "16", "16", "32"],
            "metrics.heldout_goal_success": [0.1, 0.4, 0.3, 0.2, 0.25],
        }
    )
    result = build_report(runs, tmp_path / "r")
    effects = pd.read_csv(tmp_path / "r" / "effects.csv")
    assert not effects.significant.any() and effects.effect_lo.isna().all()
    assert result.summary["strata"]["all"]["effects_without_intervals"]
    assert "Too few runs for the effects model" in (tmp_path / "r" / "report.html").read_text()


def test_a_stratum_whose_runs_all_tie_recommends_no_single_value(tmp_path):
    """The study's base student never succeeds: every run scores 0, so no value is best, and the report says so
    (tied values named together, p_best 1/K each) instead of crowning the first value with p_best 1."""
    from analysis.report import build_report

    n = 16
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(n)],
            "status": "FINISHED",
            "params.lr": ["1e-4", "3e-4"] * (n // 2),
            "params.temperature": ["0.5", "0.5", "1.0", "1.0"] * (n // 4),
            "metrics.heldout_goal_success": [0.0] * n,
        }
    )
    result = build_report(runs, tmp_path / "r")
    hp = result.summary["strata"]["all"]["hparams"]
    assert hp["lr"]["effects_best"] == "1e-4 = 3e-4" and hp["temperature"]["effects_best"] == "0.5 = 1.0", hp
    assert hp["lr"]["p_best"] == pytest.approx(0.5) and hp["temperature"]["p_best"] == pytest.approx(0.5)
    assert "1e-4 = 3e-4" in (tmp_path / "r" / "report.html").read_text()


def test_band_method_reaches_the_tuning_curves_table(study, tmp_path):
    import numpy as np

    from analysis.curves import tuning_curve_band
    from analysis.runs import load_runs, prepare_runs

    tables = {}
    for method in ("ld_equal_tailed", "dkw"):
        args = ["--band-method", method] if method == "dkw" else []  # the default is Learned-Miller-DeStefano
        subprocess.run(
            [sys.executable, "-m", "analysis", "report", str(study / "runs.csv"), "--stratum",
             "params.sft_checkpoint", "--hparams", "params.batch_size", "--no-plots", "--out",
             str(tmp_path / method), *args],
            check=True, capture_output=True,
        )  # fmt: skip
        tables[method] = pd.read_csv(tmp_path / method / "tuning_curves.csv", dtype={"stratum": str})
    prepared = prepare_runs(
        load_runs(study / "runs.csv"), metric="metrics.heldout_goal_success", stratum="params.sft_checkpoint"
    )
    stratum, frame = next(iter(prepared.strata()))
    y = frame.loc[frame["params.batch_size"] == "64", prepared.metric].to_numpy(float)
    for method, table in tables.items():
        rows = table[(table.stratum == str(stratum)) & (table.value.astype(str) == "64")]
        lo, hi = tuning_curve_band(y, len(rows), method=method)
        np.testing.assert_allclose(rows.band_lo, lo, atol=1e-12)
        np.testing.assert_allclose(rows.band_hi, hi, atol=1e-12)
    ld, dkw = tables["ld_equal_tailed"], tables["dkw"]
    assert ((ld.band_hi - ld.band_lo).mean()) < ((dkw.band_hi - dkw.band_lo).mean())


def test_report_runs_blas_single_threaded_unless_told_otherwise(study, tmp_path):
    code = (
        "import os, sys; from analysis.cli import report\n"
        "try: report.main(sys.argv[1:], standalone_mode=False)\n"
        "finally: print('BLAS', os.environ.get('OPENBLAS_NUM_THREADS'))"
    )
    args = [str(study / "runs.csv"), "--stratum", "params.sft_checkpoint", "--hparams", "params.gamma",
            "--no-plots", "--out", str(tmp_path / "r")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True).stdout
    assert "BLAS 1" in out
    out = subprocess.run([sys.executable, "-c", code, *args], env=env | {"OPENBLAS_NUM_THREADS": "2"},
                         capture_output=True, text=True).stdout  # fmt: skip
    assert "BLAS 2" in out
