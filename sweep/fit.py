"""Build and fit the Ray Tune experiment of a sweep (or restore it), then reconcile MLflow with it.

Trial ends are announced on the `sweep.progress` logger (records carry `agentsweep_event = (event, trial_id,
status)`), so a restored experiment, whose callbacks Tune unpickles, reaches the caller's progress function
without touching Tune's internals; that logger does not propagate to the root logger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback

from sweep.settings import DEFAULT_MAX_TRIALS, SweepResult, SweepSettings

__all__ = ["PROGRESS_LOGGER", "fit", "sweep_complete"]

logger = logging.getLogger(__name__)

PROGRESS_LOGGER = "sweep.progress"
_progress_log = logging.getLogger(PROGRESS_LOGGER)
_progress_log.propagate = False


class _TrialEvents(Callback):
    """A Tune callback that announces trial ends on the `sweep.progress` logger."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        _progress_log.info(
            "trial %s FINISHED",
            trial.trial_id,
            extra={"agentsweep_event": ("complete", trial.trial_id, "FINISHED")},
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        _progress_log.info(
            "trial %s FAILED", trial.trial_id, extra={"agentsweep_event": ("error", trial.trial_id, "FAILED")}
        )


class _ToProgress(logging.Handler):
    def __init__(self, fn: Any):
        super().__init__()
        self.fn = fn

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "agentsweep_event", None)
        if event is not None:
            self.fn(*event)


@contextlib.contextmanager
def _progress_to(fn: Any) -> Iterator[None]:
    """Call `fn(event, trial_id, status)` for every trial end while the block runs."""
    if fn is None:
        yield
        return
    handler, level = _ToProgress(fn), _progress_log.level
    _progress_log.addHandler(handler)
    _progress_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        _progress_log.removeHandler(handler)
        _progress_log.setLevel(level)


def _tuner(s: SweepSettings) -> Any:
    from ray import tune

    from sweep.reconcile import make_trial_logger
    from sweep.search import make_searcher
    from sweep.trial import build_trainable

    space = s.search_space
    searcher = make_searcher(
        space,
        kind=s.search_kind,
        seed=s.seed,
        max_concurrent=s.max_concurrent,
        budget_flops=s.budget_flops,
        base_flops=s.base_flops,
    )
    scheduler = None
    if s.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            time_attr="step",
            metric=space.metric,
            mode=space.mode,
            max_t=s.asha_max_step,
            grace_period=s.asha_grace_step,
            reduction_factor=s.asha_reduction_factor,
        )
    return tune.Tuner(
        build_trainable(s),
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=s.planned_trials or DEFAULT_MAX_TRIALS,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=s.tune_path.name,
            storage_path=str(s.tune_path.parent),
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[make_trial_logger(s), _TrialEvents()],
            verbose=0,
        ),
    )


def _trial_name(trial: Any) -> str:
    """Trial names and folders are the trial id (short, and the MLflow run name)."""
    return str(trial.trial_id)


def fit(s: SweepSettings, *, restore: bool, progress: Any, ray_init: Mapping[str, Any] | None) -> SweepResult:
    """Run (or continue) the sweep's Tune experiment to its end, reconcile MLflow, close the parent run."""
    with _fit_environment():
        return _fit(s, restore=restore, progress=progress, ray_init=ray_init)


def _fit(
    s: SweepSettings, *, restore: bool, progress: Any, ray_init: Mapping[str, Any] | None
) -> SweepResult:
    from mlflow.tracking import MlflowClient
    from ray import tune

    from sweep.cluster import ensure_ray
    from sweep.reconcile import reconcile
    from sweep.tracking import checkpoint_sqlite_store
    from sweep.trial import build_trainable

    started = ensure_ray(s.address, temp_dir=Path(s.sweep_dir).parent / ".ray", **dict(ray_init or {}))
    client = MlflowClient(tracking_uri=s.tracking_uri)
    t0 = time.perf_counter()
    try:
        client.set_terminated(s.parent_run_id, status="RUNNING")
        if restore:
            tuner = tune.Tuner.restore(
                str(s.tune_path), trainable=build_trainable(s), resume_unfinished=True, resume_errored=False
            )
        else:
            tuner = _tuner(s)
        t_fit = time.perf_counter()
        with _progress_to(progress):
            tuner.fit()
        t_rec = time.perf_counter()
        counts = reconcile(s, client, restored=restore)
        logger.info(
            "setup %.1f s, Tune fit %.1f s, MLflow reconcile %.1f s",
            t_fit - t0,
            t_rec - t_fit,
            time.perf_counter() - t_rec,
        )
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
def _fit_environment() -> Iterator[None]:
    """Tune and MLflow settings read from the environment during a fit; the caller's own values win, and the
    process environment is left as it was (a library call must not change later runs in the same process)."""
    wanted = {
        # MLflow's client prints "View run at <tracking URI>" on stdout when a run ends: URI credentials included
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
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
