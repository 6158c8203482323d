"""Export a sweep from MLflow to the runs table and the curves table (ARCHITECTURE.md's contract).

Runs table: one row per trial, MLflow's export layout: `run_id`, `status`, `params.<name>` (strings, '' where a
conditional is inactive), `metrics.<name>` and a few `tags.*`. The metrics are those of the checkpoint the study
would select: the best rolling mean (window 3) of held-out goal success, reported raw, at that evaluation (so
`metrics.flops` is the compute to reach it); `metrics.best_step` says which evaluation it was.
Curves table: `run_id, step, flops, <metric>...`, one row per evaluation (the last value wins where a resumed
trial re-reported a step).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["curves_path", "export_sweep", "runs_tables", "select_checkpoint"]

logger = logging.getLogger(__name__)

SELECTION_METRIC = "heldout_goal_success"
SELECTION_WINDOW = 3
_TAGS = ("agentsweep.sweep_id", "agentsweep.trial_id", "agentsweep.seed", "agentsweep.branch_point")


def select_checkpoint(curve: Any, *, metric: str = SELECTION_METRIC, window: int = SELECTION_WINDOW) -> int:
    """Row position of the selected evaluation: argmax of the rolling mean of `metric` (first on ties).

    Args:
        curve: one run's curve (pandas DataFrame sorted by step) with a `metric` column.
    """
    if metric not in curve or curve[metric].isna().all():
        return len(curve) - 1
    rolled = curve[metric].rolling(window, min_periods=1).mean()
    return int(rolled.to_numpy().argmax())


def curves_path(runs_path: str | Path) -> Path:
    """Where the curves table goes beside the runs table: runs.parquet -> runs.curves.parquet."""
    p = Path(runs_path)
    return p.with_name(f"{p.stem}.curves{p.suffix}")


def runs_tables(sweep: str | Path, *, max_workers: int = 8) -> tuple[Any, Any]:
    """(runs, curves) DataFrames of a sweep directory, read from its MLflow store."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from sweep.driver import load_settings
    from sweep.tracking import find_child_runs

    s = load_settings(sweep)
    client = MlflowClient(tracking_uri=s.tracking_uri)
    runs = find_child_runs(client, s.experiment_id, s.sweep_id)
    names = s.search_space.names

    def history(run: Any) -> Any:
        rows: dict[int, dict[str, float]] = {}
        for key in run.data.metrics:
            for m in sorted(
                client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp)
            ):
                rows.setdefault(int(m.step), {})[key] = m.value  # the last logged value of a step wins
        frame = pd.DataFrame.from_dict(rows, orient="index").sort_index()
        frame.index.name = "step"
        frame = frame.reset_index()
        frame.insert(0, "run_id", run.info.run_id)
        return frame

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        curves_list = list(pool.map(history, runs))
    records = []
    for run, curve in zip(runs, curves_list, strict=True):
        rec: dict[str, Any] = {"run_id": run.info.run_id, "status": run.info.status}
        rec.update({f"params.{n}": run.data.params.get(n, "") for n in names})
        if len(curve):
            row = curve.iloc[select_checkpoint(curve)]
            rec.update({f"metrics.{k}": float(v) for k, v in row.items() if k not in ("run_id", "step")})
            rec["metrics.best_step"] = float(row["step"])
            rec["metrics.num_evals"] = float(len(curve))
        rec.update({f"tags.{t}": run.data.tags.get(t, "") for t in _TAGS})
        rec["start_time"] = pd.to_datetime(run.info.start_time, unit="ms", utc=True)
        records.append(rec)
    runs_df = pd.DataFrame.from_records(records)
    curves = (
        pd.concat(curves_list, ignore_index=True) if curves_list else pd.DataFrame(columns=["run_id", "step"])
    )
    if "flops" in curves:
        curves = curves[
            ["run_id", "step", "flops", *[c for c in curves.columns if c not in ("run_id", "step", "flops")]]
        ]
    return runs_df, curves


def export_sweep(sweep: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Write the runs table to `out` (.parquet or .csv) and the curves table beside it; returns both paths."""
    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"export to {out}: use a .parquet or .csv file name")
    runs, curves = runs_tables(sweep)
    out.parent.mkdir(parents=True, exist_ok=True)
    cpath = curves_path(out)
    if out.suffix == ".parquet":
        runs.to_parquet(out, index=False)
        curves.to_parquet(cpath, index=False)
    else:
        runs.to_csv(out, index=False)
        curves.to_csv(cpath, index=False)
    logger.info("exported %d runs to %s and %d curve points to %s", len(runs), out, len(curves), cpath)
    return out, cpath
