"""The study's Algorithm 1 (the hyperparameter bootstrap), exactly: closed form, fast Monte Carlo, and a loop.

Per stratum and hyperparameter H with values h = 1..K over the n runs where H is active: run i gets weight
p_i = 1 / (K * n_{h(i)}) (every value the same expected share); one resample draws n runs iid from p; the value
of the best drawn run wins (ties: uniformly among the tied draws); for each value h the best metric among the
drawn runs with H = h is recorded (nothing when h was not drawn).

Closed form (`algorithm1_exact`, the B -> infinity limit). Let x_1 < ... < x_L be the distinct metric levels
(better = larger; `mode="min"` negates), q_jh the weight of runs at level j with value h, g_j = sum_h q_jh,
G_j = g_1 + ... + g_j and P_h = sum_j q_jh (= 1/K). The max of n iid draws has CDF G^n, so
    P(max = x_j) = G_j^n - G_{j-1}^n,
and the draw chosen among those tied at x_j has value h with probability q_jh / g_j (exchangeability), so
    win_rate_h = sum_j (G_j^n - G_{j-1}^n) q_jh / g_j.
Value h's recorded best: with C_jh = q_1h + ... + q_jh, P(best_h <= x_j and h drawn) = (1 - P_h + C_jh)^n
- (1 - P_h)^n; dividing by P(h drawn) = 1 - (1 - P_h)^n gives its CDF, hence its mean and quantiles.

Monte Carlo (`algorithm1_mc`) samples the same process without drawing n runs per resample: counts per value
are multinomial(n, P); the best of c draws of value h has a continuous "level + uniform tie-break key" score
whose CDF is piecewise linear, so one uniform U per (resample, value) gives it by inversion (U^(1/c) is the
max of c uniforms). The highest score wins, which is exactly "uniformly among tied draws". Cost O(B K log L)
instead of O(B n); resamples run in chunks and only level histograms are kept, so memory does not grow with B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis._values import value_sort_key

__all__ = [
    "ALGORITHM1_COLUMNS",
    "ValueTable",
    "algorithm1",
    "algorithm1_exact",
    "algorithm1_loop",
    "algorithm1_mc",
    "algorithm1_table",
    "win_rate_intervals",
]

ALGORITHM1_COLUMNS = ["stratum", "hparam", "value", "n_runs", "win_rate", "best_mean", "best_lo", "best_hi"]
_QUANTILES = (0.025, 0.975)


@dataclass(frozen=True)
class ValueTable:
    """Algorithm 1's output for one hyperparameter: arrays aligned with `values`."""

    values: tuple[str, ...]
    n_runs: np.ndarray  # (K,)
    win_rate: np.ndarray  # (K,)
    best_mean: np.ndarray  # (K,) NaN when a value can never be drawn
    best_lo: np.ndarray  # (K,)
    best_hi: np.ndarray  # (K,)


@dataclass(frozen=True)
class _Levels:
    """Weighted level structure of one (stratum, hyperparameter)."""

    values: tuple[str, ...]
    levels: np.ndarray  # (L,) distinct metric values in the original units, ascending in "goodness"
    q: np.ndarray  # (L, K) weight at level j with value h
    n: int
    n_runs: np.ndarray  # (K,)


def _factorize(labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Integer codes and the distinct values, numeric values in numeric order (64 < 256 < 1024)."""
    codes, uniques = pd.factorize(np.asarray(labels, dtype=object), sort=False)
    order = sorted(range(len(uniques)), key=lambda i: value_sort_key(str(uniques[i])))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], [str(uniques[i]) for i in order]


def _levels(metric: np.ndarray, labels: Sequence[str], *, mode: str) -> _Levels:
    codes, uniques = _factorize(labels)
    return _coded_levels(np.asarray(metric, dtype=float), codes, uniques, mode=mode)


def _coded_levels(y: np.ndarray, codes: np.ndarray, uniques: Sequence[str], *, mode: str) -> _Levels:
    """`_levels` from integer codes 0..K-1 (every code present) and the values they stand for."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r}: use 'max' or 'min'")
    k = len(uniques)
    n_runs = np.bincount(codes, minlength=k)
    score = y if mode == "max" else -y
    order_levels, level_idx = np.unique(score, return_inverse=True)  # ascending goodness
    weight = 1.0 / (k * n_runs[codes])  # (n,)
    q = np.zeros((len(order_levels), k))
    np.add.at(q, (level_idx, codes), weight)
    levels = order_levels if mode == "max" else -order_levels
    return _Levels(tuple(str(u) for u in uniques), levels, q, len(y), n_runs)


def _summaries(lv: _Levels, pmf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 2.5%/97.5% quantiles (inverse CDF) of each value's best, from (L, K) level probabilities."""
    order = np.argsort(lv.levels)  # ascending in the original units for the quantiles
    x, p = lv.levels[order], pmf[order]
    total = p.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (x[:, None] * p).sum(axis=0) / total
        cdf = np.cumsum(p, axis=0) / total
    out = []
    for q in _QUANTILES:
        idx = (cdf < q - 1e-12).sum(axis=0)  # first level whose CDF reaches q
        out.append(np.where(total > 0, x[np.minimum(idx, len(x) - 1)], np.nan))
    return np.where(total > 0, mean, np.nan), out[0], out[1]


def algorithm1_exact(metric: np.ndarray, labels: Sequence[str], *, mode: str = "max") -> ValueTable:
    """Algorithm 1 in closed form (B -> infinity).

    Args:
        metric: (n,) metric of the runs where the hyperparameter is active.
        labels: (n,) the hyperparameter's value per run (strings).
        mode: "max" or "min".

    Returns:
        ValueTable with win rates summing to 1 and each value's best-metric mean and 95% interval.
    """
    return _exact(_levels(metric, labels, mode=mode))


def _exact(lv: _Levels) -> ValueTable:
    g = lv.q.sum(axis=1)
    big_g = np.cumsum(g)
    big_g[-1] = 1.0  # guard round-off: all the mass
    p_max = np.diff(np.concatenate([[0.0], big_g**lv.n]))  # (L,) P(max at level j)
    win = (p_max / g) @ lv.q  # (K,)
    p_h = lv.q.sum(axis=0)  # (K,)
    c = np.cumsum(lv.q, axis=0)  # (L, K)
    none = (1.0 - p_h) ** lv.n
    cdf = ((1.0 - p_h + c) ** lv.n - none) / (1.0 - none)
    pmf = np.diff(np.vstack([np.zeros((1, len(p_h))), cdf]), axis=0)
    mean, lo, hi = _summaries(lv, np.clip(pmf, 0.0, None))
    return ValueTable(lv.values, lv.n_runs, win, mean, lo, hi)


def algorithm1_mc(
    metric: np.ndarray,
    labels: Sequence[str],
    *,
    mode: str = "max",
    resamples: int = 1000,
    rng: np.random.Generator,
    chunk: int = 8192,
) -> ValueTable:
    """Algorithm 1 by Monte Carlo, vectorised over resamples (see the module docstring).

    Args:
        metric, labels, mode: as `algorithm1_exact`.
        resamples: B.
        rng: the only source of randomness.
        chunk: resamples per vectorised block (memory is O(chunk * K + L * K)).
    """
    if resamples < 1:
        raise ValueError(f"resamples={resamples} must be >= 1")
    lv = _levels(metric, labels, mode=mode)
    num_levels, k = lv.q.shape
    g = lv.q.sum(axis=1)
    g_below = np.concatenate([[0.0], np.cumsum(g)[:-1]])  # (L,) global mass below level j
    p_h = lv.q.sum(axis=0)
    c = np.cumsum(lv.q, axis=0)  # (L, K)
    c_below = c - lv.q
    wins = np.zeros(k, dtype=np.int64)
    hist = np.zeros((num_levels, k), dtype=np.int64)
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        counts = rng.multinomial(lv.n, p_h / p_h.sum(), size=b)  # (b, K)
        u = rng.random((b, k))
        with np.errstate(divide="ignore"):
            top = np.where(counts > 0, u ** (1.0 / np.maximum(counts, 1)), 0.0)  # max of c uniforms
        t = top * p_h  # position in value h's mass
        score = np.full((b, k), -np.inf)
        for h in range(k):  # K is small; each column is vectorised over the chunk
            drawn = counts[:, h] > 0
            j = np.minimum(np.searchsorted(c[:, h], t[drawn, h], side="right"), num_levels - 1)
            frac = (t[drawn, h] - c_below[j, h]) / lv.q[j, h]
            score[drawn, h] = g_below[j] + frac * g[j]
            np.add.at(hist[:, h], j, 1)
        wins += np.bincount(score.argmax(axis=1), minlength=k)
        done += b
    mean, lo, hi = _summaries(lv, hist.astype(float))
    return ValueTable(lv.values, lv.n_runs, wins / resamples, mean, lo, hi)


def algorithm1_loop(
    metric: np.ndarray,
    labels: Sequence[str],
    *,
    mode: str = "max",
    resamples: int = 1000,
    rng: np.random.Generator,
) -> ValueTable:
    """Algorithm 1 written as the study describes it: a Python loop drawing n runs per resample.

    The reference that the exact and vectorised versions are tested and benchmarked against.
    """
    lv = _levels(metric, labels, mode=mode)
    y = np.asarray(metric, dtype=float) * (1.0 if mode == "max" else -1.0)
    codes = _factorize(labels)[0]
    p = 1.0 / (len(lv.values) * lv.n_runs[codes])
    p = p / p.sum()
    wins = np.zeros(len(lv.values))
    bests: list[list[float]] = [[] for _ in lv.values]
    for _ in range(resamples):
        idx = rng.choice(len(y), size=len(y), replace=True, p=p)
        ys, vs = y[idx], codes[idx]
        tied = np.flatnonzero(ys == ys.max())
        wins[vs[rng.choice(tied)]] += 1
        for h in np.unique(vs):
            bests[h].append(ys[vs == h].max())
    sign = 1.0 if mode == "max" else -1.0
    mean, lo, hi = (np.full(len(lv.values), np.nan) for _ in range(3))
    for h, values in enumerate(bests):
        if values:
            arr = sign * np.asarray(values)
            mean[h] = arr.mean()
            lo[h], hi[h] = np.quantile(arr, _QUANTILES, method="inverted_cdf")
    return ValueTable(lv.values, lv.n_runs, wins / resamples, mean, lo, hi)


def algorithm1(
    metric: np.ndarray,
    labels: Sequence[str],
    *,
    method: str = "exact",
    mode: str = "max",
    resamples: int = 1000,
    rng: np.random.Generator | None = None,
) -> ValueTable:
    """Dispatch to `algorithm1_exact` / `algorithm1_mc` / `algorithm1_loop` by `method`."""
    if method == "exact":
        return algorithm1_exact(metric, labels, mode=mode)
    if rng is None:
        raise ValueError(f"method={method!r} needs rng=np.random.default_rng(seed)")
    if method == "mc":
        return algorithm1_mc(metric, labels, mode=mode, resamples=resamples, rng=rng)
    if method == "loop":
        return algorithm1_loop(metric, labels, mode=mode, resamples=resamples, rng=rng)
    raise ValueError(f"method={method!r}: use exact, mc or loop")


def algorithm1_table(
    prepared, *, method: str = "exact", resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Algorithm 1 for every stratum and hyperparameter of a `PreparedRuns`: the `hparams.csv` table.

    Conditional hyperparameters use only the runs where they are active. Columns: ALGORITHM1_COLUMNS.
    """
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {c: [] for c in ALGORITHM1_COLUMNS}
    for stratum, h, y, labels in prepared.cells():
        t = algorithm1(y, labels, method=method, mode=prepared.mode, resamples=resamples, rng=rng)
        k = len(t.values)
        columns["stratum"] += [stratum] * k
        columns["hparam"] += [h.removeprefix("params.")] * k
        columns["value"] += list(t.values)
        for name in ("n_runs", "win_rate", "best_mean", "best_lo", "best_hi"):
            columns[name] += getattr(t, name).tolist()
    return pd.DataFrame(columns, columns=ALGORITHM1_COLUMNS)


def win_rate_intervals(prepared, *, reps: int = 50, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Sampling uncertainty of the exact win rates: an outer bootstrap over runs (within each stratum).

    Algorithm 1's win rate has no Monte Carlo error in closed form, but it still depends on which runs the
    study happened to draw; this resamples the runs `reps` times and recomputes the exact win rates.

    Returns:
        stratum, hparam, value, win_lo, win_hi.
    """
    rng = np.random.default_rng(seed)
    alpha = (1.0 - level) / 2.0
    rows = []
    for stratum, h, y, lab in prepared.cells():
        codes, values = _factorize(lab)  # once per cell; each resample keeps the values it drew
        picks = rng.integers(0, len(y), size=(reps, len(y)))  # (B, n) runs drawn per resample
        lo, hi = np.quantile(_exact_win_rates(y, codes, len(values), picks, mode=prepared.mode),
                             [alpha, 1.0 - alpha], axis=0)  # fmt: skip
        rows += [(stratum, h.removeprefix("params."), v, lo[i], hi[i]) for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["stratum", "hparam", "value", "win_lo", "win_hi"])


def _exact_win_rates(y: np.ndarray, codes: np.ndarray, k: int, picks: np.ndarray, *, mode: str) -> np.ndarray:
    """(B, K) exact win rates (`_exact`) of B resampled studies at once; a value not drawn wins 0.

    Args:
        y: (n,) metric; codes: (n,) value codes 0..K-1; picks: (B, n) indices of the runs each study draws.
    """
    reps, n = picks.shape
    score = y if mode == "max" else -y
    _, level = np.unique(score, return_inverse=True)  # (n,) level of each run, ascending goodness
    num_levels = int(level.max()) + 1
    counts = np.zeros((reps, k))  # draws of each value per resample
    np.add.at(counts, (np.arange(reps)[:, None], codes[picks]), 1.0)
    present = (counts > 0).sum(axis=1)  # (B,) K_b
    with np.errstate(divide="ignore"):
        per_draw = 1.0 / (present[:, None] * counts)  # (B, K) weight of one draw of value h
    weight = np.take_along_axis(per_draw, codes[picks], axis=1)  # (B, n)
    cell = (np.arange(reps)[:, None] * num_levels + level[picks]) * k + codes[picks]
    q = np.bincount(cell.ravel(), weight.ravel(), reps * num_levels * k).reshape(reps, num_levels, k)
    g = q.sum(axis=2)  # (B, L)
    big_g = np.cumsum(g, axis=1)
    big_g[:, -1] = 1.0  # guard round-off: all the mass
    p_max = np.diff(big_g**n, axis=1, prepend=0.0)  # (B, L) P(max at level j)
    ratio = np.divide(p_max, g, out=np.zeros_like(g), where=g > 0)
    return np.einsum("bl,blk->bk", ratio, q)
