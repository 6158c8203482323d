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


class _NoElements:
    """A playwright locator that matches nothing."""

    def count(self) -> int:
        return 0


class _FakePage:
    """Just enough of a playwright page for BrowserGym's action functions: no element has any bid."""

    url = "https://fake-instance.service-now.invalid/now/nav/ui"

    def __init__(self) -> None:
        self.closed = False

    def get_by_test_id(self, bid: str) -> _NoElements:
        return _NoElements()

    def is_closed(self) -> bool:
        return self.closed

    def wait_for_timeout(self, ms: float) -> None:
        if self.closed:
            raise RuntimeError("Target page, context or browser has been closed")


class _FakeTask:
    def validate(self, page, chat):
        return 0.0, False, "", {}

    def get_task_id(self) -> str:
        return "workarena.servicenow.create-user"


@pytest.fixture
def fake_episode(no_snow_env, monkeypatch):
    from envs.workarena import WorkArenaHost

    monkeypatch.setenv("SNOW_INSTANCE_URL", "https://fake-instance.service-now.invalid")
    monkeypatch.setenv("SNOW_INSTANCE_UNAME", "admin")
    monkeypatch.setenv("SNOW_INSTANCE_PWD", PASSWORD)
    monkeypatch.setattr(
        WorkArenaHost, "_observe", lambda self, task, goal, page: {"task": task, "goal": goal}
    )
    host = WorkArenaHost(settle_ms=0)
    page = _FakePage()
    host._episodes[0] = (_FakeTask(), None, page, "Create a user", [])
    return host, page


def test_a_missing_bid_is_an_action_error_not_an_env_error(fake_episode) -> None:
    from envs.actions import parse_action

    host, _ = fake_episode
    obs, reward, done, error = host.step(
        0, parse_action('click("999")')
    )  # BrowserGym raises a plain ValueError
    assert error == 'ValueError: Could not find element with bid "999"'
    assert (reward, done, obs["task"]) == (0.0, False, "workarena.create-user")


def test_a_closed_page_is_still_an_env_error(fake_episode) -> None:
    from envs.actions import parse_action

    host, page = fake_episode
    page.closed = True
    with pytest.raises(RuntimeError, match="closed"):
        host.step(0, parse_action('click("999")'))
