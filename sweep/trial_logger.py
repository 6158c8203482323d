"""`TrialRunLogger`: a Ray Tune callback writing one nested MLflow child run per trial, with a journal.

Ray Tune's `MLflowLoggerCallback` makes flat runs (ray #19978), so this is our own callback. It runs in the
driver, keys child runs by the Tune trial id (tag `agentsweep.trial_id`) and reuses an existing one, so a resumed
driver never duplicates a run. MLflow calls run on one background thread, in event order.

A write the tracking store refuses (the server is down, the network is gone) is not dropped: it is appended to
the sweep's journal (`<sweep_dir>/mlflow_journal.jsonl`), and every later write waits behind it so the order
holds. The journal is sent again at most every `RETRY_S` seconds while the sweep runs, at the end of the fit and
at `resume`; metrics are sent only for the (key, step) pairs the run does not have yet, so a write that reached
the server before its answer was lost is not logged twice. Live results are checked the same way against what
the run holds (read from the store once per run and key, then kept): a trial restarted from an earlier checkpoint
after a resume or a retry reports its steps again, and each (key, step) stays logged once, with its first value.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback

from sweep.secrets import redact, redact_uri, resolve_uri, secret_values
from sweep.tracking import (
    SUGGESTION_INDEX,
    TAG_BRANCH_POINT,
    TAG_ROLE,
    TAG_SEED,
    TAG_SUGGESTION,
    TAG_SWEEP,
    TAG_TRIAL,
    find_child_runs,
    seed_of_trial,
)

__all__ = ["RETRY_S", "TUNE_RESULT_KEYS", "TrialRunLogger", "metrics_of", "result_points"]

logger = logging.getLogger(__name__)

RETRY_S = 5.0
"""While the journal holds writes, try to send it at most this often."""
TUNE_RESULT_KEYS = frozenset(
    {
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "timestamp",
        "pid",
        "node_ip",
        "date",
        "hostname",
        "trial_id",
        "experiment_tag",
        "done",
        "iterations_since_restore",
        "time_since_restore",
        "checkpoint_dir_name",
        "config",
        "should_checkpoint",
        "episodes_total",
        "timesteps_total",
        "timesteps_since_restore",
        "episodes_this_iter",
        "timesteps_this_iter",
        "step",
    }
)
"""Keys Ray Tune adds to every result; not metrics of the run (`step` is the x axis)."""
_MAX_METRICS_PER_BATCH = 1000  # MLflow's limit on metrics in one log_batch call

Point = tuple[int, dict[str, float]]
"""One result as logged: (step, metric name -> value)."""


def metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric metrics of one Tune result (Tune's own keys left out)."""
    out = {}
    for k, v in result.items():
        if k in TUNE_RESULT_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


def result_points(results: Iterable[Mapping[str, Any]]) -> list[Point]:
    """Tune results -> (step, metrics): `step` as reported, else Tune's iteration."""
    return [(int(r.get("step", r.get("training_iteration", 0))), metrics_of(r)) for r in results]


class TrialRunLogger(Callback):
    """A Ray Tune callback: one nested MLflow child run per trial under the sweep's parent run.

    `flush()` (called at the experiment's end) waits for the queued writes. Picklable (Tune stores callbacks
    with the experiment): the pickle holds the tracking URI without its password, and the client, thread and
    caches are created lazily in the driver.

    Args:
        tracking_uri: MLflow tracking URI (sqlite:///..., http://...).
        experiment_id: the sweep's experiment.
        parent_run_id: the sweep's parent run.
        sweep_id: tag value that groups the sweep's runs.
        space: the sweep's `SearchSpace` (resolves inactive conditionals to '' in params).
        tags: extra tags for every child run (git commit, ...).
        base_seed: the sweep seed; a trial's seed is `seed_of_trial(base_seed, config, trial_id)`, a function of
            the sweep seed and the trial's suggestion index (both tagged).
        branch_points: branch-point value (as a param string) -> branch point path, for the tag.
        journal_path: the JSONL file of writes not yet accepted by the store.
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        sweep_id: str,
        space: Any,
        tags: Mapping[str, str],
        base_seed: int,
        branch_points: Mapping[str, str],
        journal_path: str | Path,
    ):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.space = space
        self.tags = dict(tags)
        self.base_seed = base_seed
        self.branch_points = dict(branch_points)
        self.journal_path = str(journal_path)
        self._reset()

    def _reset(self) -> None:
        self._client = None
        self._runs: dict[str, str] | None = None  # trial id -> run id, loaded once from the store
        self._attempts: dict[str, int] = {}
        self._logged: dict[str, dict[str, set[int]]] = {}  # run id -> key -> steps the run holds
        self._created: set[str] = set()  # runs this logger created: they held no metrics before its writes
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._next_retry = 0.0
        self.num_journaled = 0
        self.num_replayed = 0

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_") and not k.startswith("num_")}
        state["tracking_uri"] = redact_uri(self.tracking_uri)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.tracking_uri = resolve_uri(self.tracking_uri)
        self._reset()

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # ---- the writer thread
    def _submit(self, op: str, trial_id: str, *args: Any) -> None:
        if self._thread is None:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._work, name="agentsweep-mlflow", daemon=True)
            self._thread.start()
        self._queue.put((op, trial_id, list(args)))

    def _work(self) -> None:
        """Write queued events in order; the results queued together for one trial go out in one `log_batch`."""
        while True:
            events = [self._queue.get()]
            while not self._queue.empty():
                events.append(self._queue.get_nowait())
            pending: dict[str, tuple[dict, list]] = {}  # trial id -> (config, points not yet logged)
            for op, trial_id, args in events:
                if op == "results":
                    pending.setdefault(trial_id, (args[0], []))[1].extend(args[1])
                    continue
                if trial_id in pending:  # a trial's results go before its next event (its end)
                    self._write("results", trial_id, list(pending.pop(trial_id)))
                self._write(op, trial_id, args)
            for trial_id, (config, points) in pending.items():
                self._write("results", trial_id, [config, points])
            for _ in events:
                self._queue.task_done()

    def _write(self, op: str, trial_id: str, args: list) -> None:
        """Send one write, or journal it (behind earlier journaled writes, so the order holds)."""
        if os.path.exists(self.journal_path) and not self._retry_journal():
            self._journal(op, trial_id, args)
            return
        try:
            getattr(self, f"_op_{op}")(trial_id, *args)
        except Exception as exc:  # noqa: BLE001 (a store that fails must not kill the sweep)
            logger.warning(
                "MLflow write (%s of trial %s) failed: %s; kept in %s and sent when %s answers",
                op,
                trial_id,
                redact(str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__),
                self.journal_path,
                redact_uri(self.tracking_uri),
            )
            self._journal(op, trial_id, args)

    def _journal(self, op: str, trial_id: str, args: list) -> None:
        with open(self.journal_path, "a") as f:
            f.write(json.dumps({"op": op, "trial_id": trial_id, "args": args}, default=str) + "\n")
        self.num_journaled += 1

    def _retry_journal(self) -> bool:
        """Send the journal when `RETRY_S` has passed since the last try; True when it is empty now."""
        if time.monotonic() < self._next_retry:
            return False
        self._next_retry = time.monotonic() + RETRY_S
        return self.replay_journal() == 0

    def replay_journal(self) -> int:
        """Send the journaled writes in order until one fails; returns how many are left (0: journal removed)."""
        path = Path(self.journal_path)
        if not path.exists():
            return 0
        entries = []
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a kill mid-write: its write is backfilled from Tune
                logger.warning("skipping a torn line in %s", path)
        self._runs = None  # a run created just before a failure may exist: look again
        done = 0
        for e in entries:
            try:
                getattr(self, f"_op_{e['op']}")(e["trial_id"], *e["args"], dedupe=True)
            except Exception as exc:  # noqa: BLE001 (still down: keep the rest)
                logger.info(
                    "MLflow journal: %d of %d writes sent, the rest wait (%s)", done, len(entries), exc
                )
                break
            done += 1
        self.num_replayed += done
        left = entries[done:]
        if left:
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(e, default=str) + "\n" for e in left))
            os.replace(tmp, path)
        else:
            path.unlink()
        return len(left)

    def flush(self) -> None:
        """Wait until every queued MLflow call is done (sent or journaled)."""
        if self._queue is not None:
            self._queue.join()

    # ---- child runs
    def run_id_for(self, trial_id: str, config: Mapping[str, Any]) -> str:
        """The child run of a trial: the existing one (resume, retry) or a new one with params and tags."""
        return self._run_for(trial_id, config)[0]

    def _run_for(self, trial_id: str, config: Mapping[str, Any]) -> tuple[str, bool]:
        """(run id, whether this call created it)."""
        if self._runs is None:
            self._runs = {
                r.data.tags[TAG_TRIAL]: r.info.run_id
                for r in find_child_runs(self.client, self.experiment_id, self.sweep_id)
            }
        if trial_id in self._runs:
            return self._runs[trial_id], False
        from mlflow.entities import Param

        from sweep.space import BRANCH_POINT, param_to_str

        params = self.space.resolve({k: v for k, v in config.items() if k in self.space.names})
        bp = param_to_str(params.get(BRANCH_POINT))
        tags = {
            **self.tags,
            "mlflow.parentRunId": self.parent_run_id,
            "mlflow.runName": trial_id,
            TAG_SWEEP: self.sweep_id,
            TAG_TRIAL: trial_id,
            TAG_ROLE: "trial",
            TAG_SEED: str(seed_of_trial(self.base_seed, config, trial_id)),
            TAG_SUGGESTION: str(config.get(SUGGESTION_INDEX, "")),
            TAG_BRANCH_POINT: bp,
            "agentsweep.branch_point_path": self.branch_points.get(bp, ""),
        }
        run = self.client.create_run(self.experiment_id, tags=redact(tags), run_name=trial_id)
        run_id = run.info.run_id
        str_params = redact({k: param_to_str(v) for k, v in params.items()})
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in str_params.items()])
        self.client.log_text(run_id, json.dumps(redact(dict(params)), indent=1, default=str), "config.json")
        self._runs[trial_id] = run_id
        self._created.add(run_id)
        return run_id, True

    def log_points(self, run_id: str, points: Iterable[Point], *, dedupe: bool = False) -> int:
        """Log metrics at their steps in as few `log_batch` calls as MLflow allows, only the (key, step) pairs
        the run does not hold yet. What a run holds is read from the store once per key (never for a run this
        logger created) and then kept; `dedupe` reads it again (a write whose answer was lost may have landed).
        Returns how many metric values were sent."""
        from mlflow.entities import Metric

        points = list(points)
        have = self._logged.setdefault(run_id, {})
        known_empty = run_id in self._created and not dedupe
        for key in sorted({k for _, metrics in points for k in metrics}):
            if key not in have or dedupe:
                have[key] = (
                    set() if known_empty else {m.step for m in self.client.get_metric_history(run_id, key)}
                )
        now = int(time.time() * 1000)
        metrics = []
        for step, values in points:
            for k, v in values.items():
                if step not in have[k]:
                    have[k].add(step)
                    metrics.append(Metric(k, v, now, step))
        try:
            for i in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
                self.client.log_batch(run_id, metrics=metrics[i : i + _MAX_METRICS_PER_BATCH])
        except Exception:
            self._logged.pop(run_id, None)  # unknown what landed: read the run again next time
            self._created.discard(run_id)
            raise
        return len(metrics)

    # ---- the writes (one method per journal op)
    def _op_start(self, trial_id: str, config: dict, *, dedupe: bool = False) -> None:
        run_id, created = self._run_for(trial_id, config)
        if not created:  # a new run starts RUNNING; a resumed or retried one is set back to it
            self.client.set_terminated(run_id, status="RUNNING")

    def _op_results(self, trial_id: str, config: dict, points: list, *, dedupe: bool = False) -> None:
        self.log_points(self.run_id_for(trial_id, config), [(int(s), m) for s, m in points], dedupe=dedupe)

    def _op_retry(self, trial_id: str, config: dict, attempts: int, *, dedupe: bool = False) -> None:
        self.client.set_tag(self.run_id_for(trial_id, config), "agentsweep.retries", str(attempts))

    def _op_end(
        self, trial_id: str, config: dict, path: str | None, status: str, error: str, *, dedupe: bool = False
    ) -> None:
        run_id = self.run_id_for(trial_id, config)
        if error:
            self.client.set_tag(run_id, "agentsweep.error", error[-4000:])
        samples = Path(path) / "samples" if path else None
        if samples is not None and samples.is_dir():  # a sample of trajectories, secrets scrubbed
            secrets = secret_values()
            for f in sorted(samples.iterdir()):
                if f.is_file():
                    text = redact(f.read_text(errors="replace"), secrets=secrets)
                    self.client.log_text(run_id, text, f"samples/{f.name}")
        self.client.set_terminated(run_id, status=status)

    # ---- Ray Tune callback hooks (driver's event loop: copy what is needed, queue the MLflow work)
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._attempts[trial.trial_id] = self._attempts.get(trial.trial_id, 0) + 1
        self._submit("start", trial.trial_id, dict(trial.config))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info) -> None:
        self._submit("results", trial.trial_id, dict(trial.config), result_points([result]))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._submit("retry", trial.trial_id, dict(trial.config), self._attempts.get(trial.trial_id, 1))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._submit("end", trial.trial_id, dict(trial.config), _trial_path(trial), "FINISHED", "")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        error = ""
        try:  # Tune writes the error to the driver-side file before this hook; storage gets it later
            if trial.error_file and Path(trial.error_file).is_file():
                error = Path(trial.error_file).read_text(errors="replace")
        except Exception as exc:  # noqa: BLE001 (no local error file: say so instead of failing)
            error = f"(error file unreadable: {exc})"
        self._submit("end", trial.trial_id, dict(trial.config), _trial_path(trial), "FAILED", redact(error))

    def on_experiment_end(self, trials: list, **info) -> None:
        self.flush()


def _trial_path(trial: Any) -> str | None:
    try:
        return str(trial.path)
    except Exception:  # noqa: BLE001 (no storage context yet)
        return None
