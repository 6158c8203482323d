"""MLflow for sweeps: one parent run per sweep, one NESTED child run per Ray Tune trial, secrets kept out.

Ray Tune's `MLflowLoggerCallback` makes flat runs (ray #19978), so `TrialRunLogger` is our own Tune callback. It
runs in the driver, keys child runs by the Tune trial id (tag `agentsweep.trial_id`) and reuses an existing one,
so a resumed driver never duplicates a run. Metrics are logged against the trainer's `step`; `flops` and
`rl_flops` are logged at the same steps, so every curve can be drawn against cumulative FLOPs (the MLflow UI
can put a metric on the x axis; `agentsweep export` writes the `run_id, step, flops, <metric>` table).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback

__all__ = [
    "REDACTED",
    "TAG_SWEEP",
    "TAG_TRIAL",
    "TUNE_RESULT_KEYS",
    "TrialRunLogger",
    "checkpoint_sqlite_store",
    "default_tracking_uri",
    "find_child_runs",
    "get_or_create_experiment",
    "git_commit",
    "is_secret_name",
    "prepare_sqlite_store",
    "redact",
    "secret_values",
    "trial_seed",
]

logger = logging.getLogger(__name__)

TAG_SWEEP = "agentsweep.sweep_id"
TAG_TRIAL = "agentsweep.trial_id"
TAG_ROLE = "agentsweep.role"
REDACTED = "<redacted>"
_SECRET_NAME = re.compile(
    r"(PWD|PASSW|SECRET|API_?KEY|ACCESS_?KEY|CREDENTIAL|PRIVATE_?KEY|(^|_)TOKEN$)", re.IGNORECASE
)  # `max_new_tokens` and `tokens` are not secrets; HF_TOKEN is
TUNE_RESULT_KEYS = frozenset(
    {
        "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "node_ip", "date",
        "hostname", "trial_id", "experiment_tag", "done", "iterations_since_restore", "time_since_restore",
        "checkpoint_dir_name", "config", "should_checkpoint", "episodes_total", "timesteps_total",
        "timesteps_since_restore", "episodes_this_iter", "timesteps_this_iter", "step",
    }
)  # fmt: skip
"""Keys Ray Tune adds to every result; not metrics of the run (`step` is the x axis)."""
_MAX_METRICS_PER_BATCH = 1000  # MLflow's limit on metrics in one log_batch call


# --------------------------------------------------------------------------- secrets


def is_secret_name(name: str) -> bool:
    """Whether a key or variable name looks like it holds a secret (PWD, PASSWORD, TOKEN, API_KEY, SECRET...)."""
    if name.lower().endswith("_env"):  # names the variable that holds a secret (TeacherConfig.api_key_env)
        return False
    return bool(_SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose name looks secret (SNOW_INSTANCE_PWD, *_API_KEY, *TOKEN, ...)."""
    environ = os.environ if environ is None else environ
    return sorted(
        {v for k, v in environ.items() if _SECRET_NAME.search(k) and len(v) >= 4}, key=len, reverse=True
    )


def redact(obj: Any, *, secrets: Iterable[str] | None = None) -> Any:
    """A copy of `obj` (dicts, lists, strings) with secret-named keys and known secret values replaced.

    Args:
        obj: plain data (JSON-like).
        secrets: literal values to scrub from strings; default: `secret_values()` of the environment.
    """
    secrets = list(secret_values() if secrets is None else secrets)
    if isinstance(obj, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_name(k) else redact(v, secrets=secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v, secrets=secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, REDACTED)
        return obj
    return obj


# --------------------------------------------------------------------------- MLflow plumbing


def default_tracking_uri(root: str | Path) -> str:
    """The embedded default: a sqlite store `mlruns.db` under `root`."""
    return f"sqlite:///{Path(root).resolve() / 'mlruns.db'}"


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (None for other stores and in-memory sqlite)."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(tracking_uri).database
    return Path(database) if database and database != ":memory:" else None


def prepare_sqlite_store(tracking_uri: str) -> None:
    """Create a new sqlite store file in WAL mode before MLflow builds its schema in it.

    In sqlite's default rollback-journal mode every commit costs several fsyncs: MLflow's ~50 schema
    migrations then take ~6 s and each later write 10-25 ms of waiting (benchmarks/RESULTS.md, sweep). In WAL
    mode a commit appends to `mlruns.db-wal` (store created in ~0.9 s, ~3 ms a write), a SIGKILL still loses no
    committed write, and readers (`agentsweep ui`, `status`) no longer block the sweep's writer. WAL is a
    property of the file, so every later client uses it; it needs a local disk (not NFS), as the default store
    under the output directory is. An existing file and non-sqlite stores are left as they are.
    """
    path = _sqlite_file(tracking_uri)
    if path is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("PRAGMA journal_mode=WAL")


def checkpoint_sqlite_store(tracking_uri: str) -> None:
    """Fold a WAL-mode sqlite store's `-wal` file back into the database file (so the file alone is complete)."""
    path = _sqlite_file(tracking_uri)
    if path is None or not path.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=20)) as con:
            if con.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:  # a busy reader: the WAL is folded in later by sqlite itself
        logger.info("sqlite WAL checkpoint of %s skipped: %s", path, exc)


def git_commit(cwd: str | Path | None = None) -> str:
    """The current git commit of the code (or 'unknown' outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def get_or_create_experiment(client: Any, name: str, *, artifact_root: str | Path | None = None) -> str:
    """Experiment id by name, creating it (artifacts under `artifact_root` for a local store)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = Path(artifact_root).resolve().as_uri() if artifact_root is not None else None
    return client.create_experiment(name, artifact_location=location)


def find_child_runs(client: Any, experiment_id: str, sweep_id: str) -> list[Any]:
    """All live child runs of a sweep (every page)."""
    runs, token = [], None
    query = f"tags.`{TAG_SWEEP}` = '{sweep_id}' and tags.`{TAG_ROLE}` = 'trial'"
    while True:
        page = client.search_runs([experiment_id], query, max_results=5000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in result.items():
        if k in TUNE_RESULT_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


class TrialRunLogger(Callback):
    """A Ray Tune callback: one nested MLflow child run per trial under the sweep's parent run.

    MLflow calls run on one background thread, in event order, so a slow store never stalls Tune's event loop;
    `flush()` (called at the experiment's end) waits for them. Child runs are keyed by trial id: existing ones
    (a resumed driver, a retried trial) are reused. Picklable (Tune stores callbacks with the experiment); the
    client and thread are created lazily in the driver.

    Args:
        tracking_uri: MLflow tracking URI (sqlite:///..., http://...).
        experiment_id: the sweep's experiment.
        parent_run_id: the sweep's parent run.
        sweep_id: tag value that groups the sweep's runs.
        space: the sweep's `SearchSpace` (resolves inactive conditionals to '' in params).
        tags: extra tags for every child run (git commit, ...).
        base_seed: the sweep seed; a trial's seed is `trial_seed(base_seed, trial_id)` (tagged).
        branch_points: branch-point value (as a param string) -> branch point path, for the tag.
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
    ):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.space = space
        self.tags = dict(tags)
        self.base_seed = base_seed
        self.branch_points = dict(branch_points)
        self._reset()

    def _reset(self) -> None:
        self._client = None
        self._runs: dict[str, str] | None = None  # trial id -> run id, loaded once from the store
        self._attempts: dict[str, int] = {}
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for k in ("_client", "_runs", "_attempts", "_queue", "_thread"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # ---- the writer thread
    def _submit(self, fn: Any, trial_id: str, *args: Any) -> None:
        if self._thread is None:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._work, name="agentsweep-mlflow", daemon=True)
            self._thread.start()
        self._queue.put((fn, trial_id, args))

    def _work(self) -> None:
        """Write queued events in order; the results queued together for one trial go out in one `log_batch`."""
        while True:
            events = [self._queue.get()]
            while not self._queue.empty():
                events.append(self._queue.get_nowait())
            pending: dict[str, tuple[dict, list[dict]]] = {}  # trial id -> (config, results not yet logged)
            for fn, trial_id, args in events:
                if fn == self._result:
                    pending.setdefault(trial_id, (args[0], []))[1].append(args[1])
                    continue
                if trial_id in pending:  # a trial's results go before its next event (its end)
                    self._call(self._results, trial_id, *pending.pop(trial_id))
                self._call(fn, trial_id, *args)
            for trial_id, (config, results) in pending.items():
                self._call(self._results, trial_id, config, results)
            for _ in events:
                self._queue.task_done()

    @staticmethod
    def _call(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a logging failure must not kill the sweep; resume reconciles
            logger.exception("MLflow logging failed in %s", getattr(fn, "__name__", fn))

    def flush(self) -> None:
        """Wait until every queued MLflow call is done."""
        if self._queue is not None:
            self._queue.join()

    # ---- child runs (writer thread)
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

        from sweep.space import param_to_str

        params = self.space.resolve({k: v for k, v in config.items() if k in self.space.names})
        bp = param_to_str(params.get("sft_checkpoint"))
        tags = {
            **self.tags,
            "mlflow.parentRunId": self.parent_run_id,
            "mlflow.runName": trial_id,
            TAG_SWEEP: self.sweep_id,
            TAG_TRIAL: trial_id,
            TAG_ROLE: "trial",
            "agentsweep.seed": str(trial_seed(self.base_seed, trial_id)),
            "agentsweep.branch_point": bp,
            "agentsweep.branch_point_path": self.branch_points.get(bp, ""),
        }
        run = self.client.create_run(self.experiment_id, tags=redact(tags), run_name=trial_id)
        run_id = run.info.run_id
        str_params = redact({k: param_to_str(v) for k, v in params.items()})
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in str_params.items()])
        self.client.log_text(run_id, json.dumps(redact(dict(params)), indent=1, default=str), "config.json")
        self._runs[trial_id] = run_id
        return run_id, True

    def _start(self, trial_id: str, config: dict) -> None:
        run_id, created = self._run_for(trial_id, config)
        if not created:  # a new run starts RUNNING; a resumed or retried one is set back to it
            self.client.set_terminated(run_id, status="RUNNING")

    def _results(self, trial_id: str, config: dict, results: list[dict]) -> None:
        self.log_results(self.run_id_for(trial_id, config), results)

    def log_result(self, run_id: str, result: Mapping[str, Any]) -> None:
        """Log one Tune result's metrics at its `step` (Tune's iteration when the objective gave none)."""
        self.log_results(run_id, [result])

    def log_results(self, run_id: str, results: Iterable[Mapping[str, Any]]) -> None:
        """Log Tune results' metrics, each at its `step`, in as few `log_batch` calls as MLflow allows."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for result in results:
            step = int(result.get("step", result.get("training_iteration", 0)))
            metrics += [Metric(k, v, now, step) for k, v in _metrics_of(result).items()]
        for i in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + _MAX_METRICS_PER_BATCH])

    def _result(self, trial_id: str, config: dict, result: dict) -> None:
        self._results(trial_id, config, [result])

    def _retry(self, trial_id: str, config: dict, attempts: int) -> None:
        self.client.set_tag(self.run_id_for(trial_id, config), "agentsweep.retries", str(attempts))

    def _end(self, trial_id: str, config: dict, path: str | None, status: str, error: str) -> None:
        run_id = self.run_id_for(trial_id, config)
        if error:
            self.client.set_tag(run_id, "agentsweep.error", redact(error)[-4000:])
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
        self._submit(self._start, trial.trial_id, dict(trial.config))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info) -> None:
        self._submit(self._result, trial.trial_id, dict(trial.config), dict(result))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._submit(self._retry, trial.trial_id, dict(trial.config), self._attempts.get(trial.trial_id, 1))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._submit(self._end, trial.trial_id, dict(trial.config), _trial_path(trial), "FINISHED", "")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        error = ""
        try:  # Tune writes the error to the driver-side file before this hook; storage gets it later
            if trial.error_file and Path(trial.error_file).is_file():
                error = Path(trial.error_file).read_text(errors="replace")
        except Exception as exc:  # noqa: BLE001 (no local error file: say so instead of failing)
            error = f"(error file unreadable: {exc})"
        self._submit(self._end, trial.trial_id, dict(trial.config), _trial_path(trial), "FAILED", error)

    def on_experiment_end(self, trials: list, **info) -> None:
        self.flush()


def _trial_path(trial: Any) -> str | None:
    try:
        return str(trial.path)
    except Exception:  # noqa: BLE001 (no storage context yet)
        return None


def trial_seed(base_seed: int, trial_id: str) -> int:
    """A trial's seed: a stable function of the sweep seed and the trial id (32 bits)."""
    import hashlib

    return int(hashlib.sha256(f"{base_seed}:{trial_id}".encode()).hexdigest()[:8], 16)
