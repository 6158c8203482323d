"""After a fit: make MLflow agree with Ray Tune's experiment state (Tune's state is the source of truth).

- The journal of writes the store refused (`sweep.trial_logger`) is sent first; if the store is still away the
  sweep stops with an error that says how to send it later (`agentsweep resume`).
- A child run whose trial Tune does not know (created just before a SIGKILL, before Tune saved its state) is
  deleted: the restored searcher suggests that slot again as a new trial, so keeping it would duplicate it.
- After a restore, or when writes were journaled, each ended trial's run gets back exactly the (key, step)
  pairs it lacks from Tune's own result log (`result.json`), so its curve is complete and nothing is doubled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sweep.settings import SweepSettings

__all__ = ["make_trial_logger", "mlflow_status", "read_results", "reconcile"]

logger = logging.getLogger(__name__)

_ENDED = ("TERMINATED", "ERROR")


def make_trial_logger(s: SweepSettings) -> Any:
    """The sweep's `TrialRunLogger` (the Tune callback, and the writer reconcile uses)."""
    from sweep.tracking import TAG_GIT_COMMIT, git_commit
    from sweep.trial_logger import TrialRunLogger

    return TrialRunLogger(
        tracking_uri=s.tracking_uri,
        experiment_id=s.experiment_id,
        parent_run_id=s.parent_run_id,
        sweep_id=s.sweep_id,
        space=s.search_space,
        tags={TAG_GIT_COMMIT: git_commit()},
        base_seed=s.seed,
        branch_points=s.branch_points,
        journal_path=s.journal_path,
    )


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The results in a Tune `result.json` (one JSON object a line); lines torn by a kill mid-write are skipped."""
    out = []
    path = Path(path)
    if not path.is_file():
        return out
    for i, line in enumerate(path.read_text(errors="replace").splitlines()):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s line %d is torn (a kill mid-write): skipped", path, i + 1)
    return out


def mlflow_status(trial: Any) -> str:
    """FINISHED / FAILED / KILLED for a Tune trial. A trial Tune calls TERMINATED without a single result was
    stopped by an interrupted driver before it reported (Tune re-runs it on resume): KILLED, not FINISHED."""
    if trial.status == "ERROR":
        return "FAILED"
    if trial.status == "TERMINATED" and trial.last_result:
        return "FINISHED"
    return "KILLED"


def reconcile(s: SweepSettings, client: Any, *, restored: bool) -> dict[str, Any]:
    """Send the journal, drop runs Tune never saved, backfill what is missing, set every run's status.

    Returns:
        counts: FINISHED, FAILED, unfinished, trials, spent_flops, and the writes `journaled`/`backfilled`.

    Raises:
        TrackingUnreachable: the store still refuses the journaled writes.
    """
    from ray.tune import ExperimentAnalysis

    from sweep.objectives import rl_flops_of
    from sweep.secrets import redact_uri
    from sweep.tracking import TAG_TRIAL, TrackingUnreachable, find_child_runs
    from sweep.trial_logger import result_points

    writer = make_trial_logger(s)
    journaled = s.journal_path.exists()
    left = writer.replay_journal()
    if left:
        raise TrackingUnreachable(
            f"{left} MLflow writes are kept in {s.journal_path}: {redact_uri(s.tracking_uri)} does not take "
            f"them now; once it answers, `agentsweep resume {s.sweep_dir}` sends them (nothing is lost)"
        )
    trials = {t.trial_id: t for t in ExperimentAnalysis(str(s.tune_path)).trials}
    counts: dict[str, Any] = {"FINISHED": 0, "FAILED": 0, "unfinished": 0, "trials": len(trials)}
    counts["spent_flops"] = s.base_flops + sum(rl_flops_of(t.last_result or {}) for t in trials.values())
    for t in trials.values():
        status = mlflow_status(t)
        counts[status if status != "KILLED" else "unfinished"] += 1
    runs = {}
    for run in find_child_runs(client, s.experiment_id, s.sweep_id):
        trial_id = run.data.tags.get(TAG_TRIAL)
        if trial_id not in trials:
            logger.info("deleting MLflow run %s of trial %s that Tune never saved", run.info.run_id, trial_id)
            client.delete_run(run.info.run_id)
        else:
            runs[trial_id] = run
    backfilled = 0
    for trial_id, trial in trials.items():
        run = runs.get(trial_id)
        if (restored or journaled) and trial.status in _ENDED:
            points = result_points(read_results(Path(str(trial.path)) / "result.json"))
            if points:
                run_id = writer.run_id_for(trial_id, trial.config)
                backfilled += writer.log_points(run_id, points, dedupe=True)
        want = mlflow_status(trial)
        if run is None or run.info.status != want:
            client.set_terminated(writer.run_id_for(trial_id, trial.config), status=want)
    counts.update(journaled=writer.num_replayed, backfilled=backfilled)
    if backfilled:
        logger.info("backfilled %d metric values from Tune's result logs", backfilled)
    return counts
