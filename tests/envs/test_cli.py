"""`agentsweep envs list | play | bench` on the toy env (the browser path is covered by test_browser.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from envs.cli import envs
from envs.jsonl import read_jsonl


def test_list_shows_split_sizes() -> None:
    result = CliRunner().invoke(envs, ["list", "--tasks"])
    assert result.exit_code == 0, result.output
    assert "miniwob.train" in result.output and "693" in result.output
    assert "click-test*" in result.output


def test_play_prints_the_trajectory_and_writes_jsonl(tmp_path) -> None:
    out = tmp_path / "t.jsonl"
    result = CliRunner().invoke(envs, ["play", "toy.login", "--seed", "3", "--jsonl", str(out)])
    assert result.exit_code == 0, result.output
    assert 'fill("10", "zebra")' in result.output and "success; steps=3" in result.output
    (traj,) = read_jsonl(out)
    assert traj.success and traj.num_steps == 3


def test_play_reports_bad_tasks_and_missing_workarena_credentials(monkeypatch) -> None:
    for var in ("SNOW_INSTANCE_URL", "SNOW_INSTANCE_UNAME", "SNOW_INSTANCE_PWD", "SNOW_INSTANCE_POOL"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(envs, ["play", "toy.nope"])
    assert result.exit_code != 0 and "unknown toy task" in result.output
    result = CliRunner().invoke(envs, ["play", "workarena.create-user"])
    assert result.exit_code != 0 and "SNOW_INSTANCE_PWD" in result.output


def test_bench_toy_reports_throughput() -> None:
    result = CliRunner().invoke(
        envs, ["bench", "--family", "toy", "--tasks", "login,fill-text", "--seeds", "20"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["episodes"] == 40 and figures["success"] == 1.0 and figures["env_error_rate"] == 0.0


def test_cli_module_imports_only_light_modules() -> None:
    code = "import sys, envs.cli; heavy = [m for m in ('browsergym', 'playwright', 'numpy', 'rich') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
