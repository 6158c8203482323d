"""A real two-node Ray cluster on this machine loses its worker node while trials run on it."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweep.settings import load_settings
from sweep.tracking import find_child_runs

RAY = str(Path(sys.executable).with_name("ray"))
FAST_HEALTH_CHECK = {  # the head declares a silent node dead in ~3 s, not ~30 s
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [RAY, "start", "--block", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def _pids_with(*needles: str) -> list[int]:
    """PIDs of this user's processes whose command line holds every needle."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if all(n in cmdline for n in needles):
                found.append(int(entry.name))
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def two_nodes():
    """A head (1 `slot`) and a worker node (2 `slot`s), each with its own ports; yields (address, kill_worker)."""
    temp = tempfile.mkdtemp(prefix="as-mn-")  # short: Ray's socket paths live under it
    gcs, head_agent, head_nm, worker_agent, worker_nm = _free_ports(5)
    env = {**os.environ, **FAST_HEALTH_CHECK}
    common = ["--num-cpus", "2", "--disable-usage-stats"]
    head = _node(
        [
            "--head",
            "--port",
            str(gcs),
            "--temp-dir",
            temp,
            "--dashboard-agent-listen-port",
            str(head_agent),
            "--node-manager-port",
            str(head_nm),
            "--resources",
            json.dumps({"slot": 1}),
            "--include-dashboard",
            "false",
            *common,
        ],
        env,
    )
    worker = None
    try:
        deadline = time.monotonic() + 120
        while not _pids_with("raylet", f"--node_manager_port={head_nm}"):
            assert head.poll() is None and time.monotonic() < deadline, "the head node did not start"
            time.sleep(0.5)
        worker = _node(
            [
                "--address",
                f"127.0.0.1:{gcs}",
                "--dashboard-agent-listen-port",
                str(worker_agent),
                "--node-manager-port",
                str(worker_nm),
                "--resources",
                json.dumps({"slot": 2}),
                *common,
            ],
            env,
        )
        while not _pids_with("raylet", f"--node_manager_port={worker_nm}"):
            assert worker.poll() is None and time.monotonic() < deadline, "the worker node did not start"
            time.sleep(0.5)

        def kill_worker() -> None:
            _kill(_pids_with("raylet", f"--node_manager_port={worker_nm}"))

        yield f"127.0.0.1:{gcs}", kill_worker
    finally:
        for proc in (worker, head):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        _kill(_pids_with(temp))  # Ray processes that left the `ray start` session
        shutil.rmtree(temp, ignore_errors=True)


def _trials_reporting(sweep_root: Path) -> int:
    return sum(
        1 for p in sweep_root.glob("*/tune/experiment/*/result.json") if p.read_text().count("\n") >= 1
    )


def test_worker_node_lost_mid_trials(two_nodes, tmp_path):
    address, kill_worker = two_nodes
    options = tmp_path / "options.yaml"
    options.write_text(yaml.safe_dump({"num_evals": 6, "sleep_s": 1.0}))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "sweep.cli",
        "-q",
        "launch",
        "paper",
        "--out",
        str(out),
        "--address",
        address,
        "--objective",
        "sweep.objectives:surrogate",
        "--options",
        str(options),
        "--trials",
        "4",
        "--max-concurrent",
        "3",
        "--resource",
        "slot=1",
        "--max-failures",
        "2",
        "--seed",
        "7",
    ]
    driver = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 150
        while _trials_reporting(out) < 3:  # three trials run: two on the worker's slots, one on the head's
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "three trials never ran at once"
            time.sleep(0.2)
        kill_worker()
        _, err = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
    assert driver.returncode == 0, err[-3000:]
    (sweep_dir,) = [p.parent for p in out.glob("*/sweep.json")]
    s = load_settings(sweep_dir)
    client = MlflowClient(tracking_uri=s.tracking_uri)
    runs = find_child_runs(client, s.experiment_id, s.sweep_id)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["agentsweep.trial_id"] for r in runs}) == 4
    retried = {r.info.run_id for r in runs if "agentsweep.retries" in r.data.tags}
    assert len(retried) == 2  # the worker's two trials, retried on the head
    for run in runs:
        counts: collections.Counter = collections.Counter()
        for key in run.data.metrics:
            counts.update((key, m.step) for m in client.get_metric_history(run.info.run_id, key))
        assert {step for key, step in counts if key == "heldout_goal_success"} == set(range(1, 7))
        assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n > 1}
        summary = json.loads(
            (
                sweep_dir
                / "tune"
                / "experiment"
                / run.data.tags["agentsweep.trial_id"]
                / "samples"
                / "summary.json"
            ).read_text()
        )
        assert (summary["start_step"] > 0) == (
            run.info.run_id in retried
        )  # retried from its last checkpoint, not from 0
