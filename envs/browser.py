"""MiniWoB++ through BrowserGym with a persistent browser: the host that lives in one worker process.

`MiniWobHost` launches one headless chromium (Debian's binary, never `playwright install`) and keeps it for the
worker's life, and keeps its pages across episodes: a new episode on a page that holds the same task is started
in place by MiniWoB++'s own reset with BrowserGym's seed (checked equal to a fresh load per task by
`benchmarks/audit_miniwob_reinit.py`; the tasks where it is not are reloaded), otherwise BrowserGym's MiniWoB++
task object loads and sets the page up. The task object validates and scores it, as in
`gym.make("browsergym/miniwob.<task>")` (tests/envs/test_browser_equivalence.py plays both side by side), but
without a browser launch per episode, without the second (chat) browser, without BrowserGym's fixed 100 ms
slow-motion, and with BrowserGym's 0.5 s pre-observation wait only on tasks that change on timers; observation,
reward and done come from one `page.evaluate` (`envs._miniwob_page`).

Actions are validated `envs.actions.Action` values: the host calls BrowserGym's action primitives
(`browsergym.core.action.functions`) with the validated literal arguments; no code string is executed.
Action failures (no such element, not fillable, ...) are action errors; a dead browser, a page that does not load,
or a failing observation raise, and the runner counts them as env errors (the browser is relaunched on the next
reset).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.actions import Action
from envs.choices import OBSERVATION_KINDS, ObservationKind, check_choice
from envs.registry import FAMILY_SPECS

__all__ = [
    "MiniWobSettings",
    "MiniWobHost",
    "PersistentBrowser",
    "setup_chromium",
    "miniwob_url",
    "CHROMIUM_ARGS",
]

logger = logging.getLogger(__name__)

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
    "--disable-features=OverlayScrollbars,ExtendedOverlayScrollbars,Translate,OptimizationHints,MediaRouter",
)
_DEFAULT_CHROMIUM = "/usr/lib/chromium/chromium"
_PW_REVISION = "chromium-1117"  # the revision playwright 1.44 looks for


def _chromium_binary() -> str:
    path = os.environ.get("AGENTSWEEP_CHROMIUM", _DEFAULT_CHROMIUM)
    if not Path(path).exists():
        raise RuntimeError(
            f"chromium not found at {path}: install Debian's chromium (`apt-get install -y chromium`) or set "
            "AGENTSWEEP_CHROMIUM to a chromium binary"
        )
    return path


def setup_chromium(cache_dir: str | Path | None = None) -> str:
    """Point playwright 1.44 at the system chromium (for code that launches browsers itself, e.g. gym.make).

    Creates `<cache>/pw-browsers/chromium-1117/chrome-linux/chrome` -> the system binary and sets
    PLAYWRIGHT_BROWSERS_PATH to it unless already set. Returns the chromium binary path.
    """
    binary = _chromium_binary()
    if "PLAYWRIGHT_BROWSERS_PATH" not in os.environ:
        root = Path(
            cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agentsweep"
        )
        link = root / "pw-browsers" / _PW_REVISION / "chrome-linux" / "chrome"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(binary)
        os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(root / "pw-browsers")
    return binary


def miniwob_url() -> str:
    """MINIWOB_URL for the HTML shipped in the `miniwob` wheel (file://, trailing slash); sets it if unset."""
    if "MINIWOB_URL" not in os.environ:
        import importlib.util

        spec = importlib.util.find_spec("miniwob")
        if spec is None or spec.origin is None:
            raise RuntimeError("the `miniwob` package is missing: `pip install --no-deps miniwob==1.1.0`")
        html = Path(spec.origin).parent / "html" / "miniwob"
        os.environ["MINIWOB_URL"] = html.as_uri() + "/"
    return os.environ["MINIWOB_URL"]


@dataclass(frozen=True)
class MiniWobSettings:
    """Options of the MiniWoB++ host (pass them to `open_runner("miniwob", ...)`)."""

    observation: ObservationKind = FAMILY_SPECS["miniwob"].default_observation
    """Which page views to extract besides the element list (html is the study's)."""
    settle_ms: int = 500
    """Wait after an action on a task in `TIMED_TASKS` (pages that change on timers or animations) before
    observing, as BrowserGym's 500 ms pre-observation delay; other tasks are observed at once."""
    action_timeout_ms: int = 3000
    """Playwright timeout of one action (a missing or hidden element fails after this)."""
    page_timeout_ms: int = 15000
    """Page load / task set-up timeout; exceeding it is an env error."""
    max_pages: int = 8
    """Pages (browser contexts) kept per browser for reuse across episodes; the least recently used idle one
    beyond this is closed."""
    headless: bool = True

    def __post_init__(self) -> None:
        check_choice("observation", self.observation, OBSERVATION_KINDS)
        for name in ("settle_ms", "action_timeout_ms", "page_timeout_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.max_pages < 1:
            raise ValueError(f"max_pages={self.max_pages} must be >= 1")


_INTERACTIVE = {"input", "button", "a", "select", "option", "textarea", "label"}


def compact_page(elements: list[dict[str, Any]]) -> str:
    """The compact observation: one line per visible element that has text or can be acted on."""
    lines = []
    for e in elements:
        if not e["visible"] or not (e["text"] or e["tag"] in _INTERACTIVE):
            continue
        extra = ""
        if e["tag"] in ("input", "textarea", "select"):
            extra = f" type={e['type']}" if e["type"] else ""
            extra += (
                f' value="{e["value"]}"'
                if e["type"] not in ("checkbox", "radio")
                else f" checked={e['checked']}"
            )
        label = f' "{e["text"]}"' if e["text"] else ""
        lines.append(f"[{e['bid']}] {e['tag']}{label}{extra}")
    return "\n".join(lines)


def _action_error(e: Exception) -> str:
    """First line of a playwright error, plus the cause when another element covers the target."""
    lines = str(e).splitlines()
    text = f"{type(e).__name__}: {lines[0][:300] if lines else ''}"
    cause = next((ln.strip(" -") for ln in lines if "intercepts pointer events" in ln), "")
    return f"{text} ({cause[:200]})" if cause else text


class PersistentBrowser:
    """One headless chromium kept for a worker's life and relaunched when it died."""

    def __init__(self, *, headless: bool = True) -> None:
        self.headless = headless
        self._pw: Any = None
        self._browser: Any = None
        self.num_launches = 0

    @property
    def launched(self) -> bool:
        return self._browser is not None

    @property
    def alive(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    @property
    def pid(self) -> int | None:
        """Process id of chromium's main process, when known (tests kill it)."""
        proc = getattr(getattr(self._browser, "_impl_obj", None), "_browser_process", None)
        return getattr(proc, "pid", None)

    def ensure(self) -> Any:
        """The live playwright Browser, launching (or relaunching a dead) one."""
        if self.alive:
            return self._browser
        if self._browser is not None:
            logger.warning("chromium died; relaunching it")
        if self._pw is None:
            from browsergym.core.constants import BROWSERGYM_ID_ATTRIBUTE
            from playwright.sync_api import sync_playwright

            self._pw = sync_playwright().start()
            self._pw.selectors.set_test_id_attribute(BROWSERGYM_ID_ATTRIBUTE)
        self._browser = self._pw.chromium.launch(
            executable_path=_chromium_binary(), headless=self.headless, args=list(CHROMIUM_ARGS)
        )
        self.num_launches += 1
        return self._browser

    def shutdown(self) -> None:
        try:
            if self.alive:
                self._browser.close()
        finally:
            if self._pw is not None:
                self._pw.stop()
            self._browser = self._pw = None


@dataclass
class _Slot:
    """A browser context with one page, kept across episodes."""

    context: Any
    page: Any
    task: str = ""
    """The task (full name) last set up on the page; "" for a new page."""


@dataclass
class _Episode:
    task: Any
    """BrowserGym's task object (it validates the page, as in `gym.make`)."""
    slot: _Slot
    goal: str = ""


class MiniWobHost:
    """One persistent chromium; pages kept across episodes, at most one live episode per page. Lives in a worker.

    A reset reuses an idle page: when the page already holds the task, MiniWoB++'s own in-place reset with
    BrowserGym's seed (`envs._miniwob_page`), otherwise BrowserGym's task set-up (load, hide the human display,
    start); a new context only when no page is idle. `spent` adds up the wall seconds of each part (load, start,
    each action kind, observe, settle), `counts` how often each ran (the benchmark's time split).
    """

    def __init__(self, **options: Any) -> None:
        self.settings = MiniWobSettings(**options)
        self._base_url = miniwob_url()
        self._browser = PersistentBrowser(headless=self.settings.headless)
        self._episodes: dict[int, _Episode] = {}
        self._idle: list[_Slot] = []  # least recently used first
        self.spent: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    # ---- browser life cycle
    def _ensure_browser(self) -> Any:
        if self._browser.launched and not self._browser.alive:
            self._episodes.clear()  # their pages died with the browser
            self._idle.clear()
        return self._browser.ensure()

    @property
    def num_launches(self) -> int:
        return self._browser.num_launches

    @property
    def browser_pid(self) -> int | None:
        return self._browser.pid

    # ---- the host interface
    def start(self) -> None:
        """Launch the browser now (so start-up failures surface when the runner opens)."""
        self._ensure_browser()

    def reset(self, eid: int, task: str, seed: int) -> dict[str, Any]:
        from browsergym.miniwob import ALL_MINIWOB_TASKS

        name = task.removeprefix("miniwob.")
        classes = {cls.subdomain: cls for cls in ALL_MINIWOB_TASKS}
        if name not in classes:
            raise ValueError(f"unknown MiniWoB++ task {task!r}")
        from envs._miniwob_page import RELOAD_TASKS

        browser = self._ensure_browser()
        task_obj = classes[name](seed=seed, base_url=self._base_url)
        episode = _Episode(task_obj, self._take_slot(browser, task_obj.url))
        self._episodes[eid] = episode
        page = episode.slot.page
        episode.slot.task = f"miniwob.{name}"
        try:
            if page.url == task_obj.url and name not in RELOAD_TASKS:
                episode.goal = str(self._timed("start", lambda: self._restart(task_obj, page)))
            else:
                episode.slot.context.set_default_timeout(self.settings.page_timeout_ms)
                goal, _ = self._timed("load", lambda: task_obj.setup(page=page))
                episode.slot.context.set_default_timeout(self.settings.action_timeout_ms)
                episode.goal = str(goal)
            return self._observe(episode)[0]
        except Exception:
            self._discard(eid)  # a page in an unknown state is not reused
            raise

    def step(self, eid: int, action: Action) -> tuple[dict[str, Any], float, bool, str]:
        """Act, wait `settle_ms` on a timed task, validate and observe one episode."""
        return self.step_many([(eid, action)])[0]

    def step_many(
        self, items: list[tuple[int, Action]]
    ) -> list[tuple[dict[str, Any], float, bool, str] | Exception]:
        """Act on every episode, wait `settle_ms` once if any acted on a timed task, then validate and observe each.

        Returns one result per item: (obs, reward, done, action_error), or the exception of an env error.
        """
        from envs._miniwob_page import TIMED_TASKS

        errors: list[str | Exception] = [self._act(eid, action) for eid, action in items]
        timed = any(
            not isinstance(e, Exception) and self._episodes[eid].task.subdomain in TIMED_TASKS
            for (eid, _), e in zip(items, errors, strict=True)
        )
        if timed and self.settings.settle_ms:
            self._timed("settle", lambda: time.sleep(self.settings.settle_ms / 1000))
        out: list[tuple[dict[str, Any], float, bool, str] | Exception] = []
        for (eid, _), error in zip(items, errors, strict=True):
            if isinstance(error, Exception):
                out.append(error)
                continue
            try:
                obs, reward, done = self._observe(self._episodes[eid])
                out.append((obs, reward, done, error))
            except Exception as e:  # noqa: BLE001 - an env error for this episode only
                out.append(e)
        return out

    def _act(self, eid: int, action: Action) -> str | Exception:
        import playwright.sync_api

        try:
            page = self._episodes[eid].slot.page
            t0 = time.perf_counter()
            try:
                self._call(page, action)
            except playwright.sync_api.Error as e:
                if not self._browser.alive or page.is_closed():
                    raise
                return _action_error(e)
            except (ValueError, TypeError) as e:
                return f"{type(e).__name__}: {str(e)[:300]}"
            finally:
                self._add(action.name, time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - browser gone, episode unknown: env error
            return e
        return ""

    def close(self, eid: int) -> None:
        """End an episode; its page stays open for the next one (up to `max_pages` pages)."""
        episode = self._episodes.pop(eid, None)
        if episode is None or not self._browser.alive:
            return
        self._idle.append(episode.slot)
        live = len(self._episodes)
        while self._idle and len(self._idle) + live > self.settings.max_pages:
            self._idle.pop(0).context.close()

    def idle_tasks(self) -> tuple[str, ...]:
        """One entry per idle page, least recently used first: its task when a reset of that task starts in place
        there (the page is still on it and it is not in `RELOAD_TASKS`), else ""."""
        from envs._miniwob_page import RELOAD_TASKS

        return tuple(
            s.task
            if s.task.removeprefix("miniwob.") not in RELOAD_TASKS and s.page.url == self._task_url(s.task)
            else ""
            for s in self._idle
        )

    def _task_url(self, task: str) -> str:
        return f"{self._base_url}{task.removeprefix('miniwob.')}.html"

    def shutdown(self) -> None:
        for slot in [*self._idle, *(e.slot for e in self._episodes.values())]:
            with contextlib.suppress(Exception):  # best effort on the way out
                slot.context.close()
        self._idle.clear()
        self._episodes.clear()
        self._browser.shutdown()

    # ---- internals
    def _take_slot(self, browser: Any, url: str) -> _Slot:
        """An idle page that holds `url`, else any idle page (the most recently used first), else a new context."""
        for k in range(len(self._idle) - 1, -1, -1):
            if self._idle[k].page.url == url:
                return self._idle.pop(k)
        if self._idle:
            return self._idle.pop()

        def new() -> _Slot:
            context = browser.new_context(viewport={"width": 332, "height": 214})  # every MiniWoB++ task's
            context.set_default_timeout(self.settings.action_timeout_ms)
            return _Slot(context, context.new_page())

        return self._timed("new_page", new)

    def _discard(self, eid: int) -> None:
        episode = self._episodes.pop(eid, None)
        if episode is not None and self._browser.alive:
            with contextlib.suppress(Exception):  # the page may be gone already
                episode.slot.context.close()

    def _restart(self, task_obj: Any, page: Any) -> str:
        """MiniWoB++'s in-place reset, with the seed and time limit BrowserGym's `setup` would give the page."""
        from envs._miniwob_page import reinit_js

        task_obj.page = page
        seed = task_obj.random.randint(0, 1000000)  # the one draw AbstractMiniwobTask.setup makes
        page.mouse.move(-1, -1)  # off the page, as before any input on a fresh one: nothing stays hovered
        goal = page.evaluate(reinit_js, [seed, task_obj.episode_max_time, self.settings.page_timeout_ms])
        page._bgym_scale_factor = 1.5  # as setup sets it
        return goal

    def _call(self, page: Any, action: Action) -> None:
        from browsergym.core.action import functions

        functions.page = page
        functions.demo_mode = "off"
        functions.retry_with_force = False
        functions.send_message_to_user = lambda text: None
        functions.report_infeasible_instructions = lambda reason: None
        getattr(functions, action.name)(*action.args)

    def _observe(self, episode: _Episode) -> tuple[dict[str, Any], float, bool]:
        """The observation with BrowserGym's validation (reward = raw reward > 0, done flag, page still the
        task's); html and compact come from one `evaluate`, axtree from BrowserGym's marking and CDP AXTree."""
        from envs._miniwob_page import html_of_raw, observe_js, state_js

        t0 = time.perf_counter()
        task_obj, page = episode.task, episode.slot.page
        kind = self.settings.observation
        obs: dict[str, Any] = {"task": f"miniwob.{task_obj.subdomain}", "goal": episode.goal}
        if kind == "axtree":
            from browsergym.core.observation import _post_extract, _pre_extract, extract_merged_axtree
            from browsergym.utils.obs import flatten_axtree_to_str

            _pre_extract(page, tags_to_mark="standard_html", lenient=True)
            try:
                res = page.evaluate(state_js)
                obs["axtree"] = flatten_axtree_to_str(extract_merged_axtree(page))
            finally:
                _post_extract(page)
        else:
            res = page.evaluate(observe_js, [kind == "html"])
            if kind == "html":
                obs["html"] = html_of_raw(res["raw_html"])
        if res["wob"] is None or page.url != task_obj.url:
            reward, done = (
                0.0,
                True,
            )  # the page left the task: BrowserGym's validate terminates the episode too
        else:
            reward, done = float(res["wob"][0] > 0), bool(res["wob"][1])
        obs.update(url=page.url, elements=res["elements"], compact=compact_page(res["elements"]))
        obs["observe_s"] = time.perf_counter() - t0
        self._add("observe", obs["observe_s"])
        return obs, reward, done

    def _timed(self, part: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self._add(part, time.perf_counter() - t0)

    def _add(self, part: str, seconds: float) -> None:
        self.spent[part] = self.spent.get(part, 0.0) + seconds
        self.counts[part] = self.counts.get(part, 0) + 1
