"""Secrets in the driver's and the workers' environments and in the tracking URI never leave in clear:
scan the sweep directory, the MLflow store and artifacts, Ray's session logs and the CLI's output."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sweep.cli import cli
from sweep.secrets import REDACTED, find_secret, is_secret_name, redact_uri

ROOT = Path(__file__).resolve().parents[2]
DRIVER_SECRET = "drv-pw-7f3a9c1e"
WORKER_SECRET = "sk-wrk-5b2e8d4f"
URI_PASSWORD = "uri-pw-91c0a7"


@pytest.fixture(scope="module")
def leaky_ray():
    """A local Ray whose workers (only) hold OPENAI_API_KEY and can import the leaky objective: the raylet
    inherits them from this process's environment, which gets them back out once Ray is up."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="as-sec-")
    saved = {k: os.environ.get(k) for k in ("OPENAI_API_KEY", "PYTHONPATH")}
    os.environ["OPENAI_API_KEY"] = WORKER_SECRET
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved["PYTHONPATH"]) if p)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield Path(temp_dir)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_no_secret_leaves_in_clear(leaky_ray, mlflow_server, tmp_path, monkeypatch):
    server = mlflow_server
    try:
        monkeypatch.setenv("SNOW_INSTANCE_PWD", DRIVER_SECRET)  # the driver's own (set after Ray started)
        uri = server.uri.replace("http://", f"http://agent:{URI_PASSWORD}@")
        options = tmp_path / "options.yaml"
        options.write_text(yaml.safe_dump({"note": f"password {DRIVER_SECRET}"}))
        out = tmp_path / "out"
        result = CliRunner().invoke(
            cli,
            [
                "launch",
                "paper",
                "--out",
                str(out),
                "--trials",
                "2",
                "--max-failures",
                "0",
                "--objective",
                "tests.sweep.leaky_objective:leaky",
                "--options",
                str(options),
                "--tracking-uri",
                uri,
            ],
        )
        assert result.exit_code == 0, result.output
        status = CliRunner(env={"MLFLOW_TRACKING_URI": uri}).invoke(
            cli, ["status", str(next(out.glob("*/sweep.json")).parent), "--json"]
        )
        assert status.exit_code == 0, status.output
        assert '"FAILED": 2' in status.output and "agent:<redacted>@" in status.output
    finally:
        server.stop()
    files = _files(out, tmp_path / "server", leaky_ray)
    assert any(p.name == "error.txt" for p in files) and any(p.name == "result.json" for p in files)
    assert any("trajectories.jsonl" in p.name for p in files)
    texts = [result.output, status.output] + [p.read_bytes().decode(errors="replace") for p in files]
    for secret in (DRIVER_SECRET, WORKER_SECRET, URI_PASSWORD):
        leaks = [t[:80] for t in texts if secret in t]
        assert not leaks, (secret, leaks[:3])
    scrubbed = (next(out.glob("*/tune/experiment/*/samples/trajectories.jsonl"))).read_text()
    assert f"my key is {REDACTED}" in scrubbed  # scrubbed where it was written, not dropped


def test_secret_names_values_and_uris():
    for name in [
        "openai_key",
        "authorization",
        "Authorization",
        "session_cookie",
        "SNOW_INSTANCE_PWD",
        "auth",
    ]:
        assert is_secret_name(name), name
    for name in ["max_new_tokens", "tokens", "api_key_env", "monkey", "author", "PWD", "OLDPWD"]:
        assert not is_secret_name(name), name
    assert redact_uri("postgresql://u:pw@h:5432/db") == f"postgresql://u:{REDACTED}@h:5432/db"
    assert redact_uri("https://h/x?token=abc&page=2") == f"https://h/x?token={REDACTED}&page=2"
    assert find_secret({"teacher": {"headers": [{"Authorization": "Bearer x"}]}}, "options") == (
        "options.teacher.headers[0].Authorization"
    )
    assert find_secret({"base_url": "https://u:pw@api.example"}, "options") == "options.base_url"
    assert find_secret({"lr": 1e-6, "tasks": ["toy.click"]}, "options") is None
