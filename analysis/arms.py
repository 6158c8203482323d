"""Arms compared at an equal number of runs k: the equal-k compute frontier and the compute-to-match ratio.

The study compares arms (SFT only, RL only, SFT+RL; in a runs table, the values of one column such as
`params.arm`) by success against total FLOPs. An envelope over all runs' evaluations (`curves.frontier`)
favours the arm with more runs by selection alone: the best of 40 noisy runs beats the best of 4 of the same
distribution. Here every arm is scored as the expected best of the same k runs:

- a run's score as of budget C (`BudgetRule`): "last", its last evaluation with flops <= C (the checkpoint it
  has when the budget runs out; the default), or "checkpoint", the study's rule (`analysis.selection`: best
  rolling mean, window 3) among those evaluations. "last" is the default because the checkpoint rule picks
  the best of a run's noisy evaluations with those same evaluations, which lifts an arm by its number of
  evaluations rather than by what it learned (issue 16);
- the arm's equal-k curve at C: the unbiased expected maximum of k runs (`curves.expected_max_weights`, the
  tuning-curve U-statistic) over the arm's runs present at C (with an evaluation at or below C); NaN where
  fewer than k are present. k = 1 is the mean run;
- the compute-to-match ratio of arm X: the FLOPs at which X's curve first reaches the baseline arm's peak,
  over the FLOPs at which the baseline's curve first attains that peak (the study: SFT+RL reaches SFT-only's
  peak with 55% of SFT-only's compute).

Bands and intervals come from one bootstrap: each replicate resamples runs with replacement within every arm
and recomputes every curve, the baseline's peak and its FLOPs, and each ratio. A replicate in which X never
reaches the baseline's peak has ratio +inf, so `hi` is inf when that happens in more than (1 - level) / 2 of
them; `p_reached` is the share of replicates that did reach it. The FLOPs grid is every distinct evaluation
FLOPs value of the arms' runs (where the curves can change), or `max_points` log-spaced points when there are
more. FLOPs are the curves table's cumulative `flops`: an SFT+RL run's count must include the SFT FLOPs up to
its branch point (the export writes them so).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis._special import log_factorials
from analysis.choices import BUDGET_RULES, ArmError, BudgetRule
from analysis.selection import select_checkpoints

__all__ = [
    "BUDGET_RULES",
    "COMPUTE_TO_MATCH_COLUMNS",
    "FRONTIER_K_COLUMNS",
    "PEAK_COLUMNS",
    "PEAK_DIFFERENCE_COLUMNS",
    "ArmComparison",
    "ArmError",
    "BudgetRule",
    "arm_labels",
    "compare_arms",
    "equal_k_curves",
    "scores_at_budgets",
]

FRONTIER_K_COLUMNS = ["arm", "k", "flops", "expected_best", "lo", "hi", "n_runs"]
PEAK_COLUMNS = ["arm", "k", "peak", "lo", "hi", "flops_at_peak"]
PEAK_DIFFERENCE_COLUMNS = ["arm", "versus", "k", "difference", "lo", "hi"]
COMPUTE_TO_MATCH_COLUMNS = [
    "arm",
    "k",
    "baseline",
    "target",
    "flops_to_match",
    "baseline_flops_at_peak",
    "ratio",
    "lo",
    "hi",
    "p_reached",
]


@dataclass(frozen=True)
class ArmComparison:
    """`compare_arms`' output."""

    frontier: pd.DataFrame
    """FRONTIER_K_COLUMNS: per arm and FLOPs budget, the expected best of k runs with its bootstrap band."""
    compute_to_match: pd.DataFrame
    """COMPUTE_TO_MATCH_COLUMNS: one row per arm other than the baseline (empty without a baseline)."""
    peaks: pd.DataFrame
    """PEAK_COLUMNS: per arm, the peak of its equal-k curve over all budgets (its best expected-best-of-k), with
    the bootstrap interval of that peak and the FLOPs where the point curve first attains it."""
    peak_differences: pd.DataFrame
    """PEAK_DIFFERENCE_COLUMNS: per ordered pair of arms, peak(arm) - peak(versus) with its interval from the same
    replicates (arms are resampled independently, so the pair's replicates are independent draws)."""
    k: int
    """The number of runs every arm is compared at."""
    k_rule: str
    """How k was chosen: "given" or "smallest arm"."""
    arm_runs: dict[str, int]
    """Runs with a scored evaluation per arm."""
    baseline: str | None
    rule: BudgetRule


def arm_labels(runs: pd.DataFrame, column: str) -> pd.Series:
    """run_id -> arm from a runs table's `column`; runs whose value is missing (NaN or empty) are in no arm.

    Only FINISHED runs count when the table has a `status` column.

    Raises:
        ArmError: the column is not in the table, or no run has a value in it.
    """
    if column not in runs.columns:
        hint = [c for c in runs.columns if c.startswith("params.")][:12]
        raise ArmError(
            f"--arm {column!r} is not a column of the runs table: pass the column naming each run's arm "
            f"(e.g. one of {hint})"
        )
    frame = runs
    if "status" in frame.columns:
        frame = frame[frame["status"].astype(str).str.upper() == "FINISHED"]
    values = frame[column]
    keep = values.notna() & (values.astype(str).str.strip() != "")
    if not keep.any():
        raise ArmError(
            f"--arm {column!r} has no values in the runs table's finished runs: pass another column"
        )
    return pd.Series(
        values[keep].astype(str).to_numpy(), index=frame.loc[keep, "run_id"].astype(str).to_numpy()
    )


def scores_at_budgets(
    curves: pd.DataFrame, metric: str, grid: np.ndarray, rule: BudgetRule = "last"
) -> tuple[np.ndarray, np.ndarray]:
    """Each run's score as of every budget in `grid` under `rule` (see the module docstring).

    Args:
        curves: long table run_id, flops, `metric` (one row per evaluation); rows without a score are ignored.
        metric: the score column.
        grid: (G,) FLOPs budgets, ascending.
        rule: "last" or "checkpoint".

    Returns:
        (run_ids (n,), scores (n, G)): NaN where a run has no scored evaluation at or below the budget.
    """
    if rule not in BUDGET_RULES:
        raise ArmError(f"budget rule {rule!r}: use one of {BUDGET_RULES}")
    order = ["run_id", "flops", *(["step"] if "step" in curves.columns else [])]  # ties in FLOPs: by step
    data = curves[[*order, metric]].dropna(subset=["flops", metric]).sort_values(order, kind="stable")
    codes, ids = pd.factorize(data["run_id"].astype(str), sort=False)
    flops, values = data["flops"].to_numpy(float), data[metric].to_numpy(float)
    starts = np.searchsorted(codes, np.arange(len(ids) + 1))  # rows of run r: starts[r]:starts[r + 1]
    out = np.full((len(ids), len(grid)), np.nan)
    if rule == "last":
        for r in range(len(ids)):
            a, b = starts[r], starts[r + 1]
            idx = np.searchsorted(flops[a:b], grid, side="right") - 1  # last evaluation <= C
            out[r] = np.where(idx >= 0, values[a + np.maximum(idx, 0)], np.nan)
        return np.asarray(ids, dtype=object), out
    num_evals = np.diff(starts)
    table = np.full((len(ids), num_evals.max()), np.nan)  # (runs, evaluations) in FLOPs order
    position = np.arange(len(codes)) - starts[codes]
    table[codes, position] = values
    padded = np.full_like(table, np.inf)
    padded[codes, position] = flops
    for g, budget in enumerate(grid):
        within = (padded <= budget).sum(axis=1)  # evaluations at or below the budget, per run
        present = within > 0
        if present.any():
            pick = select_checkpoints(table[present], within[present])
            out[present, g] = table[present][np.arange(present.sum()), pick]
    return np.asarray(ids, dtype=object), out


def _weight_table(n: int, k: int) -> np.ndarray:
    """(n + 1, n): row m holds the expected-max-of-k weights of m ascending scores, C(i-1, k-1) / C(m, k) for
    the i-th (zeros past m); NaN rows for m < k. Log-space binomials, O(n^2)."""
    lf = log_factorials(n)
    m = np.arange(n + 1)[:, None]  # (n + 1, 1) runs present
    i = np.arange(1, n + 1)[None, :]  # (1, n) rank among them
    valid = (i >= k) & (i <= m)
    log_w = lf[np.maximum(i - 1, 0)] - lf[k - 1] - lf[np.maximum(i - k, 0)]
    log_w = log_w - (lf[m] - lf[k] - lf[np.maximum(m - k, 0)])
    table = np.where(valid, np.exp(np.where(valid, log_w, 0.0)), 0.0)
    table[:k] = np.nan
    return table


def equal_k_curves(scores: np.ndarray, k: int, *, weights: np.ndarray | None = None) -> np.ndarray:
    """Expected best of k runs at every budget, from runs' scores as of each budget (larger is better).

    Args:
        scores: (..., n, G) scores as of each budget, NaN where a run is absent; leading axes (e.g. bootstrap
            replicates) are kept.
        k: runs per draw (1 <= k).
        weights: `_weight_table(n, k)`, when the caller already has it.

    Returns:
        (..., G) the unbiased E[max of k] over the runs present at each budget; NaN where fewer than k are.
    """
    n, budgets = scores.shape[-2:]
    w = _weight_table(n, k) if weights is None else weights
    ordered = np.ascontiguousarray(np.moveaxis(scores, -1, -2))  # (..., G, n): one copy, sorted in place
    ordered.sort(axis=-1)  # ascending, absent (NaN) last
    present = (~np.isnan(ordered)).sum(axis=-1).ravel()  # runs present per (..., budget)
    ordered = ordered.reshape(-1, n)
    out = np.full(len(present), np.nan)
    for m in np.unique(present[present >= k]):  # a few distinct counts: one matrix-vector product each
        rows = np.flatnonzero(present == m)
        out[rows] = ordered[rows, :m] @ w[m, :m]
    return out.reshape(*scores.shape[:-2], budgets)


def _first_reach(curves: np.ndarray, target: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(...) FLOPs of the first budget at which each curve (..., G) is >= its target (...); inf if never."""
    with np.errstate(invalid="ignore"):
        hit = curves >= target[..., None]
    first = np.argmax(hit, axis=-1)
    return np.where(hit.any(axis=-1), grid[first], np.inf)


def _peak(curves: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(peak value, FLOPs of the first budget attaining it) of each curve (..., G); NaN where all NaN."""
    filled = np.where(np.isnan(curves), -np.inf, curves)
    at = np.argmax(filled, axis=-1)
    peak = np.take_along_axis(filled, at[..., None], axis=-1)[..., 0]
    ok = np.isfinite(peak)
    return np.where(ok, peak, np.nan), np.where(ok, grid[at], np.nan)


def _interval(draws: np.ndarray, alpha: float) -> tuple[float, float]:
    """The (alpha, 1 - alpha) quantiles of bootstrap draws, NaN replicates left out (NaN, NaN if none is left)."""
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def compare_arms(
    curves: pd.DataFrame,
    arms: pd.Series,
    metric: str,
    *,
    baseline: str | None = None,
    k: int | None = None,
    rule: BudgetRule = "last",
    mode: str = "max",
    reps: int = 500,
    seed: int = 0,
    level: float = 0.95,
    max_points: int = 256,
    max_elements: int = 1 << 22,
) -> ArmComparison:
    """The equal-k frontier of every arm and each arm's compute-to-match ratio against `baseline`.

    Args:
        curves: long table run_id, step, flops, `metric`.
        arms: run_id -> arm (`arm_labels`); runs not in it, or without a scored evaluation, are left out.
        metric: the score column of `curves`.
        baseline: the arm whose equal-k peak is the target (None: no compute_to_match rows).
        k: runs per arm (default: the smallest arm's number of runs).
        rule: a run's score as of a budget, "last" or "checkpoint" (module docstring).
        mode: "max" (larger is better) or "min".
        reps: bootstrap replicates (runs resampled within each arm).
        seed: seeds the bootstrap.
        level: coverage of the bands and intervals.
        max_points: most FLOPs budgets on the grid.
        max_elements: replicates run in chunks of about max_elements / (runs x budgets) (memory bound).

    Returns:
        ArmComparison (frontier_k and compute_to_match tables, the k used and how it was chosen).

    Raises:
        ArmError: baseline not an arm, k < 1 or larger than an arm, or no arm run in the curves table.
    """
    sign = 1.0 if mode == "max" else -1.0
    arms = arms.astype(str)
    data = curves[curves["run_id"].astype(str).isin(arms.index)]
    data = data[np.isfinite(pd.to_numeric(data[metric], errors="coerce").to_numpy(float))]
    if data.empty:
        raise ArmError(
            f"no run of any arm ({sorted(set(arms))}) has a scored {metric!r} evaluation in the curves table: "
            "pass the curves exported with this runs table"
        )
    names = sorted(set(arms[data["run_id"].astype(str).unique()]))
    if baseline is not None and baseline not in names:
        raise ArmError(f"--baseline {baseline!r} is not an arm with curves; arms: {names}: pass one of them")
    flops = np.unique(data["flops"].to_numpy(float))
    positive = flops[flops > 0]
    if not len(positive):
        raise ArmError("the arms' evaluations all have flops <= 0: the curves table needs cumulative FLOPs")
    grid = positive if len(positive) <= max_points else np.geomspace(positive[0], positive[-1], max_points)
    ids, scores = scores_at_budgets(data, metric, grid, rule)
    scores = sign * scores
    of_arm = arms.reindex(ids).to_numpy(object)
    per_arm = {a: scores[of_arm == a] for a in names}
    sizes = {a: len(s) for a, s in per_arm.items()}
    smallest = min(sizes, key=sizes.get)
    if k is None:
        k, k_rule = sizes[smallest], "smallest arm"
    else:
        k_rule = "given"
    if k < 1 or k > sizes[smallest]:
        raise ArmError(
            f"--k {k} is larger than arm {smallest!r} ({sizes[smallest]} runs with curves): pass --k "
            f"{sizes[smallest]} or fewer (every arm is compared at the same k), or add runs to that arm"
            if k >= 1
            else f"--k {k}: pass k >= 1"
        )
    rng = np.random.default_rng(seed)
    weights = {a: _weight_table(sizes[a], k) for a in names}
    point = {a: equal_k_curves(per_arm[a], k, weights=weights[a]) for a in names}
    boot = {a: np.empty((reps, len(grid))) for a in names}
    chunk = max(1, min(reps, max_elements // (max(sizes.values()) * len(grid))))
    for start in range(0, reps, chunk):
        b = min(chunk, reps - start)
        for a in names:
            picks = rng.integers(0, sizes[a], size=(b, sizes[a]))
            boot[a][start : start + b] = equal_k_curves(per_arm[a][picks], k, weights=weights[a])
    alpha = (1.0 - level) / 2.0
    rows = []
    for a in names:
        with warnings.catch_warnings():  # budgets where no replicate has k runs: NaN, as the curve
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanquantile(boot[a], [alpha, 1.0 - alpha], axis=0)
        curve = point[a]
        lo, hi = np.where(np.isnan(curve), np.nan, lo), np.where(np.isnan(curve), np.nan, hi)
        if sign < 0:
            lo, hi = hi, lo
        present = (~np.isnan(per_arm[a])).sum(axis=0)
        rows.append(
            pd.DataFrame(
                {
                    "arm": a,
                    "k": k,
                    "flops": grid,
                    "expected_best": sign * curve,
                    "lo": sign * lo,
                    "hi": sign * hi,
                    "n_runs": present,
                }
            )
        )
    frontier = pd.concat(rows, ignore_index=True)[FRONTIER_K_COLUMNS]
    match_rows = []
    if baseline is not None:
        target, at_peak = _peak(point[baseline], grid)
        target_b, at_peak_b = _peak(boot[baseline], grid)  # (reps,) each
        for a in names:
            if a == baseline:
                continue
            reach = _first_reach(point[a], np.asarray(target), grid)
            reach_b = _first_reach(boot[a], target_b, grid)
            ratio_b = np.sort(reach_b / at_peak_b)  # inf where unreached
            reached = np.isfinite(ratio_b)
            lo = float(np.quantile(ratio_b, alpha, method="lower"))
            hi = float(np.quantile(ratio_b, 1.0 - alpha, method="higher"))
            match_rows.append(
                (
                    a,
                    k,
                    baseline,
                    float(sign * target),
                    float(reach) if np.isfinite(reach) else np.nan,
                    float(at_peak),
                    float(reach / at_peak) if np.isfinite(reach) else np.nan,
                    lo,
                    hi,
                    float(reached.mean()),
                )
            )
    peak_point = {a: _peak(point[a], grid) for a in names}
    peak_boot = {a: _peak(boot[a], grid)[0] for a in names}  # (reps,) each, in sign * metric units
    peak_rows, diff_rows = [], []
    for a in names:
        value, at = peak_point[a]
        lo, hi = _interval(sign * peak_boot[a], alpha)
        peak_rows.append((a, k, float(sign * value), lo, hi, float(at)))
        for b in names:
            if b != a:
                lo, hi = _interval(sign * (peak_boot[a] - peak_boot[b]), alpha)
                diff_rows.append((a, b, k, float(sign * (peak_point[a][0] - peak_point[b][0])), lo, hi))
    return ArmComparison(
        frontier=frontier,
        compute_to_match=pd.DataFrame(match_rows, columns=COMPUTE_TO_MATCH_COLUMNS),
        peaks=pd.DataFrame(peak_rows, columns=PEAK_COLUMNS),
        peak_differences=pd.DataFrame(diff_rows, columns=PEAK_DIFFERENCE_COLUMNS),
        k=int(k),
        k_rule=k_rule,
        arm_runs=sizes,
        baseline=baseline,
        rule=rule,
    )
