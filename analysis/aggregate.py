"""Aggregate metrics in the style of rliable (Agarwal et al. 2021), with explicit generators and no O(n m) step.

Scores come per group (rliable's algorithm or configuration) and per task (rliable's task; in a runs table, a
stratum); a task may have any number of runs. The statistics are rliable's:
- `iqm`: the 25% trimmed mean of all scores pooled (`scipy.stats.trim_mean(scores, 0.25, axis=None)`);
- `mean` / `median`: the mean / median over tasks of the task means;
- `optimality_gap`: gamma - mean(min(score, gamma)) over all scores;
- probability of improvement P(X > Y) + P(X = Y) / 2 per task (Mann-Whitney U / (n m)), averaged over the
  tasks both groups have; performance profiles: the fraction of all scores above each threshold tau.

Intervals come from a stratified bootstrap (runs resampled with replacement within each task), percentile
method, every draw from the `rng` argument (rliable's `StratifiedBootstrap` draws from global `np.random`).
A resample is a count vector c over the runs (multinomial per task), and every statistic is a function of the
counts, so nothing is sorted per replicate:
- sums (task means, optimality gap, profiles) are one matrix product `counts @ W`;
- with x_1 <= ... <= x_N all scores and C_i the cumulative counts in that order, the sum of the k smallest
  draws is S(k) = k x_1 + sum_{i<N} relu(k - C_i) (x_{i+1} - x_i), so IQM = (S(N - t) - S(t)) / (N - 2t) with
  t = floor(N / 4), i.e. `clip(N - t - C, 0, N - 2t) @ diff(x)` plus a constant;
- the draws of Y below and tied with x_i are differences of Y's cumulative counts at two positions found once
  by binary search in Y's sorted scores, so a pair costs O(R (n + m)).
Replicates run in chunks of about `max_elements / runs`, so memory does not grow with reps x runs. A profile's
draws are whole numbers (draws at or below tau), so their percentile interval is read off a histogram
(`_count_interval`, equal to `np.quantile`'s) rather than by partitioning reps values per threshold.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from analysis._values import INACTIVE, value_sort_key

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AGGREGATE_COLUMNS",
    "POI_COLUMNS",
    "PROFILE_COLUMNS",
    "REST",
    "STATISTICS",
    "Aggregates",
    "Statistic",
    "aggregates",
    "aggregates_table",
    "iqm",
    "probability_of_improvement",
    "read_scores",
    "scores_by_group",
    "stratified_bootstrap_ci",
    "value_aggregates",
]

REST = "rest"
"""In `pairs`, the other groups pooled per task: ("a", REST) is P(a better than a run of any other group)."""
Statistic = Literal["iqm", "mean", "median", "optimality_gap"]
STATISTICS: tuple[Statistic, ...] = get_args(Statistic)
AGGREGATE_COLUMNS = ["group", "statistic", "estimate", "lo", "hi", "n_runs", "n_tasks"]
POI_COLUMNS = ["group_x", "group_y", "poi", "lo", "hi", "n_tasks"]
PROFILE_COLUMNS = ["group", "tau", "fraction", "lo", "hi"]


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
    """Point estimate and percentile interval of any `stat(*groups)` under a stratified bootstrap (a loop).

    The general, slow form; `aggregates` computes rliable's statistics from resampled counts instead.

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


@dataclass(frozen=True)
class Aggregates:
    """`aggregates`' output: three long tables, as rows (pandas is imported only to make DataFrames)."""

    rows: tuple[tuple, ...]
    """AGGREGATE_COLUMNS: one row per (group, statistic)."""
    poi_rows: tuple[tuple, ...]
    """POI_COLUMNS: one row per pair, P(group_x better than group_y)."""
    profile_rows: tuple[tuple, ...]
    """PROFILE_COLUMNS: the fraction of scores above tau per group (none without taus)."""

    @property
    def table(self) -> pd.DataFrame:
        return _frame(self.rows, AGGREGATE_COLUMNS)

    @property
    def poi(self) -> pd.DataFrame:
        return _frame(self.poi_rows, POI_COLUMNS)

    @property
    def profiles(self) -> pd.DataFrame:
        return _frame(self.profile_rows, PROFILE_COLUMNS)

    def write_csv(self, folder: Path) -> list[Path]:
        """aggregates.csv, poi.csv and (with taus) profiles.csv in `folder`; returns the paths."""
        tables = [("aggregates", self.rows, AGGREGATE_COLUMNS), ("poi", self.poi_rows, POI_COLUMNS)]
        if self.profile_rows:
            tables.append(("profiles", self.profile_rows, PROFILE_COLUMNS))
        paths = []
        for name, rows, columns in tables:
            path = Path(folder) / f"{name}.csv"
            with path.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                writer.writerows([_cell(v) for v in row] for row in rows)
            paths.append(path)
        return paths


def _frame(rows, columns) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(list(rows), columns=columns)


def _cell(value):
    return f"{value:.6g}" if isinstance(value, float | np.floating) else value


@dataclass(frozen=True)
class _Group:
    """One group's scores, sorted within each task, tasks in order, and what its statistics need."""

    tasks: tuple[str, ...]
    x: np.ndarray  # (N,) scores, ascending within each task
    offsets: np.ndarray  # (T + 1,) start of each task in x
    order: np.ndarray  # (N,) argsort of x (all tasks pooled)
    weights: np.ndarray  # (T + 1, N): task-mean rows and the optimality-gap row
    tau_rows: np.ndarray  # (num_taus,) scores at or below each tau (rows of the cumulative counts)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def _group(per_task: Mapping[str, np.ndarray], taus: np.ndarray, gamma: float) -> _Group:
    tasks = tuple(t for t, a in per_task.items() if len(a))
    if not tasks:
        raise ValueError("a group has no scores: give each group at least one score")
    parts = [np.sort(np.asarray(per_task[t], dtype=float)) for t in tasks]
    x = np.concatenate(parts)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    weights = np.zeros((len(tasks) + 1, len(x)))
    for t in range(len(tasks)):
        weights[t, offsets[t] : offsets[t + 1]] = parts[t] / len(parts[t])
    weights[-1] = np.minimum(x, gamma) / len(x)
    order = np.argsort(x, kind="stable")
    return _Group(tasks, x, offsets, order, weights, np.searchsorted(x[order], taus, side="right"))


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b over the first axis of b without BLAS: its threads cost more than these small products gain
    (and stall on a loaded machine)."""
    return np.einsum("...i,ir->...r", a, b)


def _draw_counts(g: _Group, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(N, reps) float32 bootstrap counts: each task's runs drawn with replacement, as many as it has.

    One draw per distinct task size (the tasks of rliable's layout all have the same number of runs: one
    draw in all) of positions within the task, shifted to each task's start; indices laid out
    replicate-major so that the counting pass stays within one replicate's N cells at a time.
    """
    n_all = len(g.x)
    sizes = g.sizes
    task_size = np.repeat(sizes, sizes)  # (N,) size of each run's task
    idx = np.empty((reps, n_all), dtype=np.int64)  # (R, N) run drawn at each position of each replicate
    for size in np.unique(sizes):
        columns = task_size == size
        if columns.all():
            idx[:] = rng.integers(0, size, size=(reps, n_all))
        else:
            idx[:, columns] = rng.integers(0, size, size=(reps, int(columns.sum())))
    idx += np.repeat(g.offsets[:-1], sizes) + (np.arange(reps) * n_all)[:, None]
    counts = np.bincount(idx.ravel(), minlength=n_all * reps).reshape(reps, n_all)  # (R, N)
    return np.ascontiguousarray(counts.T, dtype=np.float32)  # (N, R)


def _group_stats(g: _Group, counts: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """From (N, R) counts: (R, 4) statistics in STATISTICS order and (R, num_taus) draws at or below each
    tau (the profile's fraction above tau is 1 - that / N; kept as counts for `_count_interval`)."""
    n_all, n_tasks = len(g.x), len(g.tasks)
    sums = _dot(g.weights.astype(counts.dtype), counts)  # (T + 1, R)
    task_means = np.sort(sums[:n_tasks].T.astype(float), axis=1)  # (R, T), sorted for the median
    median = 0.5 * (task_means[:, (n_tasks - 1) // 2] + task_means[:, n_tasks // 2])
    cum = np.zeros((n_all + 1, counts.shape[1]), counts.dtype)  # row i: draws among the i lowest scores
    np.cumsum(counts[g.order], axis=0, out=cum[1:])
    profiles = cum[g.tau_rows].T  # (R, num_taus) draws at or below tau
    cut = n_all // 4
    xs = g.x[g.order]
    kept = np.subtract(n_all - cut, cum[1:n_all])  # (N - 1, R)
    np.clip(kept, 0.0, n_all - 2 * cut, out=kept)
    iqm_draws = ((n_all - 2 * cut) * xs[0] + _dot(np.diff(xs).astype(counts.dtype), kept)) / (n_all - 2 * cut)
    stats = np.column_stack([iqm_draws, task_means.mean(axis=1), median, gamma - sums[n_tasks]])
    return stats, profiles


@dataclass(frozen=True)
class _Pair:
    """Index arrays turning Y's cumulative counts into P(X > Y) + P(X = Y)/2 for X's draws."""

    x_pos: np.ndarray  # (P,) positions in X of the runs in common tasks
    lo: np.ndarray  # (P,) positions in Y's cumulative counts: Y draws strictly below x (plus a constant)
    hi: np.ndarray  # (P,) ... below or tied
    weight: np.ndarray  # (P,) 1 / (2 n_t m_t T_common)
    constant: float  # sum_t o_t / (m_t T_common): the counts of Y's earlier tasks, subtracted
    n_tasks: int


def _pair(
    gx: _Group, gy: _Group, *, tasks: Sequence[str] | None = None, y_sizes: Mapping[str, int] | None = None
) -> _Pair | None:
    """The plan for P(X > Y); against REST, one part per other group Y, with the rest's sizes and tasks."""
    tasks = [t for t in gx.tasks if t in gy.tasks] if tasks is None else list(tasks)
    common = [t for t in tasks if t in gy.tasks]
    if not common:
        return None
    pos, lo, hi, weight, constant = [], [], [], [], 0.0
    for t in common:
        i, j = gx.tasks.index(t), gy.tasks.index(t)
        xa, xb = gx.offsets[i], gx.offsets[i + 1]
        ya, yb = gy.offsets[j], gy.offsets[j + 1]
        m = y_sizes[t] if y_sizes else yb - ya
        ys = gy.x[ya:yb]
        pos.append(np.arange(xa, xb))
        lo.append(ya + np.searchsorted(ys, gx.x[xa:xb], side="left"))
        hi.append(ya + np.searchsorted(ys, gx.x[xa:xb], side="right"))
        weight.append(np.full(xb - xa, 1.0 / (2.0 * (xb - xa) * m * len(tasks))))
        constant += ya / (m * len(tasks))
    cat = np.concatenate
    return _Pair(cat(pos), cat(lo), cat(hi), cat(weight), constant, len(tasks))


def _plan(groups: Mapping[str, _Group], x: str, y: str) -> list[tuple[_Pair, str]]:
    """(part, y group) whose PoI draws add up to P(x > y); y = REST pools every other group per task."""
    if y != REST:
        part = _pair(groups[x], groups[y])
        return [(part, y)] if part else []
    others = [n for n in groups if n != x]
    sizes = {
        t: sum(int(groups[n].sizes[groups[n].tasks.index(t)]) for n in others if t in groups[n].tasks)
        for t in groups[x].tasks
    }
    tasks = [t for t, m in sizes.items() if m]
    parts = [(_pair(groups[x], groups[n], tasks=tasks, y_sizes=sizes), n) for n in others]
    return [(part, n) for part, n in parts if part]


def _pair_draws(p: _Pair, cx: np.ndarray, cum_y: np.ndarray) -> np.ndarray:
    """(R,) PoI per replicate from X's counts (N_x, R) and Y's cumulative counts (N_y + 1, R)."""
    both = cum_y[p.lo]
    both += cum_y[p.hi]
    both *= cx[p.x_pos]
    return _dot(p.weight.astype(cx.dtype), both) - p.constant


def _cumulative(counts: np.ndarray) -> np.ndarray:
    """(N + 1, R) cumulative counts over the first axis of (N, R) counts, a row of zeros first."""
    cum = np.empty((counts.shape[0] + 1, counts.shape[1]), counts.dtype)
    cum[0] = 0
    np.cumsum(counts, axis=0, out=cum[1:])
    return cum


def _count_interval(counts: np.ndarray, top: int, level: float) -> np.ndarray:
    """(2, K) percentile interval over the first axis of (reps, K) whole-number draws in 0..top.

    Equal to `np.quantile`'s (linear interpolation between order statistics), read off each column's
    histogram instead of partitioning it: the order statistic j is the smallest value whose cumulative
    count exceeds j. The profiles' draws are such counts, and partitioning them was most of the intervals'
    time (164 of 186 columns on 4 groups x 41 thresholds).
    """
    reps, width = counts.shape
    codes = counts.astype(np.int64) + np.arange(width) * (top + 1)  # (R, K) value, offset per column
    cdf = np.cumsum(np.bincount(codes.ravel(), minlength=width * (top + 1)).reshape(width, top + 1), axis=1)
    alpha = (1.0 - level) / 2.0
    out = np.empty((2, width))
    for row, q in enumerate((alpha, 1.0 - alpha)):
        h = (reps - 1) * q
        j = int(np.floor(h))
        below = (cdf <= j).sum(axis=1)  # (K,) order statistic j (0-based)
        above = (cdf <= min(j + 1, reps - 1)).sum(axis=1)  # order statistic j + 1
        out[row] = below + (h - j) * (above - below)
    return out


def _interval(draws: np.ndarray, level: float) -> np.ndarray:
    """(2, ...) percentile interval over the first axis of (reps, ...) draws."""
    alpha = (1.0 - level) / 2.0
    flat = np.ascontiguousarray(draws.reshape(len(draws), -1).T)  # quantiles along contiguous rows
    return np.quantile(flat, [alpha, 1.0 - alpha], axis=1).reshape(2, *draws.shape[1:])


def aggregates(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    *,
    reps: int = 2000,
    rng: np.random.Generator,
    pairs: Sequence[tuple[str, str]] | None = None,
    taus: np.ndarray | None = None,
    gamma: float = 1.0,
    level: float = 0.95,
    max_elements: int = 1 << 19,
) -> Aggregates:
    """rliable's aggregates with stratified-bootstrap percentile intervals (see the module docstring).

    Args:
        scores: group -> task -> (num_runs,) scores; tasks may differ in runs, and groups in tasks.
        reps: bootstrap replicates.
        rng: the only source of randomness.
        pairs: (x, y) groups for the probability of improvement; default every pair in the given order.
            y = REST pools the other groups per task (resampled as they are, within group and task).
        taus: (num_taus,) thresholds of the performance profiles (default: none).
        gamma: the optimality gap's threshold.
        level: interval coverage.
        max_elements: replicates run in chunks of about max_elements / (all runs) (memory bound; 2^19
            keeps a chunk's arrays within the L2 cache: 0.57 s vs 0.64 s of CPU at 2^21 on 4 x 10 x 10).

    Returns:
        Aggregates (table, poi, profiles).
    """
    if reps < 1:
        raise ValueError(f"reps={reps} must be >= 1")
    if not scores:
        raise ValueError("no groups to aggregate: pass {group: {task: scores}}")
    taus = np.asarray([] if taus is None else taus, dtype=float)
    groups = {name: _group(per_task, taus, gamma) for name, per_task in scores.items()}
    names = list(groups)
    if REST in groups:
        raise ValueError(f"a group is called {REST!r}, the name pairs use for 'all other groups': rename it")
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]] if pairs is None else list(pairs)
    unknown = sorted({n for p in pairs for n in p} - set(names) - {REST})
    if unknown:
        raise ValueError(f"pairs name groups {unknown} that have no scores; groups: {names} (or {REST!r})")
    plans = {p: _plan(groups, *p) for p in pairs}
    plans = {p: parts for p, parts in plans.items() if parts}
    y_names = {y for parts in plans.values() for _, y in parts}

    def evaluate(counts: dict[str, np.ndarray]) -> tuple[dict, dict]:
        per_group = {n: _group_stats(groups[n], counts[n], gamma) for n in names}
        cums = {n: _cumulative(counts[n]) for n in y_names}
        return per_group, {
            p: sum(_pair_draws(part, counts[p[0]], cums[y]) for part, y in parts)
            for p, parts in plans.items()
        }

    point, point_pairs = evaluate({n: np.ones((len(g.x), 1)) for n, g in groups.items()})
    chunk = max(1, min(reps, max_elements // sum(len(g.x) for g in groups.values())))
    draws = {n: [] for n in names}
    pair_draws = {p: [] for p in plans}
    for start in range(0, reps, chunk):
        b = min(chunk, reps - start)
        per_group, per_pair = evaluate({n: _draw_counts(groups[n], b, rng) for n in names})
        for n in names:
            draws[n].append(per_group[n])
        for p in plans:
            pair_draws[p].append(per_pair[p])
    return _tables(groups, point, point_pairs, draws, pair_draws, plans, taus, level)


def _tables(groups, point, point_pairs, draws, pair_draws, plans, taus, level) -> Aggregates:
    rows, prof_rows, poi_rows = [], [], []
    for n, g in groups.items():
        stat_draws = np.concatenate([d[0] for d in draws[n]])  # (reps, 4)
        lo, hi = _interval(stat_draws, level)
        for k, name in enumerate(STATISTICS):
            rows.append(
                (n, name, float(point[n][0][0, k]), float(lo[k]), float(hi[k]), len(g.x), len(g.tasks))
            )
        if len(taus):
            below = np.concatenate([d[1] for d in draws[n]])  # (reps, num_taus) draws at or below tau
            high, low = 1.0 - _count_interval(below, len(g.x), level) / len(g.x)  # fraction = 1 - below / N
            prof_rows += [
                (n, float(taus[i]), 1.0 - float(point[n][1][0, i]) / len(g.x), float(low[i]), float(high[i]))
                for i in range(len(taus))
            ]
    for (a, b), parts in plans.items():
        lo, hi = _interval(np.concatenate(pair_draws[(a, b)]), level)
        poi_rows.append((a, b, float(point_pairs[(a, b)][0]), float(lo), float(hi), parts[0][0].n_tasks))
    return Aggregates(tuple(rows), tuple(poi_rows), tuple(prof_rows))


def aggregates_table(
    frame: pd.DataFrame, *, group: str, task: str | None, metric: str
) -> dict[str, dict[str, np.ndarray]]:
    """A long table (one row per run and task: group, task, score) as `aggregates`' input.

    Rows whose metric is missing or not finite are left out; a `status` column, when present, keeps only
    FINISHED rows. Groups and tasks are ordered as `value_sort_key` orders them (64 < 256 < 1024).

    Args:
        frame: the long table (rliable's layout, or a runs table with a stratum as the task).
        group: the column naming the configuration.
        task: the column naming the task; None: one task "all".
        metric: the score column.
    """
    return scores_by_group(
        {c: frame[c].tolist() for c in (group, task, metric, "status") if c and c in frame.columns},
        group=group,
        task=task,
        metric=metric,
    )


def read_scores(
    path: str | Path, *, group: str, task: str | None, metric: str
) -> dict[str, dict[str, np.ndarray]]:
    """`aggregates_table` for a CSV (stdlib reader) or parquet (pyarrow) file, without pandas."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scores table {path} does not exist: pass a .csv or .parquet file")
    wanted = [c for c in (group, task, metric, "status") if c]
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        columns = {c: table.column(c).to_pylist() for c in wanted if c in table.column_names}
    else:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            keep = {c: header.index(c) for c in wanted if c in header}
            rows = list(reader)
        columns = {c: [r[i] if i < len(r) else "" for r in rows] for c, i in keep.items()}
    return scores_by_group(columns, group=group, task=task, metric=metric)


def scores_by_group(
    columns: Mapping[str, Sequence], *, group: str, task: str | None, metric: str
) -> dict[str, dict[str, np.ndarray]]:
    """group -> task -> scores from columns (lists or arrays): the one rule behind both readers."""
    missing = [c for c in (group, task, metric) if c is not None and c not in columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the scores table; columns: {sorted(columns)}")
    raw = ["" if v is None else v for v in columns[metric]]
    try:
        y = np.array([np.nan if v == "" else float(v) for v in raw], dtype=float)
    except (TypeError, ValueError):
        bad = next(v for v in raw if not _is_number(v))
        raise ValueError(
            f"column {metric!r} has non-numeric values (e.g. {bad!r}); pass a numeric --metric or clean it"
        ) from None
    labels = np.array(["" if v is None else str(v) for v in columns[group]], dtype=object)
    keep = np.isfinite(y) & (labels != INACTIVE)
    if "status" in columns:
        keep &= np.array([str(v).upper() == "FINISHED" for v in columns["status"]])
    if not keep.any():
        raise ValueError(f"no finite {metric!r} scores with a {group!r} value: check --metric and --group")
    tasks = (
        np.array([str(v) for v in columns[task]], dtype=object) if task else np.full(len(y), "all", object)
    )
    y, labels, tasks = y[keep], labels[keep], tasks[keep]
    out: dict[str, dict[str, np.ndarray]] = {}
    for g in sorted(set(labels), key=value_sort_key):
        mine = labels == g
        out[g] = {t: y[mine & (tasks == t)] for t in sorted(set(tasks[mine]), key=value_sort_key)}
    return out


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def value_aggregates(prepared, *, reps: int = 500, seed: int = 0) -> pd.DataFrame:
    """Per hyperparameter value, pooled over strata: IQM with a stratified-bootstrap CI, and the
    probability of improvement of this value over the hyperparameter's other values (with CI).

    The strata are `aggregates`' tasks; "the rest" (REST) is every other active value of the hyperparameter.

    Returns:
        hparam, value, n_runs, iqm, iqm_lo, iqm_hi, poi_vs_rest, poi_lo, poi_hi.
    """
    rng = np.random.default_rng(seed)
    sign = 1.0 if prepared.mode == "max" else -1.0
    frame = prepared.frame
    columns = {"_score": sign * frame[prepared.metric].to_numpy(float)}
    if prepared.stratum:
        columns[prepared.stratum] = frame[prepared.stratum].astype(str).to_numpy(object)
    rows = []
    for h in prepared.hparams:
        columns[h] = frame[h].astype(str).to_numpy(object)
        if not (columns[h] != INACTIVE).any():
            continue
        by_value = scores_by_group(columns, group=h, task=prepared.stratum, metric="_score")
        result = aggregates(
            by_value, reps=reps, rng=rng, pairs=[(v, REST) for v in by_value] if len(by_value) > 1 else []
        )
        est = {r[0]: r for r in result.rows if r[1] == "iqm"}  # AGGREGATE_COLUMNS
        poi = {r[0]: r[2:5] for r in result.poi_rows}  # POI_COLUMNS: poi, lo, hi
        for v in by_value:
            e, lo, hi = (sign * est[v][i] for i in (2, 3, 4))
            rows.append(
                (
                    h.removeprefix("params."),
                    v,
                    int(est[v][5]),
                    e,
                    *sorted((lo, hi)),
                    *poi.get(v, (np.nan,) * 3),
                )
            )
    cols = ["hparam", "value", "n_runs", "iqm", "iqm_lo", "iqm_hi", "poi_vs_rest", "poi_lo", "poi_hi"]
    return _frame(rows, cols)
