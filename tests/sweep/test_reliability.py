"""Faults a long sweep meets: no tracking server, a server that goes away mid-sweep, Ray's auth left on."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from sweep.settings import SweepSettings, load_settings
from sweep.space import load_space
from sweep.tracking import find_child_runs

PASSWORD = "s3cret-pw-5521"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def test_unreachable_tracking_server_fails_fast_with_one_line(tmp_path):
    """launch, resume, status, export, ui and report mlflow:...: exit 1 within ~15 s, one line naming the URI and what to do."""
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{_free_port()}"  # nothing listens there
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    SweepSettings(
        sweep_id="s",
        sweep_dir=str(sweep_dir),
        space=load_space("paper").to_dict(),
        tracking_uri=uri,
        experiment_id="1",
        parent_run_id="p",
    ).save()
    env = {"MLFLOW_TRACKING_URI": uri}  # resume's way to give the password back
    commands = {
        "launch": ["launch", "paper", "--trials", "1", "--out", str(tmp_path / "out"), "--tracking-uri", uri],
        "resume": ["resume", str(sweep_dir)],
        "status": ["status", str(sweep_dir)],
        "export": ["export", str(sweep_dir), "-o", str(tmp_path / "runs.csv")],
        "ui": ["ui", str(sweep_dir), "--port", str(_free_port())],
        "report": ["report", "mlflow:agentsweep", "--tracking-uri", uri, "--out", str(tmp_path / "report")],
    }
    t0 = time.monotonic()
    procs = {name: _cli(*args, env=env) for name, args in commands.items()}  # in parallel, on 2 cores
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        wall_s = time.monotonic() - t0
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 1, (name, out, err)
        assert len(lines) == 1 and lines[0].startswith("Error: "), (name, err)
        assert "alice:<redacted>@127.0.0.1" in lines[0] and "is not reachable" in lines[0], lines[0]
        assert "mlflow server" in lines[0] and "--tracking-uri" in lines[0], lines[0]
        assert PASSWORD not in out + err and not out.strip(), out  # no progress bar before the error
        # 5 s of probing + five CLI start-ups sharing 2 cores (alone: ~7 s; it was 248 s of retries, then a traceback)
        assert wall_s < 30, f"{name}: {wall_s:.1f} s to fail"


def test_library_code_leaves_ray_auth_on(tmp_path):
    """Ray 2.60 turns token auth on for a local cluster; agentsweep must not switch it off (tests opt out)."""
    code = (
        "import os, ray\n"
        "from sweep.cluster import ensure_ray\n"
        f"ensure_ray(num_cpus=1, temp_dir={str(tmp_path / 'ray')!r})\n"
        "print('MODE=' + os.environ.get('RAY_AUTH_MODE', ''))\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["HOME"] = str(tmp_path)  # Ray writes its new token to ~/.ray/auth_token
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MODE=token" in out.stdout
    assert (tmp_path / ".ray" / "auth_token").is_file()


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 150) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, f"the driver ended early: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"{path.name} did not appear in {timeout_s} s"
        time.sleep(0.1)


def test_tracking_server_stopped_mid_sweep_loses_and_doubles_nothing(ray_cluster, mlflow_server, tmp_path):
    """The server is killed while trials report and started again later: the writes it missed wait in the
    journal, are sent when it is back, and every (run, key, step) ends up logged exactly once."""
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "arm-step2").touch()
    (hold / "arm-step4").touch()
    options = tmp_path / "options.yaml"
    options.write_text(yaml.safe_dump({"num_evals": 4, "sleep_s": 0.2, "hold_dir": str(hold)}))
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}  # fail fast, journal
    proc = _cli(
        "launch",
        "paper",
        "--out",
        str(tmp_path / "out"),
        "--address",
        ray_cluster,
        "--tracking-uri",
        mlflow_server.uri,
        "--objective",
        "sweep.objectives:surrogate",
        "--options",
        str(options),
        "--trials",
        "4",
        "--max-concurrent",
        "2",
        "--seed",
        "3",
        env=env,
    )
    try:
        _wait_for(hold / "held-step2", proc)  # one trial waits before its 2nd report, another runs on
        _wait_for(hold / "held-step4", proc)
        mlflow_server.stop()
        (
            hold / "release-step2"
        ).touch()  # reports, a trial end and new trials' starts while the server is gone
        (sweep_dir,) = [p.parent for p in (tmp_path / "out").glob("*/sweep.json")]
        journal = sweep_dir / "mlflow_journal.jsonl"
        deadline = time.monotonic() + 90
        while (
            not journal.exists() or len(journal.read_text().splitlines()) < 6
        ) and time.monotonic() < deadline:
            time.sleep(0.2)
        journaled = len(journal.read_text().splitlines())
        assert journaled >= 6
        mlflow_server.start()
        (hold / "release-step4").touch()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    assert not journal.exists()
    s = load_settings(sweep_dir)
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    runs = find_child_runs(client, s.experiment_id, s.sweep_id)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        counts: collections.Counter = collections.Counter()
        for key in run.data.metrics:
            counts.update((key, m.step) for m in client.get_metric_history(run.info.run_id, key))
        assert {step for key, step in counts if key == "heldout_goal_success"} == {1, 2, 3, 4}
        assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n > 1}
        assert len(counts) == 4 * 6  # 6 metrics at each of the 4 steps
    assert client.get_run(s.parent_run_id).info.status == "FINISHED"
    print(f"journaled {journaled} writes while the server was down")
