"""The trainers' only door to `envs`: goals of a split and an episode runner, through the episode protocol.

A runner is anything with `run_episodes(policy, goals, *, temperature, max_new_tokens, gamma, error_log)
-> list[Trajectory]` (same order as `goals`) and `close()`. A goal is anything with `.task` and `.seed`
(or a `(task, seed)` pair). Tests may pass their own runner and goals to the trainers' functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from envs.protocol import Policy, Trajectory

__all__ = ["Runner", "goal_key", "split_goals", "open_env_runner", "scripted_policy"]


class Runner(Protocol):
    def run_episodes(
        self,
        policy: Policy,
        goals: Sequence[Any],
        *,
        temperature: float,
        max_new_tokens: int,
        gamma: float,
        error_log: bool,
    ) -> list[Trajectory]: ...

    def close(self) -> None: ...


def goal_key(goal: Any) -> tuple[str, int]:
    """(task, seed) of a goal object or pair."""
    if isinstance(goal, tuple):
        return str(goal[0]), int(goal[1])
    return str(goal.task), int(goal.seed)


def split_goals(env: str, split: str, tasks: Sequence[str] | None = None) -> list[Any]:
    """The goals of one split of an env family (`envs.registry.goals`), in the registry's fixed order."""
    from envs import registry

    goals = registry.goals(_split_name(env, split), tasks=list(tasks) if tasks is not None else None)
    if not goals:
        raise ValueError(f"env {env!r} split {split!r} with tasks={tasks} has no goals: check the task names")
    return list(goals)


def _split_name(env: str, split: str) -> str:
    return split if "." in split or "/" in split else f"{env}.{split}"


def open_env_runner(
    env: str, *, workers: int, max_steps: int, options: Mapping[str, Any] | None = None
) -> Runner:
    """An episode runner over a pool of env workers (`envs.runner.open_runner`, with its further options)."""
    from envs.runner import open_runner

    return open_runner(env, workers=workers, max_steps=max_steps, **dict(options or {}))


def scripted_policy(env: str) -> Policy:
    """The env family's scripted (oracle) policy, the default teacher."""
    from envs.scripted import ScriptedPolicy

    del env  # one scripted policy serves every family (it reads the task name from the observation)
    return ScriptedPolicy()
