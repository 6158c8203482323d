"""The messages between the episode runner and its env workers: small frozen dataclasses, picklable over a pipe.

The runner sends a `Batch` of operations (`Reset`, `Act`, `Close`) or `Stop`; the worker answers `Ready` or
`StartFailed` once, then one `Results` per batch, one result per operation in the same order: `Started`,
`Observed`, `Closed`, or `EnvFailed` when the host raised (an infrastructure failure, never the agent's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envs.actions import Action

__all__ = [
    "Reset",
    "Act",
    "Close",
    "Op",
    "Batch",
    "Stop",
    "Ready",
    "StartFailed",
    "Started",
    "Observed",
    "Closed",
    "EnvFailed",
    "Result",
    "Results",
]


@dataclass(frozen=True)
class Reset:
    """Start episode `eid` of `task` with `seed`."""

    eid: int
    task: str
    seed: int


@dataclass(frozen=True)
class Act:
    """Take a parsed action in episode `eid`."""

    eid: int
    action: Action


@dataclass(frozen=True)
class Close:
    """End episode `eid` and free its browser context."""

    eid: int


Op = Reset | Act | Close


@dataclass(frozen=True)
class Batch:
    """One round of operations for one worker: closes and resets one by one, then all actions together."""

    ops: tuple[Op, ...]


@dataclass(frozen=True)
class Stop:
    """Shut the host down and end the worker."""


@dataclass(frozen=True)
class Ready:
    """The worker's host started (its browser is up)."""


@dataclass(frozen=True)
class StartFailed:
    """The worker's host could not start; the runner raises this message in the calling process."""

    message: str


@dataclass(frozen=True)
class Started:
    """A `Reset` went through: the episode's first observation."""

    observation: dict[str, Any]


@dataclass(frozen=True)
class Observed:
    """An `Act` went through: what the env did."""

    observation: dict[str, Any]
    reward: float
    """Raw environment reward after the action."""
    done: bool
    action_error: str
    """The page's error for this action ("" when it went through)."""


@dataclass(frozen=True)
class Closed:
    """A `Close` went through."""


@dataclass(frozen=True)
class EnvFailed:
    """The host raised: an env error (`TypeName: message`), costing the episode one attempt."""

    message: str


Result = Started | Observed | Closed | EnvFailed


@dataclass(frozen=True)
class Results:
    """A worker's answer to one `Batch`: one result per operation, in order."""

    items: tuple[Result, ...]
    idle_tasks: tuple[str, ...] = ()
    """The host's `idle_tasks()` after the batch (the runner routes the next resets by them)."""
    busy_s: float = 0.0
    """Wall seconds the worker spent executing the batch (the rest of a round trip is messaging)."""
