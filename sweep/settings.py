"""A sweep's settings and its directory: `SweepSettings` (saved as sweep.json), the driver lock, field docs.

Layout of a sweep directory (`<out>/<sweep_id>/`):
    sweep.json            the settings (space made concrete, objective path, resources, MLflow ids): resume reads it
    driver.lock           held by the one driver running the sweep (`sweep_lock`)
    mlflow_journal.jsonl  MLflow writes not yet accepted by the tracking server (`sweep.trial_logger`)
    tune/experiment/      Ray Tune's experiment (trial state, checkpoints, searcher state)

The `launch` command's options are made from the fields marked `_user(...)` below: their docstrings are the help
and their defaults the CLI's defaults, so nothing here is restated in `sweep.commands`.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import fcntl
import functools
import inspect
import json
import os
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sweep.space import SEARCH_KINDS, SearchKind, SearchSpace

__all__ = [
    "CLI_FLAG",
    "DEFAULT_MAX_TRIALS",
    "SCHEDULERS",
    "SETTINGS_FILE",
    "Scheduler",
    "SweepLocked",
    "SweepResult",
    "SweepSettings",
    "field_docs",
    "load_settings",
    "sweep_lock",
]

SETTINGS_FILE = "sweep.json"
LOCK_FILE = "driver.lock"
JOURNAL_FILE = "mlflow_journal.jsonl"
DEFAULT_MAX_TRIALS = 100_000  # the cap on trials when only a FLOPs budget is given
CLI_FLAG = "cli_flag"
"""Field metadata key: the `launch` option a user-facing setting becomes (`--<flag>`)."""
CLI_ENVVAR = "cli_envvar"
"""Field metadata key: the environment variable the option falls back to."""

Scheduler = Literal["none", "asha"]
SCHEDULERS: tuple[str, ...] = typing.get_args(Scheduler)


def _user(default: Any = None, *, flag: str = "", envvar: str | None = None, factory: Any = None) -> Any:
    """A user-facing setting: a `launch --<flag>` option (flag default: the field name with dashes), read from
    `envvar` when the option is not given."""
    meta = {CLI_FLAG: flag, CLI_ENVVAR: envvar}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SweepSettings:
    """Everything that defines a sweep; stored as sweep.json so `resume` rebuilds the same experiment."""

    sweep_id: str
    """Unique id (tag `agentsweep.sweep_id` on every MLflow run)."""
    sweep_dir: str
    """The sweep's directory (absolute)."""
    space: dict[str, Any]
    """The search space (`SearchSpace.to_dict`), with `values: auto` already filled in."""
    objective: str = _user("sweep.objectives:rl")
    """Import path module:function run per trial (sweep.objectives:rl is the study's RL run; :surrogate a stand-in)."""
    options: dict[str, Any] = _user(factory=dict)
    """YAML file of fixed options for the objective (ctx.options); secret-named keys and URIs with passwords are refused."""
    search: SearchKind | None = _user(None)
    """Searcher (random as in the study, tpe = Optuna, grid); default: the space's."""
    num_trials: int | None = _user(None, flag="trials")
    """Number of trials (default: until --budget-flops is spent; for grid search the full grid)."""
    budget_flops: float | None = _user(None)
    """Stop starting trials once this much compute (SFT branch points + RL) is spent."""
    seed: int = _user(0)
    """Seeds the searcher and, with each trial id, each trial."""
    cpus_per_trial: float = _user(1.0)
    """CPUs per trial."""
    gpus_per_trial: float = _user(0.0)
    """GPUs per trial; fractions (0.25) pack trials on one GPU (no memory isolation: ray #13680)."""
    custom_resources: dict[str, float] = _user(flag="resource", factory=dict)
    """Custom Ray resource per trial, NAME=AMOUNT (repeatable), e.g. browser=1."""
    max_concurrent: int | None = _user(None)
    """At most this many trials at once (default: as many as resources allow)."""
    max_failures: int = _user(1)
    """Retries of a failing trial (from its last checkpoint, e.g. after a lost node) before it is marked FAILED."""
    scheduler: Scheduler = _user("none")
    """Early stopping: asha stops weak trials at their evaluations (time axis: step)."""
    asha_max_step: int = _user(100)
    """ASHA: the last step a trial can reach."""
    asha_grace_step: int = _user(1)
    """ASHA: steps every trial runs before it can be stopped."""
    asha_reduction_factor: float = _user(3.0)
    """ASHA: keep 1/factor of the trials at each rung."""
    tracking_uri: str = _user("", envvar="MLFLOW_TRACKING_URI")
    """MLflow tracking URI (default: sqlite:///<out>/mlruns.db); give one with a password in MLFLOW_TRACKING_URI."""
    experiment: str = _user("agentsweep")
    """MLflow experiment name."""
    address: str | None = _user(None)
    """Ray cluster address (ray://host:10001 or host:6379; default: a local Ray)."""
    branch_points: dict[str, str] = field(default_factory=dict)
    """`params.sft_checkpoint` string -> SFT checkpoint path (empty path: the base student)."""
    base_flops: float = 0.0
    """Compute spent on the shared SFT branch points (teacher traces + SFT), counted once in the budget."""
    experiment_id: str = ""
    """The MLflow experiment's id (set when the parent run is opened)."""
    parent_run_id: str = ""
    """The sweep's parent MLflow run (set when it is opened)."""

    def __post_init__(self) -> None:
        if self.num_trials is not None and self.num_trials < 1:
            raise ValueError(f"num_trials={self.num_trials} must be >= 1")
        if self.cpus_per_trial < 0 or self.gpus_per_trial < 0:
            raise ValueError(
                f"cpus_per_trial={self.cpus_per_trial}, gpus_per_trial={self.gpus_per_trial} must be >= 0"
            )
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ValueError(f"gpus_per_trial={self.gpus_per_trial}: above 1 it must be a whole number")
        if self.max_failures < 0:
            raise ValueError(f"max_failures={self.max_failures} must be >= 0")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler={self.scheduler!r}; use one of {list(SCHEDULERS)}")
        if self.search is not None and self.search not in SEARCH_KINDS:
            raise ValueError(f"search={self.search!r}; use one of {list(SEARCH_KINDS)}")

    @property
    def search_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space, source=f"{self.sweep_dir}/{SETTINGS_FILE}")

    @property
    def search_kind(self) -> SearchKind:
        return self.search or self.space.get("search", "random")

    @property
    def tune_path(self) -> Path:
        return Path(self.sweep_dir) / "tune" / "experiment"

    @property
    def journal_path(self) -> Path:
        return Path(self.sweep_dir) / JOURNAL_FILE

    @property
    def planned_trials(self) -> int | None:
        if self.num_trials is not None:
            return self.num_trials
        if self.search_kind == "grid" and self.budget_flops is None:
            return self.search_space.grid_size()
        return None

    def resources(self) -> dict[str, float]:
        res = {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}
        res.update(self.custom_resources)
        return res

    def to_json(self) -> str:
        """The settings as saved: the tracking URI without its password (`sweep.secrets.redact_uri`)."""
        from sweep.secrets import redact_uri

        data = dataclasses.asdict(self)
        data["tracking_uri"] = redact_uri(self.tracking_uri)
        return json.dumps(data, indent=1, default=str)

    def save(self) -> None:
        path = Path(self.sweep_dir) / SETTINGS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)


@dataclass(frozen=True)
class SweepResult:
    """What a finished (or interrupted) fit left behind."""

    settings: SweepSettings
    num_finished: int
    num_failed: int
    num_trials: int
    wall_s: float


def load_settings(sweep: str | Path) -> SweepSettings:
    """Settings of a sweep directory (or of its sweep.json); a redacted tracking URI is completed from the
    environment (`sweep.secrets.resolve_uri`)."""
    from sweep.secrets import resolve_uri

    path = Path(sweep)
    path = path / SETTINGS_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the sweep directory printed by `agentsweep launch`")
    data = json.loads(path.read_text())
    data["tracking_uri"] = resolve_uri(data.get("tracking_uri", ""))
    return SweepSettings(**data)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring line under it in the dataclass's source (the CLI's help text)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


class SweepLocked(RuntimeError):
    """Another driver holds the sweep directory's lock."""


@contextlib.contextmanager
def sweep_lock(sweep_dir: str | Path) -> Iterator[None]:
    """Hold `<sweep_dir>/driver.lock` (an flock, freed by the kernel if the driver dies) while a driver runs.

    Raises:
        SweepLocked: another live driver holds it (two drivers on one sweep would delete each other's runs).
    """
    path = Path(sweep_dir) / LOCK_FILE
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise SweepLocked(
                f"{sweep_dir} is being run by another driver (pid {holder}): wait for it to end or stop it, "
                "then `agentsweep resume` it"
            ) from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)
