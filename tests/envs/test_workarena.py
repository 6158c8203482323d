"""WorkArena offline: missing credentials fail at once with what to set; the password never leaks."""

from __future__ import annotations

import json
import logging
import pickle

import pytest

from envs.runner import open_runner
from envs.workarena import ENV_VARS, RedactingFilter, Secret, WorkArenaSettings, redact

PASSWORD = "hunter2-Sup3r-secret"


@pytest.fixture
def no_snow_env(monkeypatch):
    for var in (*ENV_VARS, "SNOW_INSTANCE_POOL"):
        monkeypatch.delenv(var, raising=False)


def test_missing_credentials_fail_at_once_naming_the_variables(no_snow_env) -> None:
    with pytest.raises(RuntimeError) as err:
        open_runner("workarena", workers=4)
    for var in ENV_VARS:
        assert var in str(err.value)


def test_partial_credentials_name_what_is_missing(no_snow_env, monkeypatch) -> None:
    monkeypatch.setenv("SNOW_INSTANCE_URL", "https://fake-instance.service-now.invalid")
    with pytest.raises(RuntimeError, match="set SNOW_INSTANCE_UNAME, SNOW_INSTANCE_PWD"):
        WorkArenaSettings.from_env()


def test_password_never_in_repr_pickle_text_or_errors(no_snow_env, monkeypatch) -> None:
    monkeypatch.setenv("SNOW_INSTANCE_URL", "https://fake-instance.service-now.invalid")
    monkeypatch.setenv("SNOW_INSTANCE_UNAME", "admin")
    monkeypatch.setenv("SNOW_INSTANCE_PWD", PASSWORD)
    settings = WorkArenaSettings.from_env()
    assert settings.password.get() == PASSWORD
    for text in (repr(settings), str(settings), str(settings.password), f"{settings.password}"):
        assert PASSWORD not in text
    assert pickle.loads(pickle.dumps(settings)).password.get() == PASSWORD  # crosses to worker processes
    try:  # the offline error path: no instance (or no workarena package) -> a message without the password
        with open_runner("workarena", workers=1) as runner:
            runner.close()
    except RuntimeError as e:
        assert PASSWORD not in str(e) and PASSWORD not in repr(e.__cause__)


def test_pool_file_picks_entries_per_worker_and_checks_fields(no_snow_env, tmp_path) -> None:
    pool = tmp_path / "pool.json"
    pool.write_text(
        json.dumps(
            [{"url": f"https://i{k}.invalid", "username": "u", "password": PASSWORD} for k in range(2)]
        )
    )
    assert WorkArenaSettings.from_env(pool_file=str(pool), worker_index=3).url == "https://i1.invalid"
    pool.write_text(json.dumps([{"url": "https://i.invalid", "username": "u"}]))
    with pytest.raises(RuntimeError, match="lacks \\['password'\\]"):
        WorkArenaSettings.from_env(pool_file=str(pool))
    with pytest.raises(RuntimeError, match="does not exist"):
        WorkArenaSettings.from_env(pool_file=str(tmp_path / "missing.json"))


def test_redaction_of_texts_and_log_records(caplog) -> None:
    secret = Secret(PASSWORD)
    assert redact(f"login failed for admin:{PASSWORD}@host", [secret]) == "login failed for admin:***@host"
    log = logging.getLogger("envs.test_workarena")
    handler_filter = RedactingFilter([secret])
    caplog.handler.addFilter(handler_filter)
    try:
        log.warning("auth header %s rejected", PASSWORD)
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert PASSWORD not in caplog.text and "auth header *** rejected" in caplog.text
