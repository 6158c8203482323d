"""`agentsweep train ...` smoke runs and config errors (the FLOPs command is tested in test_flops.py)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from trainers.cli import train


def test_train_teacher_collects_traces(tmp_path):
    out = tmp_path / "teacher"
    res = CliRunner().invoke(
        train,
        [
            "teacher",
            "--set",
            "env=toy",
            "--set",
            "tasks=[click-button]",
            "--set",
            "max_goals=2",
            "--set",
            f"output_dir={out}",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "2 examples" in res.output
    assert json.loads((out / "provenance.json").read_text())["num_successful"] == 2


def test_config_file_and_unknown_fields(tmp_path):
    cfg = tmp_path / "rl.yaml"
    cfg.write_text("learning_rate: 1.0e-6\nbogus: 3\n")
    res = CliRunner().invoke(train, ["rl", "--config", str(cfg)])
    assert res.exit_code != 0 and "bogus" in res.output
    res = CliRunner().invoke(train, ["rl", "--set", "batch_size=63"])
    assert res.exit_code != 0 and "use batch_size=64" in res.output
    res = CliRunner().invoke(train, ["sft", "--set", "traces"])
    assert res.exit_code != 0 and "KEY=VALUE" in res.output
    assert Path(cfg).is_file()
