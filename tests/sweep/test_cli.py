"""The sweep commands through click: launch, status, export, resume errors, ui on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from sweep.cli import cli


@pytest.fixture(scope="module")
def sweep_dir(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    options = root / "options.yaml"
    options.write_text(yaml.safe_dump({"num_evals": 2}))
    result = CliRunner().invoke(
        cli,
        [
            "-q",
            "launch",
            "paper",
            "--out",
            str(root),
            "--trials",
            "3",
            "--seed",
            "4",
            "--objective",
            "sweep.objectives:surrogate",
            "--options",
            str(options),
        ],
    )
    assert result.exit_code == 0, result.output
    (found,) = list(root.glob("*/sweep.json"))
    return found.parent


def test_status_json(sweep_dir):
    result = CliRunner().invoke(cli, ["status", str(sweep_dir), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["trials_by_state"] == {"FINISHED": 3} and info["planned_trials"] == 3
    assert info["parent_status"] == "FINISHED" and info["flops_spent"] > 0
    table = CliRunner().invoke(cli, ["status", str(sweep_dir)])
    assert table.exit_code == 0 and "trials FINISHED" in table.output


def test_export_csv(sweep_dir, tmp_path):
    out = tmp_path / "runs.csv"
    result = CliRunner().invoke(cli, ["export", str(sweep_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(
        out,
        dtype={c: str for c in pd.read_csv(out, nrows=0).columns if c.startswith("params.")},
        keep_default_na=False,
    )
    curves = pd.read_csv(tmp_path / "runs.curves.csv")
    assert len(runs) == 3 and len(curves) == 6 and set(curves["run_id"]) == set(runs["run_id"])
    assert set(runs["params.curriculum"]) <= {"True", "False"}
    bad = CliRunner().invoke(cli, ["export", str(sweep_dir), "-o", str(tmp_path / "runs.xlsx")])
    assert bad.exit_code == 1 and "use a .parquet or .csv" in bad.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["launch", "paper"], 2, "give --trials N or --budget-flops F"),
        (["launch", "no-such-space", "--trials", "1"], 1, "packaged name"),
        (["launch", "paper", "--trials", "1", "--resource", "browser"], 2, "NAME=AMOUNT"),
    ],
)
def test_launch_errors(args, code, message, tmp_path):
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path)])
    assert result.exit_code == code and message in result.output, result.output


def test_resume_of_a_finished_sweep_changes_nothing(sweep_dir):
    result = CliRunner().invoke(cli, ["-q", "resume", str(sweep_dir)])
    assert result.exit_code == 0, result.output
    info = json.loads(CliRunner().invoke(cli, ["status", str(sweep_dir), "--json"]).output)
    assert info["trials_by_state"] == {"FINISHED": 3}


def test_resume_refuses_a_sweep_another_driver_runs(sweep_dir):
    from sweep.settings import sweep_lock

    with sweep_lock(sweep_dir):  # what a running driver holds
        result = CliRunner().invoke(cli, ["-q", "resume", str(sweep_dir)])
    assert result.exit_code == 1 and "being run by another driver" in result.output, result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(addr)
                    if width == 8:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:
                        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


@pytest.mark.slow
def test_ui_serves_on_loopback(sweep_dir):
    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "agentsweep")
    proc = subprocess.Popen(
        [exe, "ui", str(sweep_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    status = resp.status
            except OSError:
                time.sleep(1)
        assert status == 200
        assert _listening_addresses(port) == {"127.0.0.1"}  # bound to loopback, not 0.0.0.0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_export_passes_through_report(sweep_dir, tmp_path):
    from sweep.cli import LAZY_COMMANDS

    if "report" not in LAZY_COMMANDS:
        pytest.skip("`agentsweep report` (analysis) is not registered in sweep/cli.py yet")
    runs = tmp_path / "runs.parquet"
    assert CliRunner().invoke(cli, ["export", str(sweep_dir), "-o", str(runs)]).exit_code == 0
    result = CliRunner().invoke(cli, ["report", str(runs), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert {"hparams.csv", "summary.json", "report.html"} <= {p.name for p in (tmp_path / "report").iterdir()}
