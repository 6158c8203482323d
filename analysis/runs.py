"""The runs table: load it (CSV, parquet, `mlflow:EXPERIMENT`), check it, and prepare it for the statistics.

The layout is MLflow's export layout (see README): `run_id`, `status`, `params.<name>` (strings, empty where a
conditional hyperparameter is inactive), `metrics.<name>` (floats). Every estimator in `analysis` takes the
`PreparedRuns` made here, so exclusion, binning and conditional handling live in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis._values import INACTIVE, value_sort_key

__all__ = [
    "INACTIVE",
    "PreparedRuns",
    "bin_values",
    "load_curves",
    "load_runs",
    "prepare_runs",
]

logger = logging.getLogger(__name__)


def load_runs(source: str | Path, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """Read a runs table from CSV, parquet or an MLflow experiment (`mlflow:NAME_OR_ID`).

    Params are read as strings (so "0.10" stays "0.10" and empty cells stay empty); metrics as floats.
    """
    text = str(source)
    if text.startswith("mlflow:"):
        return _load_mlflow(text.removeprefix("mlflow:"), tracking_uri)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(
            f"runs table {path} does not exist: pass a CSV/parquet file or mlflow:EXPERIMENT"
        )
    if path.suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    elif path.suffix in (".csv", ".gz", ".txt"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        raise ValueError(f"{path}: unknown format {path.suffix!r}; use .csv or .parquet")
    return _normalise(frame)


def _load_mlflow(experiment: str, tracking_uri: str | None) -> pd.DataFrame:
    try:
        import mlflow
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("reading mlflow:EXPERIMENT needs mlflow: pip install 'agentsweep[sweep]'") from exc
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None and experiment.isdigit():
        exp = client.get_experiment(experiment)
    if exp is None:
        raise ValueError(
            f"no MLflow experiment {experiment!r} at {tracking_uri or mlflow.get_tracking_uri()}"
        )
    frame = mlflow.search_runs([exp.experiment_id], output_format="pandas")
    return _normalise(frame)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    if "run_id" not in frame.columns:
        frame.insert(0, "run_id", [f"run{i}" for i in range(len(frame))])
    if "status" not in frame.columns:
        frame["status"] = "FINISHED"
    for col in frame.columns:
        if col.startswith("params.") or col in ("run_id", "status"):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), INACTIVE).astype(str)
            frame[col] = frame[col].replace({"nan": INACTIVE, "None": INACTIVE})
    return frame


def load_curves(path: str | Path) -> pd.DataFrame:
    """Read a curves table (long format: run_id, step, flops, <metric>...)."""
    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    missing = [c for c in ("run_id", "flops") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"curves table {path} lacks columns {missing}: it needs run_id, step, flops, <metric>"
        )
    frame["run_id"] = frame["run_id"].astype(str)
    return frame


@dataclass
class PreparedRuns:
    """Runs ready for the statistics: finished, finite metric, hyperparameters as strings (binned if needed)."""

    frame: pd.DataFrame
    """(num_runs, ...) analysed runs; hyperparameter columns are strings, "" where inactive."""
    metric: str
    stratum: str | None
    hparams: list[str]
    mode: str
    excluded: dict[str, int] = field(default_factory=dict)
    """Counts of runs left out, by reason."""
    binned: dict[str, list[str]] = field(default_factory=dict)
    """Hyperparameters that were binned, with their bin labels."""

    def cells(self):
        """Yield (stratum, hparam, metric (n,), labels (n,)) over the runs where the hparam is active."""
        for stratum, frame in self.strata():
            y_all = frame[self.metric].to_numpy(dtype=float)
            for h in self.hparams:
                labels = frame[h].to_numpy(dtype=object)
                active = labels != INACTIVE
                if active.any():
                    yield stratum, h, y_all[active], labels[active]

    def strata(self) -> list[tuple[str, pd.DataFrame]]:
        """(label, runs) per stratum; one stratum "all" without a stratum column."""
        if self.stratum is None:
            return [("all", self.frame)]
        keys = sorted(self.frame[self.stratum].unique(), key=value_sort_key)
        return [(k, self.frame[self.frame[self.stratum] == k]) for k in keys]


def bin_values(values: pd.Series, num_bins: int) -> pd.Series:
    """Quantile bins of a numeric hyperparameter; labels name the interval, e.g. "[1e-06, 5e-06]".

    Inactive ("") entries stay inactive.
    """
    active = values != INACTIVE
    numbers = pd.to_numeric(values[active], errors="raise")
    edges = np.unique(np.quantile(numbers, np.linspace(0, 1, num_bins + 1)))
    codes = np.clip(np.searchsorted(edges, numbers, side="right") - 1, 0, len(edges) - 2)
    labels = [f"[{edges[i]:.3g}, {edges[i + 1]:.3g}]" for i in range(len(edges) - 1)]
    out = values.copy()
    out[active] = [labels[c] for c in codes]
    return out


def _is_continuous(values: pd.Series, max_levels: int) -> bool:
    active = values[values != INACTIVE]
    if active.nunique() <= max_levels:
        return False
    return bool(pd.to_numeric(active, errors="coerce").notna().all())


def prepare_runs(
    runs: pd.DataFrame,
    *,
    metric: str,
    stratum: str | None = None,
    hparams: Sequence[str] | None = None,
    mode: str = "max",
    bins: int = 4,
    max_levels: int = 12,
) -> PreparedRuns:
    """Check the table, exclude unusable runs, pick and bin the hyperparameters.

    Args:
        runs: the runs table (see `load_runs`).
        metric: the metric column, e.g. `metrics.heldout_goal_success`.
        stratum: column to stratify by (e.g. `params.sft_checkpoint`), or None.
        hparams: hyperparameter columns; default all `params.*` columns except the stratum. Names without
            the `params.` prefix are accepted.
        mode: "max" if larger metric is better, "min" otherwise.
        bins: number of quantile bins for a continuous hyperparameter.
        max_levels: a numeric hyperparameter with more distinct values than this is treated as continuous.

    Returns:
        PreparedRuns. Raises ValueError naming the column and the fix on bad input.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"--mode {mode!r}: use max or min")
    if metric not in runs.columns:
        alt = [c for c in runs.columns if c.startswith("metrics.")]
        raise ValueError(f"metric column {metric!r} is not in the runs table; metric columns: {alt}")
    stratum = _resolve(runs, stratum) if stratum else None
    if hparams is None:
        hparams = [c for c in runs.columns if c.startswith("params.") and c != stratum]
    else:
        hparams = [_resolve(runs, h) for h in hparams if _resolve(runs, h) != stratum]
    if not hparams:
        raise ValueError("no hyperparameter columns: the table needs params.<name> columns or pass --hparams")
    values = pd.to_numeric(runs[metric].replace("", np.nan), errors="coerce")
    bad = runs[metric].replace("", np.nan).notna() & values.isna()
    if bad.any():
        example = runs.loc[bad, metric].iloc[0]
        raise ValueError(
            f"metric column {metric!r} has non-numeric values (e.g. {example!r}); clean or drop them"
        )
    _require_unique_runs(runs)
    frame = runs.copy()
    frame[metric] = values
    excluded = {}
    not_finished = frame["status"].astype(str).str.upper() != "FINISHED"
    excluded["not_finished"] = int(not_finished.sum())
    frame = frame[~not_finished]
    non_finite = ~np.isfinite(frame[metric].to_numpy(dtype=float))
    excluded["missing_or_nan_metric"] = int(non_finite.sum())
    frame = frame[~non_finite].copy()
    if len(frame) < 2:
        raise ValueError(
            f"only {len(frame)} usable run(s) (finished, finite {metric}); the analysis needs at least 2 "
            f"(excluded: {excluded})"
        )
    binned = {}
    for h in hparams:
        frame[h] = frame[h].astype(str)
        if _is_continuous(frame[h], max_levels):
            frame[h] = bin_values(frame[h], bins)
            binned[h] = sorted(frame[h][frame[h] != INACTIVE].unique(), key=value_sort_key)
    if stratum is not None:
        frame[stratum] = frame[stratum].astype(str)
    return PreparedRuns(frame, metric, stratum, list(hparams), mode, excluded, binned)


def _require_unique_runs(runs: pd.DataFrame) -> None:
    """ValueError naming the repeated run ids: a run counted twice would weigh twice in every estimate."""
    if "run_id" not in runs.columns:
        return
    counts = runs["run_id"].value_counts()
    repeated = counts[counts > 1]
    if len(repeated):
        examples = ", ".join(f"{k!r} x{v}" for k, v in repeated.head(3).items())
        raise ValueError(
            f"column run_id has {len(repeated)} repeated value(s) ({examples}): one row per run; drop the "
            "copies (e.g. runs.drop_duplicates('run_id', keep='last')) or export the table again"
        )


def _resolve(runs: pd.DataFrame, name: str) -> str:
    for candidate in (name, f"params.{name}"):
        if candidate in runs.columns:
            return candidate
    params = [c for c in runs.columns if c.startswith("params.")]
    raise ValueError(f"column {name!r} is not in the runs table; parameter columns: {params}")
