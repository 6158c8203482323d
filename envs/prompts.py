"""Observation -> prompt. All prompt templates live here, versioned by `PROMPT_VERSION`.

A prompt is a system message (the task family's action space, the answer format) and a user message: the goal,
the page (raw pruned HTML for MiniWoB++, the accessibility tree for WorkArena, or the compact element list),
truncated to a token budget with the cut stated, the past actions and, with error-log feedback on, the last
action's error. Token counts are estimated at `CHARS_PER_TOKEN` characters per token (envs has no tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envs.actions import action_space_doc
from envs.choices import Family, ObservationKind
from envs.protocol import Prompt

__all__ = ["PROMPT_VERSION", "CHARS_PER_TOKEN", "build_prompt", "truncate"]

PROMPT_VERSION = "v1"
CHARS_PER_TOKEN = 4

_TOY_SYSTEM = 'Act on the page. Answer with one action: click("bid"), fill("bid", "text") or check("bid").'
_WEB_ACTIONS = (
    "noop",
    "click",
    "dblclick",
    "hover",
    "fill",
    "clear",
    "focus",
    "check",
    "uncheck",
    "select_option",
    "press",
    "scroll",
    "drag_and_drop",
    "keyboard_type",
    "keyboard_press",
)
_WEB_SYSTEM = (
    "You are a web agent. Elements are identified by their bid. Think in one short line, then write exactly one "
    "action on the last line, with literal arguments only. Actions:\n"
)
_COMPACT_SYSTEM = (
    'Act on the web page. Answer with one action on the last line, e.g. click("12") or fill("5", "x").'
)


def truncate(text: str, max_tokens: int) -> str:
    """Cut `text` to about `max_tokens` tokens, stating the cut in the text."""
    max_chars = max_tokens * CHARS_PER_TOKEN
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + f"\n[... truncated: {len(text) - max_chars} of {len(text)} characters cut]"


def _page_text(obs: dict[str, Any], kind: ObservationKind) -> str:
    if kind == "compact" or "page" in obs and kind not in obs:
        return obs.get("compact", obs.get("page", ""))
    return obs.get(kind, "")


def build_prompt(
    obs: dict[str, Any],
    *,
    family: Family,
    history: Sequence[str],
    last_error: str,
    error_log: bool,
    observation: ObservationKind | None = None,
    max_obs_tokens: int = 2000,
    max_history: int = 10,
) -> Prompt:
    """The prompt for one step.

    Args:
        obs: the env's observation dict (`goal`, `task`, `page`/`html`/`axtree`/`compact`, ...).
        family: `toy`, `miniwob` or `workarena` (picks the system message).
        history: canonical past actions (or parse errors), oldest first.
        last_error: the last action's error ("" when none).
        error_log: whether to show `last_error` (the RL hyperparameter `error_log`).
        observation: which page view to show; None is the family's default (`envs.registry.FAMILY_SPECS`). The
            toy env always shows its page.
        max_obs_tokens: token budget of the page text.
        max_history: how many past actions to show (the most recent).

    Returns:
        A `Prompt` whose `observation` is `obs` plus `step`, `history` and `last_action_error`.
    """
    from envs.registry import family_spec

    observation = observation or family_spec(family).default_observation
    if family == "toy":
        system = _TOY_SYSTEM
    elif observation == "compact":
        system = _COMPACT_SYSTEM
    else:
        system = _WEB_SYSTEM + action_space_doc(_WEB_ACTIONS)
    parts = [f"Goal: {obs.get('goal', '')}", "Page:", truncate(_page_text(obs, observation), max_obs_tokens)]
    shown = list(history)[-max_history:]
    if shown:
        parts.append("Previous actions: " + "; ".join(shown))
    if error_log and last_error:
        parts.append(f"Last action error: {last_error[:300]}")
    observed = dict(
        obs,
        step=len(history),
        history=list(history),
        last_action_error=last_error if error_log else "",
        prompt_version=PROMPT_VERSION,
    )
    return Prompt(
        messages=({"role": "system", "content": system}, {"role": "user", "content": "\n".join(parts)}),
        observation=observed,
        task=str(obs.get("task", "")),
        seed=int(obs.get("seed", 0)),
    )
