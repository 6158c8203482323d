"""Scripted teacher policies: read `Prompt.observation`, answer with a short reasoning line and one action.

They are the offline teacher for SFT and the reference for tests. The toy solver handles every toy task; the
MiniWoB++ solvers (`envs.miniwob_scripts`) handle the tasks listed in `SCRIPTED_MINIWOB_TASKS`. A task without a
solver gets `noop()` with a reasoning line saying so (an honest failure, never a crash).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from envs.protocol import Completion, Prompt

__all__ = ["ScriptedPolicy", "solve_toy", "scripted_tasks"]

_QUOTED = re.compile(r'"([^"]*)"')


def _bid_of(elements: list[dict[str, Any]], label: str, kinds: tuple[str, ...] | None = None) -> str | None:
    for e in elements:
        if e["text"] == label and (kinds is None or e["tag"] in kinds):
            return str(e["bid"])
    return None


def solve_toy(obs: dict[str, Any]) -> tuple[str, str]:
    """(reasoning, action) for a toy observation: the goal text, the element list and the action history.

    The reasoning quotes page labels exactly as the page shows them (`the target is "apple"`), so a small student
    sees the same tokens in its reasoning, the goal and the page."""
    goal, elements = obs["goal"], obs["elements"]
    words = _QUOTED.findall(goal)
    history = obs.get("history", [])
    by_label = {e["text"]: e for e in elements}
    if goal.startswith("Click the buttons"):
        done = sum(1 for h in history if h.startswith("click("))
        target = words[min(done, len(words) - 1)]
        return f'next in the sequence is "{target}"', f'click("{by_label[target]["bid"]}")'
    if goal.startswith(("Click the button", "Follow the link")):
        return f'the target is "{words[0]}"', f'click("{by_label[words[0]]["bid"]}")'
    if goal.startswith("Type"):
        pairs = list(zip(words[0:-1:2], words[1:-1:2], strict=True))  # (value, field) ... then "submit"
        for value, fld in pairs:
            if by_label[fld]["value"] != value:
                return f'"{fld}" must read "{value}"', f'fill("{by_label[fld]["bid"]}", "{value}")'
        return "all fields are filled", f'click("{by_label["submit"]["bid"]}")'
    if goal.startswith("Tick"):
        for w in words[:-1]:
            if not by_label[w]["checked"]:
                return f'"{w}" is not ticked yet', f'check("{by_label[w]["bid"]}")'
        return "all boxes are ticked", f'click("{by_label["submit"]["bid"]}")'
    if goal.startswith("Log in"):
        user, pwd = words[0], words[1]
        if by_label["username"]["value"] != user:
            return "enter the username", f'fill("{by_label["username"]["bid"]}", "{user}")'
        if by_label["password"]["value"] != pwd:
            return "enter the password", f'fill("{by_label["password"]["bid"]}", "{pwd}")'
        return "credentials entered", f'click("{by_label["login"]["bid"]}")'
    return f"no scripted solution for goal {goal[:40]!r}", "noop()"


def scripted_tasks(family: str) -> tuple[str, ...]:
    """Full names of the tasks the scripted policy solves in a family."""
    if family == "toy":
        from envs.toy import TOY_TASKS

        return tuple(f"toy.{t}" for t in TOY_TASKS)
    if family == "miniwob":
        from envs.miniwob_scripts import SOLVERS

        return tuple(f"miniwob.{t}" for t in SOLVERS)
    return ()


class ScriptedPolicy:
    """A `Policy` that solves toy tasks and the scripted MiniWoB++ tasks from the observation alone.

    The completion is `"<reasoning>\\n<action>"`; temperature and max_new_tokens are ignored (deterministic).
    """

    def generate(
        self, prompts: Sequence[Prompt], *, temperature: float = 0.0, max_new_tokens: int = 0
    ) -> list[Completion]:
        return [Completion(text="\n".join(self.act(p.observation))) for p in prompts]

    def act(self, obs: dict[str, Any]) -> tuple[str, str]:
        """(reasoning, action) for one observation."""
        task = str(obs.get("task", ""))
        if task.startswith("toy."):
            return solve_toy(obs)
        if task.startswith("miniwob."):
            from envs.miniwob_scripts import solve_miniwob

            return solve_miniwob(obs)
        return f"no scripted policy for {task!r}", "noop()"
