"""MLflow for sweeps: the store, its reachability, the sweep's parent run and its status.

A sweep has one parent run and one NESTED child run per Ray Tune trial (tag `agentsweep.trial_id`), written by
`sweep.trial_logger.TrialRunLogger` and made to agree with Tune's state by `sweep.reconcile`. Metrics are logged
against the trainer's `step`; `flops` and `rl_flops` are logged at the same steps, so every curve can be drawn
against cumulative FLOPs (`agentsweep export` writes the `run_id, step, flops, <metric>` table).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "SUGGESTION_INDEX",
    "TAG_BRANCH_POINT",
    "TAG_ROLE",
    "TAG_SEED",
    "TAG_SUGGESTION",
    "TAG_SWEEP",
    "TAG_TRIAL",
    "TrackingUnreachable",
    "checkpoint_sqlite_store",
    "default_tracking_uri",
    "ensure_reachable",
    "find_child_runs",
    "get_or_create_experiment",
    "git_commit",
    "open_parent_run",
    "prepare_sqlite_store",
    "seed_of_trial",
    "sweep_status",
    "trial_seed",
]

logger = logging.getLogger(__name__)

TAG_SWEEP = "agentsweep.sweep_id"
TAG_TRIAL = "agentsweep.trial_id"
TAG_ROLE = "agentsweep.role"
TAG_SEED = "agentsweep.seed"
TAG_SUGGESTION = "agentsweep.suggestion"
TAG_BRANCH_POINT = "agentsweep.branch_point"
TAG_GIT_COMMIT = "agentsweep.git_commit"
_SQL_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}


class TrackingUnreachable(ConnectionError):
    """The MLflow tracking server (or SQL store) named by a tracking URI does not answer."""


def ensure_reachable(tracking_uri: str, *, timeout_s: float = 5.0) -> None:
    """Check that the store behind `tracking_uri` answers, within about `timeout_s` (MLflow's own client would
    retry for minutes). sqlite and file stores: nothing to check.

    http(s): any HTTP answer from `<uri>/health` counts (401 too: the server is there); SQL stores
    (postgresql://, mysql://, mssql://): a TCP connection to the host's port.

    Raises:
        TrackingUnreachable: the message names the URI (password redacted) and what to do.
    """
    from sweep.secrets import redact_uri

    parsed = urllib.parse.urlsplit(tracking_uri)
    scheme = parsed.scheme.split("+")[0].lower()
    if scheme in ("http", "https"):
        probe = _http_probe
    elif scheme in _SQL_PORTS:
        probe = _tcp_probe
    else:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        reason = probe(tracking_uri, max(0.5, min(5.0, deadline - time.monotonic())))
        if reason is None:
            return
        if time.monotonic() + 1.0 >= deadline:
            break
        time.sleep(1.0)
    raise TrackingUnreachable(
        f"MLflow tracking store {redact_uri(tracking_uri)} is not reachable ({reason}; tried for "
        f"{timeout_s:.0f} s): start it (e.g. `mlflow server --host 127.0.0.1 --port "
        f"{parsed.port or 5000} --backend-store-uri sqlite:///mlflow.db`) or pass the right --tracking-uri"
    )


def _http_probe(uri: str, timeout_s: float) -> str | None:
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.hostname or ""
    netloc = f"[{netloc}]" if ":" in netloc else netloc
    netloc += f":{parts.port}" if parts.port else ""
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return None
    except urllib.error.HTTPError:  # the server answered
        return None
    except (OSError, ValueError) as exc:
        return _reason(exc)


def _tcp_probe(uri: str, timeout_s: float) -> str | None:
    parts = urllib.parse.urlsplit(uri)
    port = parts.port or _SQL_PORTS[parts.scheme.split("+")[0].lower()]
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout_s):
            return None
    except OSError as exc:
        return _reason(exc)


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner if isinstance(inner, BaseException) else exc) or type(exc).__name__


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


SUGGESTION_INDEX = "agentsweep_suggestion"
"""Config key the searcher adds to every suggestion (`sweep.search.IndexedSearcher`): its 0-based index in the
order the searcher produced them. It travels in the trial's config, which Tune keeps with the trial, so a resumed
or retried trial keeps it; it is no parameter of the space (not logged as a param)."""


def trial_seed(base_seed: int, suggestion_index: int) -> int:
    """A trial's seed: a stable function of the sweep seed and the trial's suggestion index (32 bits), so two
    sweeps with the same seed give their n-th trials the same seed (Ray's trial ids are random)."""
    return _hash32(f"{base_seed}:suggestion:{int(suggestion_index)}")


def _hash32(key: str) -> int:
    """The first 32 bits of the key's SHA-256: the seed rule of `trial_seed` and `seed_of_trial`."""
    import hashlib

    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def seed_of_trial(base_seed: int, config: Mapping[str, Any], trial_id: str) -> int:
    """The seed of the trial with this Tune config: `trial_seed(base_seed, config[SUGGESTION_INDEX])`. A trial of
    a sweep started before suggestion indices existed has none: it keeps the seed it had, the hash of its trial id."""
    index = config.get(SUGGESTION_INDEX)
    if index is None:
        return _hash32(f"{base_seed}:{trial_id}")
    return trial_seed(base_seed, int(index))


def open_parent_run(s: Any, out_dir: Path) -> Any:
    """Create the sweep's parent run (summary params, space and options as artifacts, secrets redacted);
    returns the settings with its experiment and run ids."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from sweep.secrets import redact
    from sweep.space import param_to_str

    prepare_sqlite_store(s.tracking_uri)
    client = MlflowClient(tracking_uri=s.tracking_uri)
    local = s.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in s.tracking_uri
    experiment_id = get_or_create_experiment(
        client, s.experiment, artifact_root=out_dir / "mlartifacts" if local else None
    )
    tags = {
        TAG_SWEEP: s.sweep_id,
        TAG_ROLE: "sweep",
        TAG_GIT_COMMIT: git_commit(),
        TAG_SEED: str(s.seed),
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


def sweep_status(sweep: str | Path) -> dict[str, Any]:
    """Trials by state, FLOPs spent, best so far (from MLflow, so it works while the sweep runs)."""
    from sweep.secrets import redact_uri
    from sweep.settings import load_settings

    s = load_settings(sweep)
    ensure_reachable(s.tracking_uri)
    from mlflow.tracking import MlflowClient

    from sweep.objectives import rl_flops_of

    client = MlflowClient(tracking_uri=s.tracking_uri)
    runs = find_child_runs(client, s.experiment_id, s.sweep_id)
    space = s.search_space
    by_state: dict[str, int] = {}
    spent = s.base_flops
    best = None
    for run in runs:
        by_state[run.info.status] = by_state.get(run.info.status, 0) + 1
        m = run.data.metrics
        spent += rl_flops_of(m)
        value = m.get(space.metric)
        if value is not None and (
            best is None or (value > best[0] if space.mode == "max" else value < best[0])
        ):
            best = (value, run.data.tags.get(TAG_TRIAL), dict(run.data.params))
    parent = client.get_run(s.parent_run_id)
    return {
        "sweep_id": s.sweep_id,
        "sweep_dir": s.sweep_dir,
        "tracking_uri": redact_uri(s.tracking_uri),
        "parent_status": parent.info.status,
        "planned_trials": s.planned_trials,
        "budget_flops": s.budget_flops,
        "trials_by_state": dict(sorted(by_state.items())),
        "flops_spent": spent,
        "metric": space.metric,
        "best": None if best is None else {"value": best[0], "trial_id": best[1], "params": best[2]},
    }
