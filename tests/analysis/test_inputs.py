"""Bad analysis input fails with a message naming the column or option and the fix (issue 15, item 12)."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from analysis.aggregate import probability_of_improvement
from analysis.report import ReportOptions, build_report
from analysis.runs import prepare_runs
from analysis.simulate import simulate_study

FAST = ReportOptions(stratum="params.sft_checkpoint", plots=False, win_ci_reps=0)


@pytest.fixture(scope="module")
def study():
    runs, curves, _ = simulate_study(120, seed=5)
    return runs, curves


def test_repeated_run_ids_are_refused_not_counted_twice(study):
    runs, curves = study
    doubled = pd.concat([runs, runs.iloc[:3]], ignore_index=True)
    with pytest.raises(ValueError, match=r"column run_id has 3 repeated.*drop_duplicates"):
        prepare_runs(doubled, metric="metrics.heldout_goal_success")
    with pytest.raises(ValueError, match="run_id"):
        build_report(doubled, "/nonexistent/never-written", FAST, curves_source=curves)


def test_curves_sharing_no_run_say_so(study, tmp_path):
    runs, curves = study
    other = curves.assign(run_id="other-" + curves["run_id"])
    with pytest.raises(ValueError, match="shares no run_id"):
        build_report(runs, tmp_path / "r", FAST, curves_source=other)


def test_out_naming_a_file_is_a_one_line_error(study, tmp_path):
    runs, _ = study
    runs.to_csv(tmp_path / "runs.csv", index=False)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "report",
            str(tmp_path / "runs.csv"),
            "--no-plots",
            "--out",
            str(tmp_path / "runs.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1, res.stderr
    assert "is a file: name a folder" in res.stderr and "Traceback" not in res.stderr


def test_a_second_report_into_the_folder_leaves_no_stale_files(study, tmp_path):
    runs, curves = study
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    build_report(runs, out, FAST, curves_source=curves)
    assert (out / "frontier.csv").exists()
    result = build_report(runs, out, FAST)
    assert not (out / "frontier.csv").exists() and not (out / "budget_winners.csv").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not ours: left alone
    assert {p.name for p in result.files} <= {p.name for p in out.iterdir()}


def test_probability_of_improvement_memory_is_linear():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 50, 4000).astype(float), rng.integers(0, 50, 5000).astype(float)
    tracemalloc.start()
    poi = probability_of_improvement([x], [y])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20  # a (n, m) difference matrix would be 160 MB
    diff = x[:, None] - y[None, :]
    assert poi == pytest.approx((diff > 0).mean() + 0.5 * (diff == 0).mean())
