"""The study's arms in the exported tables: `params.arm` per run, and the SFT-only arm as runs of its own.

The study compares three arms by success against total FLOPs (`agentsweep report --arm params.arm`,
`analysis.arms`): SFT only (the SFT run's checkpoints, each evaluated), RL only (RL runs from the base student)
and SFT+RL (RL runs from an SFT branch point; their curves' `flops` already include the SFT FLOPs up to the
branch point, `sweep.objectives.TrialContext.branch_point_flops`).

- `arm_of`: a trial's arm from its branch point, the one rule: `rl` from the base student (branch point 0 FLOPs,
  or no branch point parameter), `sft+rl` from any other branch point.
- `sft_arm_tables`: the SFT-only arm as one pseudo-run per SFT run (run id `sft:<hash of the branch points>`). Its
  curve has one row per branch point that some trial started from: `flops` = the branch point's FLOPs, `step` = its
  rank by FLOPs (0 = the base student), `rl_flops` = 0, and every other column the mean over the step-0 rows of the
  trials that started from it. Every RL trial evaluates its branch point at step 0, before any update: the same
  checkpoint on the same held-out goals, each trial sampling at its own rollout temperature with its own seed, so
  the mean is that checkpoint's score averaged over the sweep's draws (more trials, less noise). The base student,
  at 0 SFT FLOPs, is the SFT run's step 0 when trials started from it. The pseudo-run is FINISHED; its metrics
  are its last row's (the last checkpoint's score), its hyperparameters empty: `agentsweep report` leaves runs
  of the `sft` arm out of the hyperparameter analysis (`analysis.report`) and compares them as an arm.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, get_args

from sweep.space import BRANCH_POINT

__all__ = ["ARM_COLUMN", "ARMS", "SFT_RUN_PREFIX", "Arm", "arm_of", "has_sft_branch_points", "sft_arm_tables"]

Arm = Literal["sft", "rl", "sft+rl"]
"""The study's arms: SFT only, RL only (from the base student), SFT+RL (RL from an SFT branch point)."""
ARMS: tuple[str, ...] = get_args(Arm)
ARM_COLUMN = "params.arm"
"""The runs table's arm column (`agentsweep report --arm params.arm --baseline sft`)."""
SFT_RUN_PREFIX = "sft:"
"""Run ids of the SFT-only arm's pseudo-runs start with this."""


def arm_of(branch_point: Any) -> Arm:
    """A trial's arm from its `sft_checkpoint` value (FLOPs, as a param string or number): `rl` when it is
    missing, empty or 0 (the base student), `sft+rl` otherwise."""
    text = "" if branch_point is None else str(branch_point).strip()
    return "rl" if text == "" or float(text) == 0.0 else "sft+rl"


def has_sft_branch_points(branch_points: Mapping[str, str]) -> bool:
    """Whether the sweep built SFT branch points (a value with a checkpoint path; the base student has '')."""
    return any(path for path in branch_points.values())


def sft_run_id(branch_points: Mapping[str, str]) -> str:
    """`sft:<12 hex>`: a hash of the branch points (value -> checkpoint path), the same for every export."""
    blob = json.dumps(sorted(branch_points.items()))
    return SFT_RUN_PREFIX + hashlib.sha256(blob.encode()).hexdigest()[:12]


def sft_arm_tables(
    runs: Any, curves: Any, branch_points: Mapping[str, str], *, param_names: list[str], sweep_id: str
) -> tuple[Any, Any]:
    """The SFT-only arm's pseudo-run: (its runs-table row, its curve rows), both empty DataFrames when no trial
    has a step-0 evaluation (module docstring).

    Args:
        runs: the trials' runs table (`run_id`, `params.sft_checkpoint`, `start_time`, ...).
        curves: the trials' curves table (`run_id`, `step`, `flops`, metrics).
        branch_points: the sweep's branch-point value (param string) -> checkpoint path ('' = base student).
        param_names: the space's parameter names (the pseudo-run's `params.*` are empty, `params.arm` is sft).
        sweep_id: the `tags.agentsweep.sweep_id` value.
    """
    import pandas as pd

    from sweep.tracking import TAG_SWEEP

    run_id = sft_run_id(branch_points)
    column = f"params.{BRANCH_POINT}"
    rows = []
    if column in runs.columns and "step" in curves.columns:
        start = curves[curves["step"] == 0]
        for rank, value in enumerate(sorted(branch_points, key=float)):
            trials = set(runs.loc[runs[column].astype(str) == value, "run_id"])
            evals = start[start["run_id"].isin(trials)].drop(columns=["run_id", "step"])
            if evals.empty:
                continue  # no trial started here (or none evaluated it): its score is unknown
            row = {"run_id": run_id, "step": rank, **evals.mean(numeric_only=True).to_dict()}
            row.update(flops=float(value), **({"rl_flops": 0.0} if "rl_flops" in curves.columns else {}))
            rows.append(row)
    if not rows:
        return pd.DataFrame(columns=runs.columns), pd.DataFrame(columns=curves.columns)
    curve = pd.DataFrame(rows).reindex(columns=[c for c in curves.columns if c in rows[0]])
    last = curve.iloc[-1]
    rec: dict[str, Any] = {"run_id": run_id, "status": "FINISHED"}
    rec.update({f"params.{n}": "" for n in param_names})
    rec[ARM_COLUMN] = "sft"
    rec.update({f"metrics.{k}": float(v) for k, v in last.items() if k not in ("run_id", "step")})
    rec["metrics.best_step"] = float(last["step"])
    rec["metrics.num_evals"] = float(len(curve))
    rec[f"tags.{TAG_SWEEP}"] = sweep_id
    if "start_time" in runs.columns and len(runs):
        rec["start_time"] = runs["start_time"].min()  # the SFT run precedes every trial
    for c in runs.columns:  # what the trials have and the pseudo-run has not: '' for strings, NaN for metrics
        rec.setdefault(c, float("nan") if c.startswith("metrics.") else "")
    return pd.DataFrame([rec])[list(runs.columns)], curve
