"""The sweep driver: a search space and an objective -> a Ray Tune experiment logged to MLflow, resumable.

Layout of a sweep directory (`<out>/<sweep_id>/`):
    sweep.json          the settings (space made concrete, objective path, resources, MLflow ids): resume reads it
    tune/experiment/    Ray Tune's experiment (trial state, checkpoints, searcher state)
MLflow holds one parent run per sweep and one nested child run per trial (`sweep.tracking`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ray.tune import Callback

from sweep.space import BRANCH_POINT, SearchSpace, load_space, param_to_str

__all__ = ["SweepResult", "SweepSettings", "ensure_ray", "launch", "load_settings", "resume", "sweep_status"]

logger = logging.getLogger(__name__)

SETTINGS_FILE = "sweep.json"
DEFAULT_MAX_TRIALS = 100_000  # the cap on trials when only a FLOPs budget is given


@dataclass(frozen=True)
class SweepSettings:
    """Everything that defines a sweep; stored as sweep.json so `resume` rebuilds the same experiment."""

    sweep_id: str
    """Unique id (tag `agentsweep.sweep_id` on every MLflow run)."""
    sweep_dir: str
    """The sweep's directory (absolute)."""
    space: dict[str, Any]
    """The search space (`SearchSpace.to_dict`), with `values: auto` already filled in."""
    objective: str = "sweep.objectives:surrogate"
    """Import path `module:function` of the objective (see sweep.objectives)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Fixed options for the objective (passed as `ctx.options`; never logged unredacted)."""
    search: Literal["random", "tpe", "grid"] | None = None
    """Searcher; None = the space's `search`."""
    num_trials: int | None = None
    """Trials to run; None with a budget = until the budget is spent; None for grid = the full grid."""
    budget_flops: float | None = None
    """Stop starting trials once this much compute (SFT branch points + RL) is spent."""
    seed: int = 0
    """Seeds the searcher and, with each trial id, each trial."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    """GPUs per trial; fractions (0.25) pack trials on one GPU (no memory isolation: ray #13680)."""
    custom_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per trial, e.g. {"browser": 1}."""
    max_concurrent: int | None = None
    """At most this many trials at once (None: as many as resources allow)."""
    max_failures: int = 0
    """Retries of a failing trial (from its last checkpoint) before it is marked FAILED."""
    scheduler: Literal["none", "asha"] = "none"
    """Early stopping: 'asha' stops weak trials at their evaluations (time axis: `step`)."""
    asha_max_step: int = 100
    asha_grace_step: int = 1
    asha_reduction_factor: float = 3.0
    tracking_uri: str = ""
    """MLflow tracking URI (default: sqlite under the output directory)."""
    experiment: str = "agentsweep"
    """MLflow experiment name."""
    address: str | None = None
    """Ray cluster address (None: a local Ray)."""
    branch_points: dict[str, str] = field(default_factory=dict)
    """`params.sft_checkpoint` string -> SFT checkpoint path (empty path: the base student)."""
    base_flops: float = 0.0
    """Compute spent on the shared SFT branch points (teacher traces + SFT), counted once in the budget."""
    experiment_id: str = ""
    parent_run_id: str = ""

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
        if self.scheduler not in ("none", "asha"):
            raise ValueError(f"scheduler={self.scheduler!r}; use 'none' or 'asha'")
        if self.search is not None and self.search not in ("random", "tpe", "grid"):
            raise ValueError(f"search={self.search!r}; use random, tpe or grid")

    @property
    def search_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space, source=f"{self.sweep_dir}/{SETTINGS_FILE}")

    @property
    def search_kind(self) -> str:
        return self.search or self.space.get("search", "random")

    @property
    def tune_path(self) -> Path:
        return Path(self.sweep_dir) / "tune" / "experiment"

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

    def save(self) -> None:
        path = Path(self.sweep_dir) / SETTINGS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1, default=str))
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
    """Settings of a sweep directory (or of its sweep.json)."""
    path = Path(sweep)
    path = path / SETTINGS_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the sweep directory printed by `agentsweep launch`")
    data = json.loads(path.read_text())
    return SweepSettings(**data)


# --------------------------------------------------------------------------- Ray


def ensure_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: float | None = None,
    resources: Mapping[str, float] | None = None,
    temp_dir: str | Path | None = None,
    dashboard: bool = False,
) -> bool:
    """Connect to Ray (an address) or start a local one; returns True when this call started it.

    The dashboard is off unless asked for, and then binds to 127.0.0.1. Uses an already-initialised Ray as is.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, include_dashboard=None, log_to_driver=False)
        return True
    kwargs: dict[str, Any] = {"include_dashboard": dashboard, "log_to_driver": False}
    if dashboard:
        kwargs["dashboard_host"] = "127.0.0.1"
    if temp_dir is not None:
        temp_dir = Path(temp_dir).resolve()
        # Ray's unix sockets live under the temp dir; their paths must stay under ~107 bytes
        kwargs["_temp_dir"] = (
            str(temp_dir) if len(str(temp_dir)) < 60 else tempfile.mkdtemp(prefix="agentsweep-ray-")
        )
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, resources=dict(resources or {}) or None, **kwargs)
    return True


# --------------------------------------------------------------------------- the trainable


def _trainable(config: dict[str, Any], settings_json: str) -> None:
    """The Tune function trainable: resolves params, builds the TrialContext, runs the objective."""
    from ray import tune

    settings = SweepSettings(**json.loads(settings_json))
    space = settings.search_space
    params = space.resolve({k: v for k, v in config.items() if k in space.names})
    context = tune.get_context()
    trial_id = context.get_trial_id()
    # Tune runs a trial in its own working dir; without that (RAY_CHDIR_TO_TRIAL_DIR=0) a temporary one
    in_trial_dir = Path(os.getcwd()).name == context.get_trial_name()
    with (
        contextlib.nullcontext(os.getcwd())
        if in_trial_dir
        else tempfile.TemporaryDirectory(prefix="agentsweep-trial-")
    ) as work:
        _run_objective(settings, params, context, trial_id, Path(work))


def _run_objective(settings: SweepSettings, params: dict[str, Any], context: Any, trial_id: str,
                   work: Path) -> None:  # fmt: skip
    """Run the objective in `work` (resuming from Tune's checkpoint if any); its samples go to the trial folder."""
    from ray import tune

    from sweep.objectives import TrialContext, import_object
    from sweep.tracking import trial_seed

    bp = param_to_str(params.get(BRANCH_POINT))
    bp_path = settings.branch_points.get(bp) or None
    ctx_kwargs = dict(
        trial_id=trial_id,
        seed=trial_seed(settings.seed, trial_id),
        trial_dir=str(work),
        samples_dir=str(work / "samples"),
        branch_point=bp_path,
        branch_point_flops=float(params.get(BRANCH_POINT) or 0.0) if BRANCH_POINT in params else 0.0,
        options=settings.options,
        resources=_assigned_resources(),
    )
    objective = import_object(settings.objective)

    def report(metrics: dict[str, float], checkpoint: str | None = None) -> None:
        ckpt = tune.Checkpoint.from_directory(checkpoint) if checkpoint else None
        tune.report(dict(metrics), checkpoint=ckpt)

    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            objective(params, TrialContext(**ctx_kwargs), report)
        else:
            with checkpoint.as_directory() as resume_from:
                objective(params, TrialContext(resume_from=resume_from, **ctx_kwargs), report)
    finally:  # a failed attempt's samples are kept too
        samples = work / "samples"
        if samples.is_dir():  # to the trial's storage folder, where the MLflow callback picks them up
            shutil.copytree(
                samples, settings.tune_path / context.get_trial_name() / "samples", dirs_exist_ok=True
            )


def _assigned_resources() -> dict[str, float]:
    import ray

    try:
        return {k: float(v) for k, v in ray.get_runtime_context().get_assigned_resources().items()}
    except Exception:  # noqa: BLE001 (outside a Ray worker: nothing assigned)
        return {}


def _build_trainable(settings: SweepSettings) -> Any:
    from ray import tune

    trainable = tune.with_parameters(
        _trainable, settings_json=json.dumps(dataclasses.asdict(settings), default=str)
    )
    return tune.with_resources(trainable, settings.resources())


def _callbacks(settings: SweepSettings) -> list[Any]:
    from sweep.tracking import TrialRunLogger, git_commit

    return [
        TrialRunLogger(
            tracking_uri=settings.tracking_uri,
            experiment_id=settings.experiment_id,
            parent_run_id=settings.parent_run_id,
            sweep_id=settings.sweep_id,
            space=settings.search_space,
            tags={"agentsweep.git_commit": git_commit()},
            base_seed=settings.seed,
            branch_points=settings.branch_points,
        )
    ]


class _Progress(Callback):
    """A Tune callback that forwards trial completions to `fn(event, trial_id, status)` (the CLI's rich bar)."""

    def __init__(self, fn: Any):
        self.fn = fn

    def __getstate__(self) -> dict:
        return {"fn": None}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        if self.fn is not None:
            self.fn("complete", trial.trial_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        if self.fn is not None:
            self.fn("error", trial.trial_id, "FAILED")


# --------------------------------------------------------------------------- launch / resume


def launch(
    space: SearchSpace | str | Path,
    *,
    out_dir: str | Path,
    objective: str = "sweep.objectives:surrogate",
    options: Mapping[str, Any] | None = None,
    branch_builder: str | None = None,
    sweep_id: str | None = None,
    tracking_uri: str | None = None,
    progress: Any = None,
    ray_init: Mapping[str, Any] | None = None,
    **settings: Any,
) -> SweepResult:
    """Start a sweep and run it to the end (or until the process is stopped; then `resume`).

    Args:
        space: a `SearchSpace`, a packaged space name (`paper`, `demo`) or a YAML path.
        out_dir: where the sweep directory (and, by default, the sqlite MLflow store) go.
        objective: import path of the objective (`sweep.objectives`).
        options: fixed options for the objective (`ctx.options`); secrets in them are never logged.
        branch_builder: import path of `builder(options, cache_dir) -> list[(flops, path)]` that builds the SFT
            branch points (see `sweep.branch_points`); None = no SFT stage (branch points are plain values).
        sweep_id: default `<space>-<UTC time>-<random>`.
        tracking_uri: MLflow URI; default sqlite `<out_dir>/mlruns.db`.
        progress: optional `fn(event, trial_id, status)` called as trials end.
        ray_init: extra `ensure_ray` arguments for a local Ray (num_cpus, num_gpus, resources, dashboard).
        **settings: the other `SweepSettings` fields (num_trials, budget_flops, search, seed, cpus_per_trial, ...).
    """
    from sweep import branch_points as bp_mod
    from sweep.tracking import default_tracking_uri

    space = space if isinstance(space, SearchSpace) else load_space(space)
    out_dir = Path(out_dir).resolve()
    sweep_id = (
        sweep_id or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    )
    sweep_dir = out_dir / sweep_id
    if (sweep_dir / SETTINGS_FILE).exists():
        raise FileExistsError(
            f"{sweep_dir} already holds a sweep: `agentsweep resume {sweep_dir}` continues it"
        )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    options = dict(options or {})
    _refuse_secrets(options)
    branch_points: dict[str, str] = {}
    base_flops = 0.0
    if branch_builder is not None:
        built = bp_mod.ensure_branch_points(branch_builder, options, cache_root=out_dir / "branch_points")
        space, branch_points = bp_mod.attach(space, built)
        base_flops = max((b.flops for b in built), default=0.0)
    s = SweepSettings(
        sweep_id=sweep_id,
        sweep_dir=str(sweep_dir),
        space=space.to_dict(),
        objective=objective,
        options=options,
        tracking_uri=tracking_uri or default_tracking_uri(out_dir),
        branch_points=branch_points,
        base_flops=base_flops,
        **settings,
    )
    space._require_concrete()
    s = _open_parent_run(s, out_dir)
    s.save()
    logger.info("sweep %s in %s (MLflow %s)", s.sweep_id, s.sweep_dir, s.tracking_uri)
    return _fit(s, restore=False, progress=progress, ray_init=ray_init)


def _refuse_secrets(options: Mapping[str, Any], where: str = "options") -> None:
    """Secrets travel as environment variables (SNOW_INSTANCE_PWD, OPENAI_API_KEY), never in saved options."""
    from sweep.tracking import is_secret_name

    for key, value in options.items():
        if is_secret_name(str(key)):
            raise ValueError(
                f"{where}.{key} looks like a secret: options are saved in sweep.json; set it as an environment "
                "variable on the Ray nodes instead (agentsweep redacts secret-named variables from MLflow)"
            )
        if isinstance(value, Mapping):
            _refuse_secrets(value, f"{where}.{key}")


def resume(
    sweep: str | Path, *, progress: Any = None, ray_init: Mapping[str, Any] | None = None
) -> SweepResult:
    """Continue a sweep after its driver stopped (Ctrl-C, SIGKILL, a lost node): same trials, same searcher."""
    s = load_settings(sweep)
    if not (s.tune_path / "tuner.pkl").exists():
        logger.warning(
            "%s has no Tune experiment yet (killed before the first trial): starting it", s.sweep_dir
        )
        return _fit(s, restore=False, progress=progress, ray_init=ray_init)
    return _fit(s, restore=True, progress=progress, ray_init=ray_init)


def _open_parent_run(s: SweepSettings, out_dir: Path) -> SweepSettings:
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from sweep.tracking import (
        TAG_ROLE,
        TAG_SWEEP,
        get_or_create_experiment,
        git_commit,
        prepare_sqlite_store,
        redact,
    )

    prepare_sqlite_store(s.tracking_uri)
    client = MlflowClient(tracking_uri=s.tracking_uri)
    local = s.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in s.tracking_uri
    experiment_id = get_or_create_experiment(
        client, s.experiment, artifact_root=out_dir / "mlartifacts" if local else None
    )
    tags = {
        TAG_SWEEP: s.sweep_id,
        TAG_ROLE: "sweep",
        "agentsweep.git_commit": git_commit(),
        "agentsweep.seed": str(s.seed),
        "agentsweep.space": s.space["name"],
        "agentsweep.sweep_dir": s.sweep_dir,
    }
    run = client.create_run(experiment_id, tags=tags, run_name=s.sweep_id)
    summary = {
        "objective": s.objective,
        "search": s.search_kind,
        "num_trials": s.num_trials,
        "budget_flops": s.budget_flops,
        "seed": s.seed,
        "resources": json.dumps(s.resources()),
        "max_concurrent": s.max_concurrent,
        "max_failures": s.max_failures,
        "scheduler": s.scheduler,
        "base_flops": s.base_flops,
    }
    summary = redact({k: param_to_str(v) for k, v in summary.items()})
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in summary.items()])
    client.log_dict(run.info.run_id, redact(s.space), "space.json")
    client.log_dict(run.info.run_id, redact(s.options), "options.json")
    return dataclasses.replace(s, experiment_id=experiment_id, parent_run_id=run.info.run_id)


def _tuner(s: SweepSettings, progress: Any) -> Any:
    from ray import tune

    from sweep.search import make_searcher

    planned = s.planned_trials
    searcher = make_searcher(
        s.search_space,
        kind=s.search_kind,
        seed=s.seed,
        max_concurrent=s.max_concurrent,
        budget_flops=s.budget_flops,
        base_flops=s.base_flops,
    )
    scheduler = None
    if s.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        space = s.search_space
        scheduler = ASHAScheduler(
            time_attr="step",
            metric=space.metric,
            mode=space.mode,
            max_t=s.asha_max_step,
            grace_period=s.asha_grace_step,
            reduction_factor=s.asha_reduction_factor,
        )
    return tune.Tuner(
        _build_trainable(s),
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=planned or DEFAULT_MAX_TRIALS,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=s.tune_path.name,
            storage_path=str(s.tune_path.parent),
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[*_callbacks(s), _Progress(progress)],
            verbose=0,
        ),
    )


def _trial_name(trial: Any) -> str:
    """Trial names and folders are the trial id (short, and the MLflow run name)."""
    return str(trial.trial_id)


def _fit(
    s: SweepSettings, *, restore: bool, progress: Any, ray_init: Mapping[str, Any] | None
) -> SweepResult:
    started = ensure_ray(s.address, temp_dir=Path(s.sweep_dir).parent / ".ray", **dict(ray_init or {}))
    from mlflow.tracking import MlflowClient
    from ray import tune

    from sweep.tracking import checkpoint_sqlite_store

    client = MlflowClient(tracking_uri=s.tracking_uri)
    client.set_terminated(s.parent_run_id, status="RUNNING")
    t0 = time.perf_counter()
    try:
        if restore:
            tuner = tune.Tuner.restore(
                str(s.tune_path), trainable=_build_trainable(s), resume_unfinished=True, resume_errored=False
            )
            _set_progress(tuner, progress)
        else:
            tuner = _tuner(s, progress)
        t_fit = time.perf_counter()
        with _tune_environment():
            grid = tuner.fit()
        t_rec = time.perf_counter()
        counts = _reconcile(s, grid, client, restored=restore)
        logger.info(
            "setup %.1f s, Tune fit %.1f s, MLflow reconcile %.1f s",
            t_fit - t0, t_rec - t_fit, time.perf_counter() - t_rec,
        )  # fmt: skip
    finally:
        if started:
            import ray

            ray.shutdown()
    wall_s = time.perf_counter() - t0
    done = sweep_complete(
        s, num_trials=counts["trials"], num_unfinished=counts["unfinished"], spent_flops=counts["spent_flops"]
    )
    client.log_metric(s.parent_run_id, "num_finished", counts["FINISHED"])
    client.log_metric(s.parent_run_id, "num_failed", counts["FAILED"])
    client.set_terminated(s.parent_run_id, status="FINISHED" if done else "KILLED")
    checkpoint_sqlite_store(s.tracking_uri)
    return SweepResult(s, counts["FINISHED"], counts["FAILED"], counts["trials"], wall_s)


@contextlib.contextmanager
def _tune_environment() -> Iterator[None]:
    """Tune settings read from the environment when a fit starts; the caller's own values win, and the process
    environment is left as it was (a library call must not change later Tune runs in the same process)."""
    wanted = {
        # Tune saves the experiment state (trials, searcher) at most this often: small, so a SIGKILL loses little
        "TUNE_GLOBAL_CHECKPOINT_S": "5",
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    }
    added = [k for k in wanted if k not in os.environ]
    os.environ.update({k: wanted[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def sweep_complete(s: SweepSettings, *, num_trials: int, num_unfinished: int, spent_flops: float) -> bool:
    """Whether a fit ended the sweep: no trial left pending or running, and every planned trial was started
    (or, with a FLOPs budget, the budget is spent or the grid is exhausted). A Ctrl-C leaves it incomplete."""
    if num_unfinished:
        return False
    planned = s.planned_trials
    if planned is not None:
        return num_trials >= planned
    if s.search_kind == "grid" and num_trials >= s.search_space.grid_size():
        return True
    return s.budget_flops is not None and spent_flops >= s.budget_flops


def _set_progress(tuner: Any, progress: Any) -> None:
    """Re-attach the (unpicklable) progress function to a restored tuner's callback."""
    internal = getattr(tuner, "_local_tuner", None)
    run_config = getattr(internal, "_run_config", None) if internal is not None else None
    for cb in getattr(run_config, "callbacks", None) or []:
        if isinstance(cb, _Progress):
            cb.fn = progress


def _reconcile(s: SweepSettings, grid: Any, client: Any, *, restored: bool) -> dict[str, int]:
    """Make MLflow agree with Tune's final trial states (Tune's experiment state is the source of truth).

    - A child run whose trial Tune does not know (created just before a SIGKILL, before Tune saved its state) is
      deleted: the restored searcher suggests that slot again as a new trial, so keeping it would duplicate it.
    - After a restore, a trial whose MLflow writes were lost in the kill gets its run and its metrics back from
      Tune's own result log (`result.json`), so its curve is complete.
    """
    from sweep.tracking import find_child_runs

    trials = {t.trial_id: t for t in grid._experiment_analysis.trials}
    status_of = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}
    counts = {"FINISHED": 0, "FAILED": 0, "unfinished": 0, "trials": len(trials), "spent_flops": s.base_flops}
    for t in trials.values():
        counts[_mlflow_status(t) if _mlflow_status(t) != "KILLED" else "unfinished"] += 1
        last = t.last_result or {}
        counts["spent_flops"] += float(last.get("rl_flops", last.get("flops", 0.0)) or 0.0)
    runs = {}
    for run in find_child_runs(client, s.experiment_id, s.sweep_id):
        trial_id = run.data.tags.get("agentsweep.trial_id")
        if trial_id not in trials:
            logger.info("deleting MLflow run %s of trial %s that Tune never saved", run.info.run_id, trial_id)
            client.delete_run(run.info.run_id)
        else:
            runs[trial_id] = run
    writer = _callbacks(s)[0]
    for trial_id, trial in trials.items():
        run = runs.get(trial_id)
        if restored and trial.status in status_of:
            _backfill(writer, client, trial, run)
        want = _mlflow_status(trial)
        if run is None or run.info.status != want:
            client.set_terminated(writer.run_id_for(trial_id, trial.config), status=want)
    return counts


def _mlflow_status(trial: Any) -> str:
    """FINISHED / FAILED / KILLED for a Tune trial. A trial Tune calls TERMINATED without a single result was
    stopped by an interrupted driver before it reported (Tune re-runs it on resume): KILLED, not FINISHED."""
    if trial.status == "ERROR":
        return "FAILED"
    if trial.status == "TERMINATED" and trial.last_result:
        return "FINISHED"
    return "KILLED"


def _backfill(writer: Any, client: Any, trial: Any, run: Any) -> None:
    """Re-log a finished trial's results from Tune's result.json when MLflow has fewer steps than Tune."""
    path = Path(str(trial.path)) / "result.json"
    if not path.is_file():
        return
    results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    logged = 0 if run is None else len(client.get_metric_history(run.info.run_id, "flops"))
    if results and logged < len(results):
        run_id = writer.run_id_for(trial.trial_id, trial.config)
        for result in results:
            writer.log_result(run_id, result)


# --------------------------------------------------------------------------- status


def sweep_status(sweep: str | Path) -> dict[str, Any]:
    """Trials by state, FLOPs spent, best so far (from MLflow, so it works while the sweep runs)."""
    from mlflow.tracking import MlflowClient

    from sweep.tracking import find_child_runs

    s = load_settings(sweep)
    client = MlflowClient(tracking_uri=s.tracking_uri)
    runs = find_child_runs(client, s.experiment_id, s.sweep_id)
    space = s.search_space
    by_state: dict[str, int] = {}
    spent = s.base_flops
    best = None
    for run in runs:
        by_state[run.info.status] = by_state.get(run.info.status, 0) + 1
        m = run.data.metrics
        spent += float(m.get("rl_flops", m.get("flops", 0.0)))
        value = m.get(space.metric)
        if value is not None and (
            best is None or (value > best[0] if space.mode == "max" else value < best[0])
        ):
            best = (value, run.data.tags.get("agentsweep.trial_id"), dict(run.data.params))
    parent = client.get_run(s.parent_run_id)
    return {
        "sweep_id": s.sweep_id,
        "sweep_dir": s.sweep_dir,
        "tracking_uri": s.tracking_uri,
        "parent_status": parent.info.status,
        "planned_trials": s.planned_trials,
        "budget_flops": s.budget_flops,
        "trials_by_state": dict(sorted(by_state.items())),
        "flops_spent": spent,
        "metric": space.metric,
        "best": None if best is None else {"value": best[0], "trial_id": best[1], "params": best[2]},
    }
