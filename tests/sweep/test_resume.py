"""A driver SIGKILLed at chosen points and resumed: exactly the planned finished runs, each (run, key, step)
logged once, the searcher kept; a torn result.json line skipped."""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from sweep.driver import load_settings, resume
from sweep.reconcile import read_results
from sweep.tracking import find_child_runs, trial_seed

PLANNED = 6
STEPS = {1, 2, 3, 4}


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 150) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, (
            f"the driver ended before {path.name}: {proc.stderr.read().decode()[-2000:]}"
        )
        assert time.monotonic() < deadline, f"{path.name} did not appear in {timeout_s} s"
        time.sleep(0.1)


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and only it: Ray's processes belong to the fixture
    proc.wait(timeout=30)
    time.sleep(1)  # let Ray notice the dead driver and free its trials' resources


def _result_lines(sweep_dir: Path) -> int:
    return sum(len(read_results(p)) for p in (sweep_dir / "tune" / "experiment").glob("*/result.json"))


def metric_counts(client: MlflowClient, run_id: str) -> collections.Counter:
    """How many times each (key, step) was logged in a run (a set would hide duplicates)."""
    counts: collections.Counter = collections.Counter()
    for key in client.get_run(run_id).data.metrics:
        counts.update((key, m.step) for m in client.get_metric_history(run_id, key))
    return counts


def test_resume_after_sigkill_at_chosen_points(ray_cluster, tmp_path):
    hold = tmp_path / "hold"
    hold.mkdir()
    options = tmp_path / "options.yaml"
    options.write_text(yaml.safe_dump({"num_evals": 4, "sleep_s": 0.2, "hold_dir": str(hold)}))
    out = tmp_path / "out"
    launch = [
        sys.executable,
        "-m",
        "sweep.cli",
        "-q",
        "launch",
        "paper",
        "--out",
        str(out),
        "--address",
        ray_cluster,
        "--objective",
        "sweep.objectives:surrogate",
        "--options",
        str(options),
        "--trials",
        str(PLANNED),
        "--max-concurrent",
        "2",
        "--seed",
        "5",
    ]

    def driver(cmd: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )

    # 1. before a trial's first report
    (hold / "arm-step1").touch()
    proc = driver(launch)
    _wait_for(hold / "held-step1", proc)
    _kill(proc)
    (sweep_dir,) = [p.parent for p in out.glob("*/sweep.json")]
    resume_cmd = [sys.executable, "-m", "sweep.cli", "-q", "resume", str(sweep_dir)]

    # 2. mid-trial: a trial has reported steps 1 and 2
    (hold / "arm-step3").touch()
    proc = driver(resume_cmd)
    _wait_for(hold / "held-step3", proc)
    _kill(proc)

    # 3. between Tune's write and MLflow's: Tune logs a result while the MLflow store is locked
    (hold / "arm-step2").touch()
    proc = driver(resume_cmd)
    _wait_for(hold / "held-step2", proc)
    s = load_settings(sweep_dir)
    lock = sqlite3.connect(s.tracking_uri.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    before = _result_lines(sweep_dir)
    (hold / "release-step2").touch()
    deadline = time.monotonic() + 150  # the _wait_for timeout: a loaded 2-core box is slow, not stuck
    while _result_lines(sweep_dir) == before and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert _result_lines(sweep_dir) > before, (
        "Tune wrote no result in 150 s while MLflow was locked "
        f"(driver {'running' if proc.poll() is None else f'ended rc {proc.returncode}'})"
    )
    _kill(proc)
    lock.execute("ROLLBACK")
    lock.close()

    # a torn last line (a kill mid-write) in one trial's result log
    logs = sorted((sweep_dir / "tune" / "experiment").glob("*/result.json"))
    with open(logs[0], "a") as f:
        f.write('{"step": 3, "heldout_goal_succ')

    for name in ("release-step1", "release-step3"):
        (hold / name).touch()
    result = resume(sweep_dir)
    s = result.settings
    client = MlflowClient(tracking_uri=s.tracking_uri)
    runs = find_child_runs(client, s.experiment_id, s.sweep_id)
    assert (result.num_finished, result.num_trials) == (PLANNED, PLANNED)
    assert len(runs) == PLANNED and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["agentsweep.trial_id"] for r in runs}) == PLANNED
    # the restored searcher continued: a fresh one with the same seed would re-suggest the first configs
    configs = {tuple(sorted(r.data.params.items())) for r in runs}
    assert len(configs) == PLANNED
    # seeds come from the suggestion order, counted on across the resumes; each trial's last attempt (a
    # resumed one for the interrupted trials) ran with the seed its run is tagged with
    indices = sorted(int(r.data.tags["agentsweep.suggestion"]) for r in runs)
    assert indices == list(range(PLANNED))
    for run in runs:
        seed = int(run.data.tags["agentsweep.seed"])
        assert seed == trial_seed(5, int(run.data.tags["agentsweep.suggestion"]))
        summary = client.download_artifacts(
            run.info.run_id, "samples/summary.json", str(tmp_path / run.info.run_id)
        )
        assert json.loads(Path(summary).read_text())["seed"] == seed
    assert client.get_run(s.parent_run_id).info.status == "FINISHED"
    for run in runs:  # every run has its full curve, each (key, step) exactly once
        counts = metric_counts(client, run.info.run_id)
        assert {step for key, step in counts if key == "heldout_goal_success"} == STEPS
        assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n > 1}
    assert not s.journal_path.exists()
