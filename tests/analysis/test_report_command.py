"""`agentsweep report SWEEP_DIR` exports the sweep and reports it; `--stratum auto` picks the branch point."""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from analysis.simulate import simulate_study
from sweep import export
from sweep.report_command import report


def test_report_on_a_sweep_directory_exports_then_reports(tmp_path, monkeypatch):
    runs, curves, _ = simulate_study(150, seed=4)
    calls = []

    def fake_export(sweep, out):  # sweep.export is tested with MLflow in tests/sweep; here: the wiring
        calls.append(sweep)
        runs.to_parquet(out, index=False)
        curves.to_parquet(export.curves_path(out), index=False)
        return out, export.curves_path(out)

    monkeypatch.setattr(export, "export_sweep", fake_export)
    (tmp_path / "sweep").mkdir()
    out = tmp_path / "rep"
    res = CliRunner().invoke(
        report, [str(tmp_path / "sweep"), "--stratum", "auto", "--no-plots", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert [str(c) for c in calls] == [str(tmp_path / "sweep")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stratum"] == "params.sft_checkpoint"
    assert (out / "frontier.csv").exists()  # the exported curves were used
    assert set(pd.read_csv(out / "hparams.csv", dtype={"stratum": str}).stratum) == {
        "0",
        "2.5e+18",
        "7.6e+18",
    }


def test_stratum_auto_without_a_branch_point_is_one_stratum(tmp_path):
    runs, _, _ = simulate_study(80, seed=1)
    runs.drop(columns="params.sft_checkpoint").to_csv(tmp_path / "runs.csv", index=False)
    res = CliRunner().invoke(
        report, [str(tmp_path / "runs.csv"), "--stratum", "auto", "--no-plots", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["stratum"] is None


def test_a_directory_that_is_not_a_sweep_says_so(tmp_path):
    res = CliRunner().invoke(report, [str(tmp_path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "not a sweep directory" in res.output
