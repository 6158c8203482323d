"""Aggregate metrics in the style of rliable (Agarwal et al. 2021), with explicit generators.

Scores of a configuration are grouped by stratum (rliable's "tasks"). Intervals come from a stratified
bootstrap: runs are resampled with replacement within each stratum. Unlike rliable's `StratifiedBootstrap`,
every draw comes from the `rng` argument, so one seed gives one interval, whatever the global state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from analysis.runs import value_sort_key

__all__ = [
    "iqm",
    "probability_of_improvement",
    "stratified_bootstrap_ci",
    "value_aggregates",
]


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the scores (25% trimmed from each end, as rliable).

    Args:
        scores: (num_runs,) or (num_runs, num_tasks); flattened.
    """
    x = np.sort(np.asarray(scores, dtype=float).ravel())
    n = len(x)
    if n == 0:
        raise ValueError("iqm of no scores")
    cut = int(np.floor(0.25 * n))  # scipy.stats.trim_mean(x, 0.25) convention
    return float(x[cut : n - cut].mean())


def probability_of_improvement(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> float:
    """P(X > Y) + P(X = Y) / 2, averaged over strata (Mann-Whitney U / (n m) per stratum).

    Counts by binary search in the sorted Y: O((n + m) log m) time and O(n + m) memory per stratum.

    Args:
        x: per stratum, (n_s,) scores of configuration X.
        y: per stratum, (m_s,) scores of configuration Y (same strata order).
    """
    values = []
    for xs, ys in zip(x, y, strict=True):
        xs, ys = np.asarray(xs, float), np.sort(np.asarray(ys, float))
        if len(xs) and len(ys):
            below = np.searchsorted(ys, xs, side="left")  # (n,) Y strictly below each x
            not_above = np.searchsorted(ys, xs, side="right")  # (n,) Y below or tied
            values.append(float((below + not_above).sum() / (2.0 * len(xs) * len(ys))))
    if not values:
        raise ValueError("probability_of_improvement needs at least one stratum with scores on both sides")
    return float(np.mean(values))


def stratified_bootstrap_ci(
    groups: Sequence[Sequence[np.ndarray]],
    stat: Callable[..., float],
    *,
    reps: int = 2000,
    rng: np.random.Generator,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Point estimate and percentile interval of `stat(*groups)` under a stratified bootstrap.

    Args:
        groups: one entry per argument of `stat`; each is a list over strata of (n_s,) score arrays.
            Each array is resampled with replacement on its own (within its stratum).
        stat: function of the argument groups, e.g. `lambda a: iqm(np.concatenate(a))`.
        reps: bootstrap replicates.
        rng: the only source of randomness.
        level: interval coverage.

    Returns:
        (estimate, lo, hi).
    """
    point = stat(*groups)
    draws = np.empty(reps)
    for b in range(reps):
        resampled = [[a[rng.integers(0, len(a), len(a))] if len(a) else a for a in g] for g in groups]
        draws[b] = stat(*resampled)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(point), float(lo), float(hi)


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """IQM of each row of (R, n) (same trimming as `iqm`)."""
    n = x.shape[1]
    cut = int(np.floor(0.25 * n))
    return np.sort(x, axis=1)[:, cut : n - cut].mean(axis=1)


def _poi_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 for each row pair of (R, n) and (R, m), via midranks (Mann-Whitney U)."""
    n, m = xs.shape[1], ys.shape[1]
    ranks = rankdata(np.concatenate([xs, ys], axis=1), axis=1)  # (R, n + m), ties get midranks
    return (ranks[:, :n].sum(axis=1) - n * (n + 1) / 2.0) / (n * m)


def value_aggregates(prepared, *, reps: int = 500, seed: int = 0) -> pd.DataFrame:
    """Per hyperparameter value, pooled over strata: IQM with a stratified-bootstrap CI, and the
    probability of improvement of this value over the hyperparameter's other values (with CI).

    Vectorised over replicates (the same stratified bootstrap as `stratified_bootstrap_ci`).

    Returns:
        hparam, value, n_runs, iqm, iqm_lo, iqm_hi, poi_vs_rest, poi_lo, poi_hi.
    """
    rng = np.random.default_rng(seed)
    sign = 1.0 if prepared.mode == "max" else -1.0
    strata = prepared.strata()
    rows = []

    def boot(a: np.ndarray) -> np.ndarray:  # (reps, len(a)) resampled within the stratum
        return a[rng.integers(0, len(a), size=(reps, len(a)))]

    for h in prepared.hparams:
        values = sorted({v for _, f in strata for v in f[h].unique()} - {""}, key=value_sort_key)
        for value in values:
            mine = [sign * f.loc[f[h] == value, prepared.metric].to_numpy(float) for _, f in strata]
            rest = [
                sign * f.loc[(f[h] != value) & (f[h] != ""), prepared.metric].to_numpy(float)
                for _, f in strata
            ]
            pooled = np.concatenate(mine)
            est = iqm(pooled)
            draws = _iqm_rows(np.concatenate([boot(a) for a in mine if len(a)], axis=1))
            lo, hi = np.quantile(draws, [0.025, 0.975])
            if sign < 0:
                est, lo, hi = -est, -hi, -lo
            pairs = [(a, b) for a, b in zip(mine, rest, strict=True) if len(a) and len(b)]
            if pairs:
                poi = probability_of_improvement(*zip(*pairs, strict=True))
                poi_draws = np.mean([_poi_rows(boot(a), boot(b)) for a, b in pairs], axis=0)
                poi_lo, poi_hi = np.quantile(poi_draws, [0.025, 0.975])
            else:
                poi = poi_lo = poi_hi = np.nan
            rows.append((h.removeprefix("params."), value, len(pooled), est, lo, hi, poi, poi_lo, poi_hi))
    cols = ["hparam", "value", "n_runs", "iqm", "iqm_lo", "iqm_hi", "poi_vs_rest", "poi_lo", "poi_hi"]
    return pd.DataFrame(rows, columns=cols)
