"""The trainers' only door to `envs`: goals of a split and an episode runner, through the episode protocol.

A runner is anything with `run_episodes(policy, goals, *, temperature, max_new_tokens, error_log)
-> list[Trajectory]` (same order as `goals`) and `close()`; trajectories carry success and steps, and the RL
return is computed here in trainers (`trainers.returns.episode_return`). A goal is anything with `.task` and `.seed`
(or a `(task, seed)` pair). Tests may pass their own runner and goals to the trainers' functions.

`env` names one family (`envs.choices.FAMILIES`) or several joined by `+` (`toy+miniwob`): a run then
trains and evaluates on tasks of every family named (task names carry their family, `miniwob.click-test`), each
family's episodes run in that family's own worker pool, and `env_options` is keyed by family
(`{"toy": {"num_distractors": 1}, "miniwob": {"observation": "compact"}}`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from envs.protocol import Policy, Trajectory

__all__ = [
    "Runner",
    "MultiRunner",
    "families",
    "goal_key",
    "split_goals",
    "open_env_runner",
    "play_episodes",
    "scripted_policy",
]


class Runner(Protocol):
    def run_episodes(
        self,
        policy: Policy,
        goals: Sequence[Any],
        *,
        temperature: float,
        max_new_tokens: int,
        error_log: bool,
    ) -> list[Trajectory]: ...

    def close(self) -> None: ...


class EpisodeOptions(Protocol):
    """The sampling settings a config passes to the runner (`RLConfig`, `TeacherConfig`)."""

    temperature: float
    max_new_tokens: int
    error_log: bool


class _TimedPolicy:
    """A policy proxy that adds the seconds spent in `generate` to `seconds`."""

    def __init__(self, policy: Policy) -> None:
        self.policy, self.seconds = policy, 0.0

    def generate(self, *args, **kw):
        t0 = time.perf_counter()
        try:
            return self.policy.generate(*args, **kw)
        finally:
            self.seconds += time.perf_counter() - t0


def play_episodes(
    runner: Runner, policy: Policy, goals: Sequence[Any], cfg: EpisodeOptions, *, timing: dict | None = None
) -> list[Trajectory]:
    """One episode per goal with `cfg`'s temperature, max_new_tokens and error_log; trajectories in goal order.

    With `timing`, adds the wall split of the call to it: `gen_s` (the policy's generation) and `env_s` (the rest:
    the browsers, the runner, prompt building)."""
    timed = _TimedPolicy(policy) if timing is not None else policy
    t0 = time.perf_counter()
    trajs = runner.run_episodes(
        timed, goals, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, error_log=cfg.error_log
    )
    if timing is not None:
        timing["gen_s"] = timing.get("gen_s", 0.0) + timed.seconds
        timing["env_s"] = timing.get("env_s", 0.0) + (time.perf_counter() - t0 - timed.seconds)
    if len(trajs) != len(goals):
        raise RuntimeError(f"runner returned {len(trajs)} trajectories for {len(goals)} episodes")
    return trajs


def goal_key(goal: Any) -> tuple[str, int]:
    """(task, seed) of a goal object or pair."""
    if isinstance(goal, tuple):
        return str(goal[0]), int(goal[1])
    return str(goal.task), int(goal.seed)


def families(env: str) -> list[str]:
    """The env families of `env` (`toy+miniwob` -> [`toy`, `miniwob`]); raises on an unknown, empty or repeated name."""
    from envs.choices import FAMILIES

    names = [f.strip() for f in env.split("+")]
    if not set(names) <= set(FAMILIES) or len(set(names)) != len(names):
        raise ValueError(f"env {env!r}: name one family ({', '.join(FAMILIES)}) or several joined by '+'")
    return names


def split_goals(
    env: str, split: str, tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> list[Any]:
    """The goals of one split of an env family (`envs.registry.goals`), in the registry's fixed order.

    For several families (`toy+miniwob`) the families' splits are concatenated in the order named; with `tasks`,
    each family contributes its own tasks (a family none of `tasks` belongs to contributes nothing); `seeds`
    replaces every family's split seeds.
    """
    from envs import registry

    fams = families(env)
    if len(fams) == 1 or "." in split or "/" in split:
        chosen = [(_split_name(fams[0], split), list(tasks) if tasks is not None else None)]
    else:
        stray = [t for t in tasks or () if t.split(".", 1)[0] not in fams]
        if stray:
            raise ValueError(f"tasks {stray} belong to none of {fams}: name tasks as family.task")
        chosen = [
            (f"{f}.{split}", None if tasks is None else [t for t in tasks if t.startswith(f + ".")])
            for f in fams
        ]
    goals = [
        g for name, ts in chosen if ts is None or ts for g in registry.goals(name, tasks=ts, seeds=seeds)
    ]
    if not goals:
        raise ValueError(f"env {env!r} split {split!r} with tasks={tasks} has no goals: check the task names")
    return goals


def _split_name(env: str, split: str) -> str:
    return split if "." in split or "/" in split else f"{env}.{split}"


class MultiRunner:
    """Episodes of several env families, each family in its own runner; results come back in the goals' order."""

    def __init__(self, runners: Mapping[str, Runner]) -> None:
        self.runners = dict(runners)

    def run_episodes(self, policy: Policy, goals: Sequence[Any], **kwargs: Any) -> list[Trajectory]:
        by_family: dict[str, list[int]] = {}
        for i, g in enumerate(goals):
            family = goal_key(g)[0].split(".", 1)[0]
            if family not in self.runners:
                raise ValueError(
                    f"goal {goal_key(g)} is of no family of this runner ({sorted(self.runners)})"
                )
            by_family.setdefault(family, []).append(i)
        out: list[Trajectory | None] = [None] * len(goals)
        for family, idx in by_family.items():
            trajs = self.runners[family].run_episodes(policy, [goals[i] for i in idx], **kwargs)
            for i, t in zip(idx, trajs, strict=True):
                out[i] = t
        return out  # type: ignore[return-value]

    def close(self) -> None:
        for r in self.runners.values():
            r.close()


def open_env_runner(
    env: str, *, workers: int, max_steps: int, options: Mapping[str, Any] | None = None
) -> Runner:
    """An episode runner over a pool of env workers (`envs.runner.open_runner`, with its further options);
    a `MultiRunner` of one pool per family when `env` names several."""
    from envs.runner import open_runner

    fams = families(env)
    if len(fams) == 1:
        return open_runner(env, workers=workers, max_steps=max_steps, **dict(options or {}))
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(fams))
    if unknown:
        raise ValueError(
            f"env {env!r}: env_options must be keyed by family ({', '.join(fams)}); unknown key(s) {unknown}"
        )
    runners: dict[str, Runner] = {}
    try:
        for f in fams:
            runners[f] = open_runner(f, workers=workers, max_steps=max_steps, **dict(opts.get(f) or {}))
    except BaseException:
        for r in runners.values():
            r.close()
        raise
    return MultiRunner(runners)


def scripted_policy(env: str) -> Policy:
    """The env family's scripted (oracle) policy, the default teacher."""
    from envs.scripted import ScriptedPolicy

    del env  # one scripted policy serves every family (it reads the task name from the observation)
    return ScriptedPolicy()
