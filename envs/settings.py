"""The runner's settings: `RunnerConfig`, and `split_options`, which checks `open_runner`'s options in the caller.

`open_runner(family, **options)` takes the runner's fields and the family's host options in one namespace;
`split_options` parts them, checks both (bad values, unknown names, missing credentials or packages) before any
worker starts, and fills nothing in: the family's defaults stay in its registry entry and settings dataclass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from envs.choices import FAMILIES, OBSERVATION_KINDS, Family, ObservationKind, check_choice
from envs.hosts import check_host_options
from envs.registry import FAMILY_SPECS, FamilySpec

__all__ = ["RunnerConfig", "split_options"]


@dataclass(frozen=True)
class RunnerConfig:
    """Runner settings shared by all families (the rest of `open_runner`'s options go to the env host)."""

    family: Family
    workers: int = 1
    """Worker processes (browsers) for miniwob/workarena; in-process hosts for toy."""
    max_steps: int = 10
    """Agent steps per episode (each parsed or unparsed completion counts as one)."""
    episodes_per_worker: int = 4
    """Live episodes per worker (browser contexts per browser)."""
    observation: ObservationKind | None = None
    """Page view in prompts; None is the family's default (`FamilySpec.default_observation`)."""
    max_obs_tokens: int = 2000
    """Token budget of the page text in a prompt (cut stated in the prompt)."""
    max_attempts: int = 3
    """Starts per episode when env errors occur (1 = no retry)."""
    worker_timeout_s: float = 120.0
    """A worker that does not answer a batch within this time is killed and restarted (its episodes retried)."""
    log_path: str | None = None
    """Append every finished trajectory to this JSONL file."""

    def __post_init__(self) -> None:
        check_choice("family", self.family, FAMILIES)
        for name in ("workers", "max_steps", "episodes_per_worker", "max_attempts", "max_obs_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.observation is not None:
            check_choice("observation", self.observation, OBSERVATION_KINDS)
            check_choice(f"observation of {self.family}", self.observation, self.spec.observations)

    @property
    def spec(self) -> FamilySpec:
        """The family's registry entry."""
        return FAMILY_SPECS[self.family]

    @property
    def observation_kind(self) -> ObservationKind:
        return self.observation or self.spec.default_observation


def split_options(
    family: Family, *, workers: int, max_steps: int, **options: Any
) -> tuple[RunnerConfig, dict[str, Any]]:
    """(runner settings, host options) of `open_runner`'s arguments, both checked in the calling process."""
    runner_fields = {f.name for f in dataclasses.fields(RunnerConfig)} - {"family", "workers", "max_steps"}
    config = RunnerConfig(
        family=family,
        workers=workers,
        max_steps=max_steps,
        **{k: v for k, v in options.items() if k in runner_fields},
    )
    host_options = {k: v for k, v in options.items() if k not in runner_fields}
    check_host_options(config.spec, host_options)
    return config, host_options
