"""Is MiniWoB++'s in-place reset the same as a fresh load? One check per task, for `envs._miniwob_page.RELOAD_TASKS`.

For each task and seed pair (a, b): page F loads the task fresh with seed b (BrowserGym's `setup`); page R loads
it with seed a, plays up to 3 scripted (or first-clickable) actions, then gets the host's in-place reset to seed b.
Compared after the reset: the goal, BrowserGym's pruned HTML (bids included), the element list, and the event
listeners attached to the document tree and the window (CDP `DOMDebugger.getEventListeners`: type and handler
source position, so a handler bound twice shows). Tasks that differ are printed with the first difference.

    .venv/bin/python benchmarks/audit_miniwob_reinit.py [--tasks click-test enter-text] [--seeds 2]
"""

from __future__ import annotations

import argparse
import collections
import time


def _listeners(page) -> collections.Counter:
    cdp = page.context.new_cdp_session(page)
    try:
        out: collections.Counter = collections.Counter()
        for expr in ("document", "window"):
            obj = cdp.send("Runtime.evaluate", {"expression": expr})["result"]["objectId"]
            found = cdp.send("DOMDebugger.getEventListeners", {"objectId": obj, "depth": -1, "pierce": True})
            for ls in found["listeners"]:
                out[(expr, ls["type"], ls.get("lineNumber"), ls.get("columnNumber"))] += 1
        return out
    finally:
        cdp.detach()


def _state(host, eid: int) -> dict:
    episode = host._episodes[eid]
    obs, _, _ = host._observe(episode)
    return {
        "goal": episode.goal,
        "html": obs["html"],
        "elements": obs["elements"],
        "listeners": _listeners(episode.slot.page),
    }


def _dirty(host, eid: int, task: str) -> None:
    """Play up to 3 actions: the scripted policy's where it has a solver, else clicks on visible elements."""
    from envs.actions import parse_action
    from envs.miniwob_scripts import SOLVERS
    from envs.scripted import ScriptedPolicy

    episode = host._episodes[eid]
    obs, _, done = host._observe(episode)
    history: list[str] = []
    for k in range(3):
        if done:
            return
        if task in SOLVERS:
            _, text = ScriptedPolicy().act(dict(obs, task=f"miniwob.{task}", history=history))
        else:
            clickable = [e for e in obs["elements"] if e["visible"] and e["tag"] not in ("html", "body")]
            if not clickable:
                return
            text = f'click("{clickable[(7 * k) % len(clickable)]["bid"]}")'
        action = parse_action(text)
        obs, _, done, _ = host.step(eid, action)
        history.append(str(action))


def audit(tasks: list[str], seed_pairs: list[tuple[int, int]]) -> dict[str, str]:
    """task -> first difference ("" when the in-place reset matched the fresh load for every seed pair)."""
    from envs.browser import MiniWobHost

    host = MiniWobHost(observation="html", settle_ms=0)
    host.start()
    out: dict[str, str] = {}
    try:
        for task in tasks:
            out[task] = ""
            for a, b in seed_pairs:
                try:
                    host.reset(0, f"miniwob.{task}", b)
                    fresh = _state(host, 0)
                    host._discard(0)  # a new context for the next fresh load
                    host.reset(1, f"miniwob.{task}", a)
                    _dirty(host, 1, task)
                    host.close(1)
                    host.reset(2, f"miniwob.{task}", b)  # takes the page just closed: in-place reset
                    again = _state(host, 2)
                    host._discard(2)
                except Exception as e:  # noqa: BLE001 - reported per task
                    out[task] = f"error {type(e).__name__}: {str(e)[:120]}"
                    host._episodes.clear()
                    break
                diff = next((k for k in fresh if fresh[k] != again[k]), None)
                if diff:
                    out[task] = f"seeds {a}->{b}: {diff} differs"
                    break
    finally:
        host.shutdown()
    return out


def main() -> None:
    from browsergym.miniwob import ALL_MINIWOB_TASKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=None, help="default: all 125")
    parser.add_argument("--seeds", type=int, default=2, help="seed pairs (0, 1), (1, 2), ...")
    args = parser.parse_args()
    tasks = args.tasks or [c.subdomain for c in ALL_MINIWOB_TASKS]
    t0 = time.monotonic()
    result = audit(tasks, [(k, k + 1) for k in range(args.seeds)])
    bad = {t: why for t, why in result.items() if why}
    for t, why in bad.items():
        print(f"{t}: {why}")
    print(
        f"{len(tasks) - len(bad)}/{len(tasks)} tasks: in-place reset == fresh load ({time.monotonic() - t0:.0f} s)"
    )
    print("differ:", " ".join(sorted(bad)))


if __name__ == "__main__":
    main()
