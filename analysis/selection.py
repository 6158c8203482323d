"""The study's checkpoint rule, stated once: the evaluation with the best trailing rolling mean of held-out goal
success (window 3) is the run's chosen checkpoint, and its raw scores are what the run reports.

numpy only, so trainers (while training), sweep (at export) and analysis (per FLOPs budget) all apply this one
function without importing pandas or scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CHECKPOINT_METRIC", "CHECKPOINT_WINDOW", "rolling_mean", "select_checkpoint"]

CHECKPOINT_METRIC = "heldout_goal_success"
"""The metric whose rolling mean chooses the checkpoint."""
CHECKPOINT_WINDOW = 3
"""Number of consecutive evaluations in the rolling mean."""


def rolling_mean(values: Sequence[float], window: int = CHECKPOINT_WINDOW) -> np.ndarray:
    """Trailing rolling mean over the non-NaN values among the last `window` evaluations.

    Args:
        values: (num_evaluations,) scores in evaluation order; NaN where an evaluation has no score.
        window: evaluations per mean (>= 1); the first window-1 entries average what is available.

    Returns:
        (num_evaluations,) float64; NaN where the window holds no score.
    """
    if window < 1:
        raise ValueError(f"window={window} must be >= 1")
    v = np.asarray(values, dtype=np.float64).ravel()
    ok = ~np.isnan(v)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    hi = np.arange(1, len(v) + 1)
    lo = np.maximum(hi - window, 0)
    n = counts[hi] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[hi] - sums[lo]) / np.maximum(n, 1), np.nan)


def select_checkpoint(values: Sequence[float], window: int = CHECKPOINT_WINDOW) -> int:
    """Index of the chosen evaluation: argmax of `rolling_mean(values, window)`, the first one on ties.

    Args:
        values: (num_evaluations,) held-out goal success per evaluation, in evaluation order.
        window: evaluations per rolling mean.

    Returns:
        The index to report raw scores at; the last evaluation when no evaluation has a score.
    """
    means = rolling_mean(values, window)
    if not len(means):
        raise ValueError("no evaluations to select a checkpoint from")
    if np.isnan(means).all():
        return len(means) - 1
    return int(np.nanargmax(means))
