"""MiniWoB++ through BrowserGym with a persistent browser: the host that lives in one worker process.

`MiniWobHost` launches one headless chromium (Debian's binary, never `playwright install`) and keeps it for the
worker's life; each episode gets a fresh browser context and page (milliseconds), BrowserGym's MiniWoB++ task
object sets the page up, validates it and scores it, exactly as `gym.make("browsergym/miniwob.<task>")` would, but
without a browser launch per episode, without the second (chat) browser, and without BrowserGym's fixed 100 ms
slow-motion and 0.5 s pre-observation sleep (a short configurable settle time instead).

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
    settle_ms: int = 100
    """Wait after an action before validating and observing (BrowserGym waits 600 ms)."""
    action_timeout_ms: int = 3000
    """Playwright timeout of one action (a missing or hidden element fails after this)."""
    page_timeout_ms: int = 15000
    """Page load / task set-up timeout; exceeding it is an env error."""
    headless: bool = True

    def __post_init__(self) -> None:
        check_choice("observation", self.observation, OBSERVATION_KINDS)
        for name in ("settle_ms", "action_timeout_ms", "page_timeout_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")


_ELEMENTS_BODY = r"""
  const root = document.body;
  const out = [];
  for (const el of root.querySelectorAll('[bid]')) {
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    let own = '';
    for (const n of el.childNodes) if (n.nodeType === 3) own += n.textContent;
    const parent = el.parentElement ? (el.parentElement.getAttribute('bid') || '') : '';
    out.push({
      bid: el.getAttribute('bid'), tag: el.tagName.toLowerCase(), text: own.trim().replace(/\s+/g, ' ').slice(0, 120),
      inner: (el.innerText || el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 300),
      id: el.id || '', classes: (typeof el.className === 'string') ? el.className : '',
      type: el.type || '', value: (el.value === undefined || el.value === null) ? '' : String(el.value),
      checked: !!el.checked, title: el.getAttribute('title') || '', name: el.getAttribute('name') || '',
      visible: r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none',
      x: Math.round(r.x), y: Math.round(r.y), w: Math.round(r.width), h: Math.round(r.height), parent,
      style: el.getAttribute('style') || '',
    });
  }
"""
_ELEMENTS_JS = "() => {" + _ELEMENTS_BODY + "  return out;\n}"
"""Element list of a page whose elements BrowserGym already marked with bids."""

_MARK_JS = r"""
  // mark every element without a bid, keeping existing bids stable across steps (as BrowserGym's marker does)
  if (window.__agentsweep_next_bid === undefined) window.__agentsweep_next_bid = 1;
  for (const el of document.querySelectorAll('*')) {
    if (!el.hasAttribute('bid')) el.setAttribute('bid', String(window.__agentsweep_next_bid++));
  }
"""
_FAST_JS = (
    "() => {"
    + _MARK_JS
    + _ELEMENTS_BODY
    + "  let wob = null;\n  try { wob = [WOB_RAW_REWARD_GLOBAL, WOB_DONE_GLOBAL]; } catch (e) {}\n"
    + "  return {elements: out, wob: wob};\n}"
)
"""Compact mode: mark, extract and read MiniWoB++'s reward globals in one round trip."""

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


class MiniWobHost:
    """One persistent chromium; one browser context per live episode. Lives in a worker process."""

    def __init__(self, **options: Any) -> None:
        self.settings = MiniWobSettings(**options)
        self._base_url = miniwob_url()
        self._browser = PersistentBrowser(headless=self.settings.headless)
        self._episodes: dict[int, tuple[Any, Any, Any, str]] = {}  # eid -> (task, context, page, goal)

    # ---- browser life cycle
    def _ensure_browser(self) -> Any:
        if self._browser.alive:
            return self._browser.ensure()
        if self._browser.launched:
            self._episodes.clear()  # their contexts died with the browser
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
        browser = self._ensure_browser()
        task_obj = classes[name](seed=seed, base_url=self._base_url)
        context = browser.new_context(viewport=task_obj.viewport)
        context.set_default_timeout(self.settings.page_timeout_ms)
        page = context.new_page()
        self._episodes[eid] = (task_obj, context, page, "")
        goal, _ = task_obj.setup(page=page)
        self._episodes[eid] = (task_obj, context, page, str(goal))
        context.set_default_timeout(self.settings.action_timeout_ms)
        if self.settings.observation == "compact":
            return self._observe_fast(task_obj, str(goal), page)[0]
        return self._observe(task, str(goal), page)

    def step(self, eid: int, action: Action) -> tuple[dict[str, Any], float, bool, str]:
        """Act, wait `settle_ms`, validate and observe one episode."""
        return self.step_many([(eid, action)])[0]

    def step_many(
        self, items: list[tuple[int, Action]]
    ) -> list[tuple[dict[str, Any], float, bool, str] | Exception]:
        """Act on every episode, wait `settle_ms` once, then validate and observe each.

        Returns one result per item: (obs, reward, done, action_error), or the exception of an env error.
        """
        errors: list[str | Exception] = [self._act(eid, action) for eid, action in items]
        if self.settings.settle_ms and any(not isinstance(e, Exception) for e in errors):
            time.sleep(self.settings.settle_ms / 1000)
        out: list[tuple[dict[str, Any], float, bool, str] | Exception] = []
        for (eid, _), error in zip(items, errors, strict=True):
            if isinstance(error, Exception):
                out.append(error)
                continue
            try:
                task_obj, _, page, goal = self._episodes[eid]
                if self.settings.observation == "compact":
                    obs, reward, done = self._observe_fast(task_obj, goal, page)
                else:
                    reward, done, _, _ = task_obj.validate(page, [])
                    obs = self._observe(f"miniwob.{task_obj.subdomain}", goal, page)
                out.append((obs, float(reward), bool(done), error))
            except Exception as e:  # noqa: BLE001 - an env error for this episode only
                out.append(e)
        return out

    def _act(self, eid: int, action: Action) -> str | Exception:
        import playwright.sync_api

        try:
            page = self._episodes[eid][2]
            try:
                self._call(page, action)
            except playwright.sync_api.Error as e:
                if not self._browser.alive or page.is_closed():
                    raise
                return _action_error(e)
            except (ValueError, TypeError) as e:
                return f"{type(e).__name__}: {str(e)[:300]}"
        except Exception as e:  # noqa: BLE001 - browser gone, episode unknown: env error
            return e
        return ""

    def close(self, eid: int) -> None:
        episode = self._episodes.pop(eid, None)
        if episode is not None and self._browser.alive:
            episode[1].close()

    def shutdown(self) -> None:
        for eid in list(self._episodes):
            with contextlib.suppress(Exception):  # best effort on the way out
                self.close(eid)
        self._browser.shutdown()

    # ---- internals
    def _call(self, page: Any, action: Action) -> None:
        from browsergym.core.action import functions

        functions.page = page
        functions.demo_mode = "off"
        functions.retry_with_force = False
        functions.send_message_to_user = lambda text: None
        functions.report_infeasible_instructions = lambda reason: None
        getattr(functions, action.name)(*action.args)

    def _observe_fast(self, task_obj: Any, goal: str, page: Any) -> tuple[dict[str, Any], float, bool]:
        """Compact observation and BrowserGym's MiniWoB++ validation (reward = raw reward > 0, done flag, page
        still the task's) from one `evaluate`."""
        t0 = time.monotonic()
        res = page.evaluate(_FAST_JS)
        if res["wob"] is None or page.url != task_obj.url:
            reward, done = 0.0, True  # the page left the task: BrowserGym terminates the episode too
        else:
            reward, done = float(res["wob"][0] > 0), bool(res["wob"][1])
        obs = {
            "task": f"miniwob.{task_obj.subdomain}",
            "goal": goal,
            "url": page.url,
            "elements": res["elements"],
            "compact": compact_page(res["elements"]),
            "observe_s": time.monotonic() - t0,
        }
        return obs, reward, done

    def _observe(self, task: str, goal: str, page: Any) -> dict[str, Any]:
        from browsergym.core.observation import _post_extract, _pre_extract

        t0 = time.monotonic()
        _pre_extract(page, tags_to_mark="standard_html", lenient=True)
        try:
            elements = page.evaluate(_ELEMENTS_JS)
            obs: dict[str, Any] = {"task": task, "goal": goal, "url": page.url, "elements": elements}
            obs["compact"] = compact_page(elements)
            if self.settings.observation == "html":
                from browsergym.core.observation import extract_dom_snapshot
                from browsergym.utils.obs import flatten_dom_to_str, prune_html

                obs["html"] = prune_html(flatten_dom_to_str(extract_dom_snapshot(page)))
            elif self.settings.observation == "axtree":
                from browsergym.core.observation import extract_merged_axtree
                from browsergym.utils.obs import flatten_axtree_to_str

                obs["axtree"] = flatten_axtree_to_str(extract_merged_axtree(page))
        finally:
            _post_extract(page)
        obs["observe_s"] = time.monotonic() - t0
        return obs
