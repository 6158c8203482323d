"""The foundation's promises: a light CLI start-up, `python -m analysis`, and a base install without extras."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "ray", "mlflow", "playwright", "browsergym", "optuna")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_root_help_lists_commands_without_heavy_imports():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from sweep.cli import cli, LAZY_COMMANDS\n"
        "res = CliRunner().invoke(cli, ['--help'])\n"
        "assert res.exit_code == 0, res.output\n"
        "for name in LAZY_COMMANDS: assert name in res.output, name\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    assert "HEAVY=\n" in _run(code)


@pytest.mark.parametrize("name", ["report", "simulate", "envs", "flops", "launch", "demo"])
def test_subcommand_help_is_light(name):
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from sweep.cli import cli, LAZY_COMMANDS\n"
        f"if {name!r} not in LAZY_COMMANDS: print('ABSENT'); raise SystemExit(0)\n"
        f"res = CliRunner().invoke(cli, [{name!r}, '--help'])\n"
        "assert res.exit_code == 0, res.output\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = _run(code)
    if "ABSENT" in out:
        pytest.fail(f"`agentsweep {name}` is not registered in sweep/cli.py LAZY_COMMANDS")
    assert "HEAVY=\n" in out


def test_analysis_imports_without_heavy_packages():
    # users run reports on runs exported from other tools, on laptops: analysis must not pull the trainers' stack
    code = (
        "import sys\n"
        "import analysis, analysis.runs, analysis.bootstrap, analysis.effects, analysis.curves, analysis.report\n"
        "import analysis.simulate, analysis.aggregate, analysis.cli\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    assert "HEAVY=\n" in _run(code)


def test_unknown_command_exits_2():
    out = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "no-such-command"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 2
    assert "No such command" in out.stderr


def test_python_m_analysis_help():
    out = subprocess.run(
        [sys.executable, "-m", "analysis", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "report" in out.stdout


def test_only_make_test_switches_ray_auth_off():
    """`make demo` (and any recipe but `make test`) leaves Ray's token authentication on."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    recipe = 'envcheck: ; @echo "[$$RAY_AUTH_MODE]"'
    out = subprocess.run(
        ["make", "-s", "--eval", recipe, "envcheck"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    makefile = (ROOT / "Makefile").read_text()
    assert "test: export RAY_AUTH_MODE := disabled" in makefile


@pytest.mark.slow
@pytest.mark.timeout(1200)  # its pip install alone may take 900 s
def test_base_install_reports_without_extras(tmp_path):
    """`pip install .` with no extras, then a real report on a simulated CSV, with no torch/ray/mlflow around."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        check=True,
        env=env,
        timeout=900,
        cwd=tmp_path,
    )
    check = subprocess.run(
        [
            py,
            "-c",
            "import importlib.util as u; print([m for m in ('torch','ray','mlflow') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert check.stdout.strip() == "[]"
    exe = env_dir / "bin" / "agentsweep"
    runs, out_dir = tmp_path / "runs.csv", tmp_path / "report"
    for args in (
        ["report", "--help"],
        ["simulate", "--runs", "200", "--seed", "1", "--out", str(runs)],
        ["report", str(runs), "--stratum", "params.sft_checkpoint", "--out", str(out_dir)],
    ):
        res = subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
    assert (out_dir / "hparams.csv").exists()
    assert (out_dir / "report.html").exists()
