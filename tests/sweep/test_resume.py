"""A driver SIGKILLed mid-sweep and resumed: exactly the planned finished runs, no duplicates, searcher kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from sweep.driver import load_settings, resume
from sweep.tracking import find_child_runs

PLANNED = 6


def _finished(sweep_dir: Path) -> int:
    s = load_settings(sweep_dir)
    runs = find_child_runs(MlflowClient(tracking_uri=s.tracking_uri), s.experiment_id, s.sweep_id)
    return sum(r.info.status == "FINISHED" for r in runs)


def test_resume_after_sigkill(ray_cluster, tmp_path):
    options = tmp_path / "options.yaml"
    options.write_text(yaml.safe_dump({"num_evals": 4, "sleep_s": 0.5}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sweep.cli", "-q", "launch", "paper", "--out", str(out), "--address", ray_cluster,
           "--objective", "sweep.objectives:surrogate", "--options", str(options), "--trials", str(PLANNED),
           "--max-concurrent", "2", "--seed", "5"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    sweep_dir = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(out.glob("*/sweep.json"))
            if found and (found[0].parent / "tune" / "experiment").exists():
                sweep_dir = found[0].parent
                if _finished(sweep_dir) >= 2:
                    break
            time.sleep(0.5)
        assert proc.poll() is None, f"the driver ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        assert sweep_dir is not None and _finished(sweep_dir) < PLANNED
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and only it: Ray's processes belong to the fixture
        proc.wait(timeout=30)
    killed_at = _finished(sweep_dir)
    time.sleep(2)  # let Ray notice the dead driver and free its trials' resources

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
    assert client.get_run(s.parent_run_id).info.status == "FINISHED"
    for run in runs:  # every run has its full curve, each step once after export's de-duplication
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "heldout_goal_success")}
        assert steps == {1, 2, 3, 4}
    assert killed_at >= 2
