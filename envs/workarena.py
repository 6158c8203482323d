"""WorkArena L1 through BrowserGym on a live ServiceNow instance, with the credentials kept out of every output.

Credentials come from SNOW_INSTANCE_URL / SNOW_INSTANCE_UNAME / SNOW_INSTANCE_PWD, or from a pool file
(`pool_file=` option or SNOW_INSTANCE_POOL: a JSON list of {"url", "username", "password"}; worker k uses entry
k mod n). Without them every WorkArena command fails at once (in the calling process, before any worker starts)
with a message naming what to set. The password is a `Secret` (its str/repr is `***`), every error text leaving
the host goes through `redact`, and a logging filter masks it in log records: it never appears in logs,
trajectories, exceptions or MLflow params.

The host mirrors `envs.browser.MiniWobHost`: one persistent chromium per worker, a context per episode, the
task's own `setup`/`validate` from `browsergym-workarena` (installed with the `web` extra's
`browsergym-workarena`; a clear error says so when it is missing), and the accessibility tree as observation.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs.actions import Action
from envs.hosts import StepOutcome, step_each

__all__ = ["Secret", "WorkArenaSettings", "WorkArenaHost", "redact", "RedactingFilter", "ENV_VARS"]

logger = logging.getLogger(__name__)

ENV_VARS = ("SNOW_INSTANCE_URL", "SNOW_INSTANCE_UNAME", "SNOW_INSTANCE_PWD")
_POOL_VAR = "SNOW_INSTANCE_POOL"


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple:  # picklable to worker processes, still masked in any repr
        return (Secret, (self._value,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact(text: str, secrets: list[Secret] | tuple[Secret, ...]) -> str:
    """`text` with every secret's value replaced by `***`."""
    for s in secrets:
        if s.get():
            text = text.replace(s.get(), "***")
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in log records (installed on the root logger by `WorkArenaHost`)."""

    def __init__(self, secrets: list[Secret]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


@dataclass(frozen=True)
class WorkArenaSettings:
    """Instance credentials and host options (pass options to `open_runner("workarena", ...)`)."""

    url: str
    username: str
    password: Secret = field(repr=False)
    settle_ms: int = 500
    action_timeout_ms: int = 5000
    page_timeout_ms: int = 60000
    headless: bool = True

    @classmethod
    def from_env(
        cls, *, pool_file: str | None = None, worker_index: int = 0, **options: Any
    ) -> WorkArenaSettings:
        """Credentials from the pool file (option or SNOW_INSTANCE_POOL) or the SNOW_INSTANCE_* variables.

        Raises:
            RuntimeError: naming the variables to set when no credentials are found.
        """
        pool = pool_file or os.environ.get(_POOL_VAR)
        if pool:
            path = Path(pool)
            if not path.is_file():
                raise RuntimeError(
                    f"WorkArena pool file {str(path)!r} does not exist: set {_POOL_VAR} or "
                    'pool_file= to a JSON list of {"url", "username", "password"}'
                )
            entries = json.loads(path.read_text())
            if not isinstance(entries, list) or not entries:
                raise RuntimeError(
                    f"WorkArena pool file {str(path)!r} must hold a non-empty JSON list of "
                    '{"url", "username", "password"}'
                )
            e = entries[worker_index % len(entries)]
            missing = [k for k in ("url", "username", "password") if not e.get(k)]
            if missing:
                raise RuntimeError(f"WorkArena pool file entry {worker_index % len(entries)} lacks {missing}")
            return cls(e["url"], e["username"], Secret(e["password"]), **options)
        missing = [v for v in ENV_VARS if not os.environ.get(v)]
        if missing:
            raise RuntimeError(
                f"WorkArena needs a live ServiceNow instance: set {', '.join(missing)} (all of {', '.join(ENV_VARS)}), "
                f"or {_POOL_VAR}/pool_file= to a JSON pool file. A self-hosted instance must be the 'washingtondc' "
                "release; nothing of WorkArena runs offline."
            )
        return cls(
            os.environ["SNOW_INSTANCE_URL"],
            os.environ["SNOW_INSTANCE_UNAME"],
            Secret(os.environ["SNOW_INSTANCE_PWD"]),
            **options,
        )


class WorkArenaHost:
    """One persistent chromium on a ServiceNow instance; one context per episode; AXTree observations."""

    def __init__(self, **options: Any) -> None:
        self.settings = WorkArenaSettings.from_env(**options)
        self._secrets = [self.settings.password]
        masking = RedactingFilter(self._secrets)
        for handler in [*logging.getLogger().handlers, logging.lastResort]:
            if handler is not None:
                handler.addFilter(masking)
        from envs.browser import PersistentBrowser

        self._browser = PersistentBrowser(headless=self.settings.headless)
        self._classes: dict[str, Any] = {}
        self._episodes: dict[int, tuple[Any, Any, Any, str, list[dict[str, str]]]] = {}

    def start(self) -> None:
        """Load WorkArena's task classes and launch the browser (start-up failures surface when the runner opens)."""
        try:
            from browsergym.workarena import ATOMIC_TASKS
        except ImportError as e:
            raise RuntimeError("WorkArena needs `pip install browsergym-workarena` (the `web` extra)") from e
        self._classes = {cls.get_task_id().split(".")[-1]: cls for cls in ATOMIC_TASKS}
        self._guard(self._browser.ensure)

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            raise RuntimeError(redact(f"{type(e).__name__}: {e}", self._secrets)) from None

    def reset(self, eid: int, task: str, seed: int) -> dict[str, Any]:
        return self._guard(self._reset, eid, task, seed)

    def _reset(self, eid: int, task: str, seed: int) -> dict[str, Any]:
        from browsergym.workarena.instance import SNowInstance

        name = task.removeprefix("workarena.")
        if name not in self._classes:
            raise ValueError(f"unknown WorkArena task {task!r}")
        instance = SNowInstance(
            snow_url=self.settings.url,
            snow_credentials=(self.settings.username, self.settings.password.get()),
        )
        task_obj = self._classes[name](seed=seed, instance=instance)
        context = self._browser.ensure().new_context(viewport=task_obj.viewport)
        context.set_default_timeout(self.settings.page_timeout_ms)
        page = context.new_page()
        goal, _ = task_obj.setup(page=page)
        context.set_default_timeout(self.settings.action_timeout_ms)
        chat = [{"role": "user", "message": str(goal)}]
        self._episodes[eid] = (task_obj, context, page, str(goal), chat)
        return self._observe(task, str(goal), page)

    def step(self, eid: int, action: Action) -> StepOutcome:
        return self._guard(self._step, eid, action)

    def step_many(self, items: Sequence[tuple[int, Action]]) -> list[StepOutcome | Exception]:
        return step_each(self.step, items)

    def _step(self, eid: int, action: Action) -> tuple[dict[str, Any], float, bool, str]:
        import playwright.sync_api
        from browsergym.core.action import functions

        task_obj, _, page, goal, chat = self._episodes[eid]
        functions.page, functions.demo_mode, functions.retry_with_force = page, "off", False
        functions.send_message_to_user = lambda text: chat.append({"role": "assistant", "message": str(text)})
        functions.report_infeasible_instructions = lambda reason: chat.append(
            {"role": "infeasible", "message": reason}
        )
        error = ""
        try:
            getattr(functions, action.name)(*action.args)
        except playwright.sync_api.Error as e:
            if page.is_closed() or not self._browser.alive:
                raise  # the browser or the page is gone: an env error
            error = redact(f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}", self._secrets)
        except (ValueError, TypeError) as e:  # BrowserGym's own checks, e.g. no element with that bid
            error = redact(f"{type(e).__name__}: {str(e)[:300]}", self._secrets)
        page.wait_for_timeout(self.settings.settle_ms)
        reward, done, message, _ = task_obj.validate(page, chat)
        if message:
            chat.append({"role": "user", "message": str(message)})
        return (
            self._observe(f"workarena.{task_obj.get_task_id().split('.')[-1]}", goal, page),
            float(reward),
            bool(done),
            error,
        )

    def _observe(self, task: str, goal: str, page: Any) -> dict[str, Any]:
        from browsergym.core.observation import _post_extract, _pre_extract, extract_merged_axtree
        from browsergym.utils.obs import flatten_axtree_to_str

        _pre_extract(page, tags_to_mark="standard_html", lenient=True)
        try:
            axtree = flatten_axtree_to_str(extract_merged_axtree(page))
        finally:
            _post_extract(page)
        return {
            "task": task,
            "goal": goal,
            "url": redact(page.url, self._secrets),
            "axtree": axtree,
            "compact": axtree,
            "elements": [],
        }

    def close(self, eid: int) -> None:
        episode = self._episodes.pop(eid, None)
        if episode is not None:
            try:
                episode[0].teardown()
            finally:
                episode[1].close()

    def idle_tasks(self) -> tuple[str, ...]:
        """() : every WorkArena episode sets its task up on a new page."""
        return ()

    def shutdown(self) -> None:
        for eid in list(self._episodes):
            try:
                self.close(eid)
            except Exception:  # noqa: BLE001 - best effort on the way out
                logger.debug("closing a WorkArena episode failed")
        self._browser.shutdown()
