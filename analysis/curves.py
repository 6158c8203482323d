"""Tuning curves and compute budgets: expected best of k runs, the success-vs-FLOPs frontier, budgets.

- `expected_max_curve`: the unbiased order-statistic (U-statistic) estimator of E[max of k random runs],
  k = 1..n (Dodge et al. 2019, "Show Your Work"): with y_(1) <= ... <= y_(n),
      E_k = sum_{i=k..n} y_(i) * C(i-1, k-1) / C(n, k),
  unbiased for every k <= n, unlike the bootstrap max (which treats the n runs as the population).
- `frontier`: the upper envelope of a metric against cumulative FLOPs over all evaluations of a group of runs
  (the best score any run had reached with at most C FLOPs), with a bootstrap band over runs. It grows with
  the number of runs, so it favours the group with more runs by selection alone: compare arms with
  `analysis.arms` (the expected best of an equal number of runs k per budget) instead.
- `compute_to_reach`: the FLOPs at which the frontier first reaches a target, with a bootstrap interval, and
  the ratio between two groups (e.g. SFT+RL vs SFT only: the study's 55%).
- `reached_by_budget`: each run's score as of budget C (the checkpoint the study's rule, `analysis.selection`,
  picks among the evaluations with flops <= C: best rolling mean, window 3, its raw score): Algorithm 1 per budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis._special import log_factorials
from analysis._values import value_sort_key
from analysis.bands import cdf_band
from analysis.choices import DEFAULT_BAND_METHOD, BandMethod
from analysis.selection import select_checkpoints

__all__ = [
    "budget_grid",
    "compute_to_reach",
    "expected_max_curve",
    "expected_max_weights",
    "frontier",
    "reached_by_budget",
    "tuning_curve_band",
    "tuning_curves",
]


def expected_max_weights(n: int, k_max: int | None = None) -> np.ndarray:
    """(n, k_max) weights W with E_k = sorted_ascending(y) @ W[:, k-1] (log-space binomials, no overflow)."""
    k_max = n if k_max is None else min(k_max, n)
    i = np.arange(1, n + 1)[:, None]  # (n, 1)
    k = np.arange(1, k_max + 1)[None, :]  # (1, K)
    valid = i >= k
    lf = log_factorials(n)
    # log C(i-1, k-1) - log C(n, k)
    log_w = lf[i - 1] - lf[np.maximum(k - 1, 0)] - lf[np.maximum(i - k, 0)] - (lf[n] - lf[k] - lf[n - k])
    return np.where(valid, np.exp(np.where(valid, log_w, 0.0)), 0.0)


def expected_max_curve(scores: np.ndarray, k_max: int | None = None, *, mode: str = "max") -> np.ndarray:
    """Unbiased expected best of k runs, k = 1..min(k_max, n).

    Args:
        scores: (n,) metric of the runs.
        k_max: largest k (default n).
        mode: "max" (larger is better) or "min" (expected minimum).

    Returns:
        (k_max,) E[best of k], non-decreasing in k for mode="max".
    """
    y = np.asarray(scores, dtype=float)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError("scores must be a non-empty 1-d array")
    sign = 1.0 if mode == "max" else -1.0
    w = expected_max_weights(len(y), k_max)
    return sign * (np.sort(sign * y) @ w)


def tuning_curve_band(
    scores: np.ndarray,
    k_max: int | None = None,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    level: float = 0.95,
    mode: str = "max",
    method: BandMethod = DEFAULT_BAND_METHOD,
) -> tuple[np.ndarray, np.ndarray]:
    """Distribution-free simultaneous band for E[best of k runs], k = 1..k_max (default n).

    The construction of Lourie, Cho and He, "Show Your Work with Confidence" (2023), as opda implements it:
    a simultaneous band for the CDF F of a run's score (`analysis.bands.cdf_band`: Learned-Miller-DeStefano's
    equal-tailed band by default, exact level; or DKW) holds everywhere with probability >= level; E[max of
    k] = b - int_a^b F^k is monotone in F, so the lowest CDF in the band bounds every k's curve from above and
    the highest from below, all k at once. It needs the metric's possible range `bounds` (success rates: 0..1).

    Returns:
        (lower, upper), each (k_max,).
    """
    y = np.asarray(scores, dtype=float)
    a, b = bounds
    if y.ndim != 1 or not len(y):
        raise ValueError("scores must be a non-empty 1-d array")
    if y.min() < a or y.max() > b:
        raise ValueError(
            f"scores span [{y.min():.4g}, {y.max():.4g}], outside bounds {bounds}: pass the metric's range (--bounds LO,HI, or --bounds none)"
        )
    if mode == "min":
        lower, upper = tuning_curve_band(-y, k_max, bounds=(-b, -a), level=level, method=method)
        return -upper, -lower
    n = len(y)
    k = np.arange(1, (n if k_max is None else k_max) + 1)
    edges = np.concatenate(
        [[a], np.sort(y), [b]]
    )  # F lies in [low_cdf[i], high_cdf[i]] on [edges[i], edges[i + 1])
    width = np.diff(edges)[:, None]  # (n + 1, 1)
    low_cdf, high_cdf = (c[:, None] for c in cdf_band(n, level=level, method=method))
    upper = b - (width * low_cdf ** k[None, :]).sum(axis=0)
    lower = b - (width * high_cdf ** k[None, :]).sum(axis=0)
    return lower, upper


def tuning_curves(
    prepared,
    *,
    k_max: int = 50,
    reps: int = 200,
    seed: int = 0,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    band_method: BandMethod = DEFAULT_BAND_METHOD,
) -> pd.DataFrame:
    """Expected-max tuning curves per (stratum, hyperparameter, value) with 95% bootstrap bands and, given the
    metric's range `bounds`, distribution-free simultaneous bands (`tuning_curve_band` with `band_method`).

    Returns:
        Long table: stratum, hparam, value, k, expected_best, lo, hi (bootstrap), band_lo, band_hi
        (distribution-free; NaN without bounds).
    """
    rng = np.random.default_rng(seed)
    sign = 1.0 if prepared.mode == "max" else -1.0
    keys: list[tuple[str, str, str, int]] = []  # (stratum, hparam, value, k_max) per curve
    parts: list[
        np.ndarray
    ] = []  # per curve (6, kk): expected_best, lo, hi, band_lo, band_hi in original units
    for stratum, frame in prepared.strata():
        y_all = frame[prepared.metric].to_numpy(dtype=float)
        for h in prepared.hparams:
            labels = frame[h].to_numpy(dtype=object)
            for value in sorted(set(labels) - {""}, key=value_sort_key):
                y = sign * y_all[labels == value]
                n = len(y)
                kk = min(k_max, n)
                w = expected_max_weights(n, kk)  # (n, kk)
                curve = np.sort(y) @ w
                boot = np.sort(y[rng.integers(0, n, size=(reps, n))], axis=1) @ w  # (reps, kk)
                lo, hi = np.quantile(boot, [0.025, 0.975], axis=0)
                if sign < 0:
                    lo, hi = hi, lo
                band = (
                    tuning_curve_band(sign * y, kk, bounds=bounds, mode=prepared.mode, method=band_method)
                    if bounds
                    else (np.full(kk, np.nan), np.full(kk, np.nan))
                )
                keys.append((stratum, h.removeprefix("params."), value, kk))
                parts.append(np.vstack([sign * curve, sign * lo, sign * hi, band[0], band[1]]))
    columns = ["stratum", "hparam", "value", "k", "expected_best", "lo", "hi", "band_lo", "band_hi"]
    if not keys:
        return pd.DataFrame(columns=columns)
    sizes = np.array([key[3] for key in keys])
    numbers = np.hstack(parts)  # (5, total rows)
    out = {name: np.repeat(np.array([key[i] for key in keys], dtype=object), sizes) for i, name in
           enumerate(columns[:3])}  # fmt: skip
    out["k"] = np.concatenate([np.arange(1, kk + 1) for kk in sizes])
    out |= dict(zip(columns[4:], numbers, strict=True))
    return pd.DataFrame(out, columns=columns)


def _envelope(flops: np.ndarray, scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """max score among evaluations with flops <= C, for each C in grid (NaN before the first evaluation)."""
    order = np.argsort(flops, kind="stable")
    f, running = flops[order], np.maximum.accumulate(scores[order])
    idx = np.searchsorted(f, grid, side="right") - 1
    return np.where(idx >= 0, running[np.maximum(idx, 0)], np.nan)


def frontier(
    curves: pd.DataFrame,
    metric: str,
    *,
    grid: np.ndarray | None = None,
    reps: int = 200,
    rng: np.random.Generator,
    num_points: int = 40,
) -> pd.DataFrame:
    """Upper envelope of `metric` vs FLOPs over all runs in `curves`, with a 95% bootstrap band over runs.

    Args:
        curves: long table with run_id, flops and `metric`.
        metric: the score column.
        grid: FLOPs budgets (default: `num_points` log-spaced points over the observed range).
        reps: bootstrap replicates (runs resampled with replacement).
        rng: randomness of the bootstrap.

    Returns:
        flops, frontier, lo, hi.
    """
    data = curves[["run_id", "flops", metric]].dropna()
    if data.empty:
        raise ValueError(f"the curves table has no rows with both flops and {metric!r}")
    flops, scores = data["flops"].to_numpy(float), data[metric].to_numpy(float)
    if grid is None:
        low = max(flops.min(), 1.0)
        grid = np.unique(np.geomspace(low, flops.max(), num_points))
    codes, uniques = pd.factorize(data["run_id"])
    best = _envelope(flops, scores, grid)
    by_run = [np.flatnonzero(codes == r) for r in range(len(uniques))]
    boots = np.empty((reps, len(grid)))
    for b in range(reps):
        pick = rng.integers(0, len(uniques), len(uniques))
        rows = np.concatenate([by_run[r] for r in pick])
        boots[b] = _envelope(flops[rows], scores[rows], grid)
    with np.errstate(all="ignore"):
        lo, hi = np.nanquantile(boots, [0.025, 0.975], axis=0)
    return pd.DataFrame({"flops": grid, "frontier": best, "lo": lo, "hi": hi})


def _first_reach(flops: np.ndarray, scores: np.ndarray, target: float) -> float:
    hit = scores >= target
    return float(flops[hit].min()) if hit.any() else np.nan


def compute_to_reach(
    curves: pd.DataFrame,
    metric: str,
    target: float,
    *,
    groups: pd.Series | None = None,
    reps: int = 500,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """FLOPs at which the best run of each group first reaches `target`, with a 95% bootstrap interval.

    Args:
        curves: long table run_id, flops, `metric`.
        metric: the score column.
        target: the score to reach (e.g. SFT-only's peak).
        groups: run_id -> group label (default: one group "all").
        reps: bootstrap replicates over runs within each group.
        rng: randomness of the bootstrap.

    Returns:
        group, flops_to_target, lo, hi, p_reached (share of replicates in which the target was reached).
        Unreached: NaN.
    """
    data = curves[["run_id", "flops", metric]].dropna()
    labels = data["run_id"].map(groups) if groups is not None else pd.Series("all", index=data.index)
    rows = []
    for group, part in data.groupby(labels.to_numpy(), sort=True):
        codes, uniques = pd.factorize(part["run_id"])
        flops, scores = part["flops"].to_numpy(float), part[metric].to_numpy(float)
        # per run: FLOPs at which that run first reached the target; the group's = the minimum over its runs
        per_run = np.array(
            [_first_reach(flops[codes == r], scores[codes == r], target) for r in range(len(uniques))]
        )
        point = np.nanmin(per_run) if np.isfinite(per_run).any() else np.nan
        picks = rng.integers(0, len(uniques), size=(reps, len(uniques)))
        with np.errstate(all="ignore"):
            boot = np.nanmin(np.where(np.isfinite(per_run[picks]), per_run[picks], np.inf), axis=1)
        reached = np.isfinite(boot)
        lo, hi = np.quantile(boot[reached], [0.025, 0.975]) if reached.any() else (np.nan, np.nan)
        rows.append((group, point, lo, hi, reached.mean()))
    return pd.DataFrame(rows, columns=["group", "flops_to_target", "lo", "hi", "p_reached"])


def reached_by_budget(curves: pd.DataFrame, metric: str, budget_flops: float) -> pd.Series:
    """Each run's score as of a FLOPs budget: the study's checkpoint rule (`analysis.selection`) applied to
    the run's evaluations with flops <= budget, in FLOPs order.

    Returns:
        run_id -> raw score at the selected evaluation (runs with no scored evaluation within the budget are
        absent).
    """
    data = curves[curves["flops"] <= budget_flops].sort_values(["run_id", "flops"], kind="stable")
    if data.empty:
        return pd.Series(dtype=float)
    codes, ids = pd.factorize(data["run_id"].astype(str), sort=False)
    position = data.groupby(codes, sort=False).cumcount().to_numpy()
    num_evals = np.bincount(codes)
    values = np.full((len(ids), num_evals.max()), np.nan)  # (runs, evaluations), NaN past each run's end
    values[codes, position] = data[metric].to_numpy(dtype=float)
    picked = values[np.arange(len(ids)), select_checkpoints(values, num_evals)]
    keep = np.isfinite(picked)
    return pd.Series(picked[keep], index=np.asarray(ids)[keep], dtype=float)


def budget_grid(curves: pd.DataFrame, num: int = 5) -> Sequence[float]:
    """Budgets at the quantiles 20%..100% of the runs' final FLOPs (where most runs have evaluations)."""
    final = curves.groupby("run_id")["flops"].max().to_numpy(float)
    return list(np.unique(np.quantile(final, np.linspace(0.2, 1.0, num))))
