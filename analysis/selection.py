"""The study's checkpoint rule, stated once: the evaluation with the best trailing rolling mean of held-out goal
success (window 3) is the run's chosen checkpoint, and its raw scores are what the run reports.

numpy only, so trainers (while training), sweep (at export) and analysis (per FLOPs budget) all apply this one
function without importing pandas or scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "CHECKPOINT_METRIC",
    "CHECKPOINT_WINDOW",
    "rolling_mean",
    "select_checkpoint",
    "select_checkpoints",
]

CHECKPOINT_METRIC = "heldout_goal_success"
"""The metric whose rolling mean chooses the checkpoint."""
CHECKPOINT_WINDOW = 3
"""Number of consecutive evaluations in the rolling mean."""


def rolling_mean(values: Sequence[float], window: int = CHECKPOINT_WINDOW) -> np.ndarray:
    """Trailing rolling mean over the non-NaN values among the last `window` evaluations.

    Args:
        values: (num_evaluations,) scores in evaluation order, or (num_runs, num_evaluations) one run a row;
            NaN where an evaluation has no score.
        window: evaluations per mean (>= 1); the first window-1 entries average what is available.

    Returns:
        float64 of the same shape; NaN where the window holds no score.
    """
    if window < 1:
        raise ValueError(f"window={window} must be >= 1")
    v = np.asarray(values, dtype=np.float64)
    v = v.ravel() if v.ndim != 2 else v
    ok = ~np.isnan(v)
    zero = np.zeros((*v.shape[:-1], 1))
    sums = np.concatenate([zero, np.cumsum(np.where(ok, v, 0.0), axis=-1)], axis=-1)
    counts = np.concatenate([zero, np.cumsum(ok, axis=-1)], axis=-1)
    hi = np.arange(1, v.shape[-1] + 1)
    lo = np.maximum(hi - window, 0)
    n = counts[..., hi] - counts[..., lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[..., hi] - sums[..., lo]) / np.maximum(n, 1), np.nan)


def select_checkpoint(values: Sequence[float], window: int = CHECKPOINT_WINDOW) -> int:
    """Index of the chosen evaluation: argmax of `rolling_mean(values, window)`, the first one on ties.

    Args:
        values: (num_evaluations,) held-out goal success per evaluation, in evaluation order.
        window: evaluations per rolling mean.

    Returns:
        The index to report raw scores at; the last evaluation when no evaluation has a score.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if not len(v):
        raise ValueError("no evaluations to select a checkpoint from")
    return int(select_checkpoints(v[None, :], np.array([len(v)]), window)[0])


def select_checkpoints(
    values: np.ndarray, num_evals: np.ndarray, window: int = CHECKPOINT_WINDOW
) -> np.ndarray:
    """`select_checkpoint` for many runs at once.

    Args:
        values: (num_runs, max_evaluations) one run a row, in evaluation order; entries past a run's
            evaluations are ignored (pad them with NaN).
        num_evals: (num_runs,) evaluations per run (>= 1).
        window: evaluations per rolling mean.

    Returns:
        (num_runs,) int64 index of each run's chosen evaluation.
    """
    num_evals = np.asarray(num_evals, dtype=np.int64)
    means = rolling_mean(values, window)  # (R, E)
    means[np.arange(means.shape[1])[None, :] >= num_evals[:, None]] = np.nan
    scored = ~np.isnan(means).all(axis=1)
    best = np.argmax(np.where(np.isnan(means), -np.inf, means), axis=1)  # first maximum: first on ties
    return np.where(scored, best, num_evals - 1)
