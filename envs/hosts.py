"""The env host contract and its factory: where one worker's env sessions live, built from a registry entry.

A host (`EnvHost`, as BrowserGym's task ABC but per worker) holds many live episodes, keyed by an episode id, and
raises only for infrastructure failures; an action that fails on the page comes back as the step's action error.
`make_host` builds the host of an `envs.registry.FamilySpec` and refuses a class that lacks any of the Protocol's
methods; `check_host_options` checks the options (and the family's extra packages) in the calling process, so a
typo or a missing credential fails before any worker starts.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from envs.actions import Action
from envs.choices import ObservationKind

if TYPE_CHECKING:
    from envs.registry import FamilySpec

__all__ = [
    "EnvHost",
    "StepOutcome",
    "HOST_METHODS",
    "host_class",
    "make_host",
    "worker_options",
    "check_host_options",
    "step_each",
]

StepOutcome = tuple[dict[str, Any], float, bool, str]
"""(observation, raw reward, done, action error) of one step; the error is "" when the action went through."""


@runtime_checkable
class EnvHost(Protocol):
    """The env sessions of one worker: one browser (or none, for the toy env), one live episode per `eid`."""

    def start(self) -> None:
        """Launch what the host needs (the browser) now, so start-up failures surface when the runner opens."""
        ...

    def reset(self, eid: int, task: str, seed: int) -> dict[str, Any]:
        """Start episode `eid` of `task` (full name) with `seed`; returns its first observation (with `goal`)."""
        ...

    def step_many(self, items: Sequence[tuple[int, Action]]) -> list[StepOutcome | Exception]:
        """Act on each (eid, action), then observe each; one outcome per item, an env error as its exception."""
        ...

    def close(self, eid: int) -> None:
        """End episode `eid` (unknown ids are ignored)."""
        ...

    def idle_tasks(self) -> tuple[str, ...]:
        """One entry per idle page, least recently used first: the task a reset starts in place there, or ""
        (the runner routes resets by them); () for hosts where every reset costs the same."""
        ...

    def shutdown(self) -> None:
        """Close every episode and the browser."""
        ...


HOST_METHODS: tuple[str, ...] = tuple(
    n for n, v in vars(EnvHost).items() if callable(v) and not n.startswith("_")
)
"""The methods a host class must have (the Protocol's)."""


def _load(path: str) -> Any:
    """The object named by `module:Name` (or `module:Name.attr`)."""
    module, _, name = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def host_class(spec: FamilySpec) -> type:
    """The family's host class; a TypeError names the Protocol methods it lacks."""
    cls = _load(spec.host)
    missing = [m for m in HOST_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(
            f"{spec.host} is not an env host: it lacks {', '.join(missing)}; implement envs.hosts.EnvHost "
            f"({', '.join(HOST_METHODS)}) or fix FAMILY_SPECS[{spec.family!r}].host"
        )
    return cls


def make_host(spec: FamilySpec, options: dict[str, Any]) -> EnvHost:
    """The host of a family, built with its options (in the process that will run its episodes)."""
    return host_class(spec)(**options)


def worker_options(
    spec: FamilySpec, options: dict[str, Any], *, observation: ObservationKind, worker_index: int
) -> dict[str, Any]:
    """The host options of worker `worker_index`: `options`, plus the observation when the family's settings take one
    (and it is not set) and the worker index when the family's entry asks for it."""
    out = dict(options)
    if "observation" in {f.name for f in dataclasses.fields(_load(spec.settings))}:
        out.setdefault("observation", observation)
    if spec.worker_index:
        out["worker_index"] = worker_index
    return out


def check_host_options(spec: FamilySpec, options: dict[str, Any]) -> None:
    """Fail in the calling process (not in a worker) on bad options, missing credentials or missing packages."""
    settings = _load(spec.settings)
    getattr(settings, "from_env", settings)(**options)
    for module, install in spec.requires:
        if importlib.util.find_spec(module) is None:
            raise RuntimeError(f"the {spec.family} family needs {install}")


def step_each(
    step: Callable[[int, Action], StepOutcome], items: Sequence[tuple[int, Action]]
) -> list[StepOutcome | Exception]:
    """`step_many` for hosts without a shared settle time: `step` of each item, an exception as that item's outcome."""
    out: list[StepOutcome | Exception] = []
    for eid, action in items:
        try:
            out.append(step(eid, action))
        except Exception as e:  # noqa: BLE001 - an env error of this episode only
            out.append(e)
    return out
