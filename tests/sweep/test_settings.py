"""SweepSettings is the one source of the launch options: their defaults, help, choices; the sweep lock."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sweep.commands import launch as launch_command
from sweep.settings import (
    CLI_FLAG,
    SCHEDULERS,
    SweepLocked,
    SweepSettings,
    field_docs,
    sweep_lock,
)
from sweep.space import SEARCH_KINDS, load_space


def _options() -> dict[str, object]:
    return {p.name: p for p in launch_command.params if isinstance(p, __import__("click").Option)}


def test_launch_options_are_the_settings_fields_with_their_defaults():
    options = _options()
    docs = field_docs(SweepSettings)
    user = [f for f in dataclasses.fields(SweepSettings) if CLI_FLAG in f.metadata]
    assert len(user) >= 18
    for f in user:
        opt = options[f.name]
        assert opt.help == docs[f.name] and opt.help, f.name
        if f.default is not dataclasses.MISSING and f.default not in (None, ""):
            assert opt.default == f.default, f.name
    assert options["num_trials"].opts == ["--trials"] and options["custom_resources"].opts == ["--resource"]
    assert list(options["search"].type.choices) == list(SEARCH_KINDS)
    assert list(options["scheduler"].type.choices) == list(SCHEDULERS)


def test_settled_defaults():
    """The CLI and the library once disagreed (--max-failures 1 vs 0, --objective rl vs surrogate)."""
    space = load_space("paper").to_dict()
    s = SweepSettings(sweep_id="x", sweep_dir="/tmp/x", space=space)
    assert s.max_failures == 1 and s.objective == "sweep.objectives:rl"
    assert _options()["max_failures"].default == 1
    assert _options()["objective"].default == "sweep.objectives:rl"
    help_text = CliRunner().invoke(launch_command, ["--help"]).output
    assert "[default: 1]" in help_text and "sweep.objectives:rl" in help_text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"search": "bayes"}, "search='bayes'; use one of"),
        ({"scheduler": "pbt"}, "scheduler='pbt'; use one of"),
    ],
)
def test_choices_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SweepSettings(sweep_id="x", sweep_dir="/tmp/x", space=load_space("paper").to_dict(), **kwargs)


def test_saved_settings_keep_no_uri_password(tmp_path):
    from sweep.settings import load_settings

    uri = "postgresql://agent:pw-8812-secret@db.example:5432/mlflow"
    s = SweepSettings(
        sweep_id="x", sweep_dir=str(tmp_path), space=load_space("paper").to_dict(), tracking_uri=uri
    )
    s.save()
    saved = (tmp_path / "sweep.json").read_text()
    assert "pw-8812-secret" not in saved and "agent:<redacted>@db.example" in saved
    with pytest.raises(ValueError, match="export MLFLOW_TRACKING_URI"):
        load_settings(tmp_path)


def test_sweep_lock_refuses_a_second_driver(tmp_path):
    code = (
        "import sys, time; from sweep.settings import sweep_lock\n"
        f"with sweep_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SweepLocked, match=rf"another driver \(pid {holder.pid}\)"), sweep_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with sweep_lock(tmp_path):  # the kernel freed the dead driver's lock
        pass
