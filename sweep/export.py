"""Export a sweep from MLflow to the runs table and the curves table (ARCHITECTURE.md's contract).

Runs table: one row per trial, MLflow's export layout: `run_id`, `status`, `params.<name>` (strings, '' where a
conditional is inactive), `metrics.<name>` and a few `tags.*`. The metrics are those of the checkpoint the study
would select (`analysis.selection.select_checkpoint`: the best rolling mean of held-out goal success), raw, at
that evaluation (so `metrics.flops` is the compute to reach it); `metrics.best_step` says which evaluation it was.
Curves table: `run_id, step, flops, <metric>...`, one row per evaluation (the last value wins where a resumed
trial re-reported a step).

Arms (`sweep.arms`): every trial's row has `params.arm` (`rl` from the base student, `sft+rl` from an SFT branch
point); with SFT branch points (unless `sft_arm=False`, `agentsweep export --no-sft-arm`) both tables also hold
the SFT-only arm as a pseudo-run of its own (`run_id` `sft:<hash>`, `params.arm` = `sft`), whose curve is the
branch points' step-0 evaluations, so `agentsweep report --arm params.arm --baseline sft` compares the three.
`study_flops` sums the compute behind the two tables.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from analysis.selection import CHECKPOINT_METRIC, select_checkpoint
from sweep.space import BRANCH_POINT
from sweep.tracking import TAG_BRANCH_POINT, TAG_SEED, TAG_SUGGESTION, TAG_SWEEP, TAG_TRIAL

__all__ = ["curves_path", "export_sweep", "runs_tables", "study_flops"]

logger = logging.getLogger(__name__)

_TAGS = (TAG_SWEEP, TAG_TRIAL, TAG_SEED, TAG_SUGGESTION, TAG_BRANCH_POINT)


def _selected_row(curve: Any) -> int:
    """Row position of the study's checkpoint in one run's curve (`analysis.selection.select_checkpoint`)."""
    if CHECKPOINT_METRIC not in curve:
        return len(curve) - 1
    return select_checkpoint(curve[CHECKPOINT_METRIC].to_numpy(dtype=float))


def curves_path(runs_path: str | Path) -> Path:
    """Where the curves table goes beside the runs table: runs.parquet -> runs.curves.parquet."""
    p = Path(runs_path)
    return p.with_name(f"{p.stem}.curves{p.suffix}")


def runs_tables(sweep: str | Path, *, max_workers: int = 8, sft_arm: bool = True) -> tuple[Any, Any]:
    """(runs, curves) DataFrames of a sweep directory, read from its MLflow store; with `sft_arm` and SFT branch
    points, the SFT-only arm's pseudo-run is added to both (`sweep.arms.sft_arm_tables`)."""
    from sweep.arms import ARM_COLUMN, arm_of, has_sft_branch_points, sft_arm_tables
    from sweep.settings import load_settings
    from sweep.tracking import ensure_reachable, find_child_runs

    s = load_settings(sweep)
    ensure_reachable(s.tracking_uri)
    import pandas as pd
    from mlflow.tracking import MlflowClient

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
        rec[ARM_COLUMN] = arm_of(run.data.params.get(BRANCH_POINT))
        if len(curve):
            row = curve.iloc[_selected_row(curve)]
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
    if sft_arm and has_sft_branch_points(s.branch_points) and len(runs_df):
        sft_run, sft_curve = sft_arm_tables(
            runs_df, curves, s.branch_points, param_names=list(names), sweep_id=s.sweep_id
        )
        if len(sft_run):
            runs_df = pd.concat([runs_df, sft_run], ignore_index=True)
            curves = pd.concat([curves, sft_curve], ignore_index=True)
    return runs_df, curves


def export_sweep(sweep: str | Path, out: str | Path, *, sft_arm: bool = True) -> tuple[Path, Path]:
    """Write the runs table to `out` (.parquet or .csv) and the curves table beside it; returns both paths.
    `sft_arm`: add the SFT-only arm's pseudo-run when the sweep has SFT branch points (see the module docstring)."""
    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"export to {out}: use a .parquet or .csv file name")
    runs, curves = runs_tables(sweep, sft_arm=sft_arm)
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


def study_flops(runs: Any, curves: Any) -> dict[str, float]:
    """The compute behind an exported sweep's runs and curves tables (`runs_tables`' layout), in FLOPs:
    `sft`, the SFT branch points counted once (the SFT-only arm's last checkpoint, teacher included; 0 without
    that arm), `rl` and `eval`, every trial's RL updates and evaluations (each curve's last, cumulative
    `rl_flops` and `eval_flops`; NaN when the curves lack the column), and `total`, their sum."""
    from sweep.arms import ARM_COLUMN

    sft_ids = set(runs.loc[runs[ARM_COLUMN] == "sft", "run_id"]) if ARM_COLUMN in runs.columns else set()
    last = curves.sort_values(["run_id", "step"]).groupby("run_id").last()
    is_sft = last.index.isin(sft_ids)
    trials = last[~is_sft & last.index.isin(set(runs["run_id"]))]
    out = {"sft": float(last.loc[is_sft, "flops"].max()) if is_sft.any() else 0.0}
    for key, column in (("rl", "rl_flops"), ("eval", "eval_flops")):
        out[key] = float(trials[column].sum()) if column in trials.columns else float("nan")
    out["total"] = out["sft"] + out["rl"] + out["eval"]
    return out
