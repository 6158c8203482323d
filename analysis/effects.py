"""Effect estimates people can trust: a main-effects model per stratum, with honest intervals.

The study's Algorithm 1 ranks values by bootstrapped maxima, which the spread created by the other
hyperparameters hides. Here, per stratum, the metric is regressed on ALL hyperparameters at once (each a
categorical factor), so every run informs every hyperparameter and the others' spread is explained away:

    y_r = mu + sum_H beta_H[x_rH] + eps_r                                            (OLS, one fit per stratum)

Coding: deviation (sum-to-zero) coding per hyperparameter over its *active* values; a conditional
hyperparameter's columns are 0 on runs where it is inactive (nested coding), so it is estimated only from the
runs where it is active and its inactivity is absorbed by its parent.

Per value h of H (within a stratum):
- `mean`: the estimated marginal mean at H = h, averaging over the other hyperparameters as the study sampled
  them: the mean over the runs where H is active of the model's prediction with H set to h (g-computation).
- `effect`: mean minus the unweighted average of H's value means. It is a linear contrast c'theta of the
  coefficients; its standard error comes from the HC3 heteroskedasticity-consistent covariance
  (MacKinnon & White 1985), which stays honest when the noise differs between configurations (success rates
  near 0 or 1 have little variance).
- `effect_lo/effect_hi`: 95% t-interval (df = runs - parameters).
- `significant`: the interval adjusted by Bonferroni over H's K values (level 0.05/K per value) excludes 0,
  so a hyperparameter without effect gets a false flag in at most ~5% of studies.
- `p_best`: the probability that h has the highest (lowest for mode=min) marginal mean, from `num_draws`
  draws of the value means from their estimated joint normal distribution (seeded). Values tied for the best in
  a draw share it equally, so when every run scored the same (zero variance) each of K values gets 1/K, not the
  first one 1.

Importance per hyperparameter: the standard deviation of its value effects, debiased for estimation noise,
sd_H = sqrt(max(0, mean_k e_k^2 - mean_k Var(e_k))), in the metric's units, with a 95% interval from the
same normal draws. It reads as "how much the metric moves, typically, when you change H".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis._special import t_quantile
from analysis._values import value_sort_key

logger = logging.getLogger(__name__)

__all__ = [
    "EFFECTS_COLUMNS",
    "IMPORTANCE_COLUMNS",
    "IMPORTANCE_METHOD",
    "compute_effects",
    "fit_main_effects",
]

EFFECTS_COLUMNS = [
    "stratum",
    "hparam",
    "value",
    "n_runs",
    "mean",
    "effect",
    "effect_lo",
    "effect_hi",
    "p_best",
    "significant",
]
IMPORTANCE_COLUMNS = ["stratum", "hparam", "importance", "importance_lo", "importance_hi", "method"]
IMPORTANCE_METHOD = "main-effects OLS (HC3): debiased SD of value effects; 95% CI from normal draws"


@dataclass(frozen=True)
class _Factor:
    """The columns one hyperparameter occupies in the design matrix."""

    name: str
    levels: tuple[str, ...]  # active values, sorted
    start: int  # first design column (K - 1 columns)
    active: np.ndarray  # (n,) bool: runs where the hyperparameter is active
    codes: np.ndarray  # (n,) int: level index, -1 where inactive


def _coding_rows(num_levels: int) -> np.ndarray:
    """Deviation coding: (K, K-1); level k < K-1 -> unit vector e_k, the last level -> all -1."""
    rows = np.vstack([np.eye(num_levels - 1), -np.ones((1, num_levels - 1))])
    return rows


def _build_design(frame: pd.DataFrame, hparams: Sequence[str]) -> tuple[np.ndarray, list[_Factor]]:
    """Design matrix (n, 1 + sum_H (K_H - 1)) with an intercept and deviation-coded factors."""
    n = len(frame)
    blocks, factors, start = [np.ones((n, 1))], [], 1
    for name in hparams:
        values = frame[name].astype(str).to_numpy()
        active = values != ""
        levels = tuple(sorted(set(values[active]), key=value_sort_key))
        if len(levels) < 2:
            continue  # a constant hyperparameter has no estimable effect here
        index = {v: i for i, v in enumerate(levels)}
        codes = np.array([index.get(v, -1) for v in values])
        coding = _coding_rows(len(levels))
        block = np.zeros((n, len(levels) - 1))
        block[active] = coding[codes[active]]
        blocks.append(block)
        factors.append(_Factor(name, levels, start, active, codes))
        start += len(levels) - 1
    return np.hstack(blocks), factors


def _ols_hc3(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """OLS coefficients (p,), HC3 covariance (p, p) and residual degrees of freedom.

    One thin SVD gives the pseudo-inverse (rank-safe), the rank and the hat-matrix diagonal.
    """
    u, sing, vt = np.linalg.svd(design, full_matrices=False)  # (n, p), (p,), (p, p)
    keep = sing > sing.max() * max(design.shape) * np.finfo(float).eps
    u, sing, vt = u[:, keep], sing[keep], vt[keep]
    pinv = (vt.T / sing) @ u.T  # (p, n)
    theta = pinv @ y
    resid = y - design @ theta
    leverage = np.einsum("ij,ij->i", u, u)  # diag of the hat matrix U U'
    scale = resid / np.clip(1.0 - leverage, 1e-8, None)
    meat = pinv * scale  # (p, n): pinv diag(scale)
    cov = meat @ meat.T
    # 0 when the runs fit exactly (as many independent coefficients as runs): no error estimate
    dof = len(y) - int(keep.sum())
    return theta, cov, dof


@dataclass(frozen=True)
class MainEffectsFit:
    """One stratum's fit: per factor, the value means as linear maps of the coefficients."""

    theta: np.ndarray  # (p,)
    cov: np.ndarray  # (p, p)
    dof: int
    factors: tuple[_Factor, ...]
    contrasts: tuple[np.ndarray, ...]  # per factor, (K, p): value mean_k = contrasts[k] @ theta


def fit_main_effects(frame: pd.DataFrame, metric: str, hparams: Sequence[str]) -> MainEffectsFit:
    """Fit the main-effects model on one stratum's runs.

    Args:
        frame: (num_runs, ...) runs with string-valued hyperparameter columns ("" = inactive) and `metric`.
        metric: the float column to model.
        hparams: the hyperparameter columns.

    Returns:
        The fit, with per-factor contrast matrices mapping coefficients to marginal value means.
    """
    y = frame[metric].to_numpy(dtype=float)
    design, factors = _build_design(frame, hparams)
    theta, cov, dof = _ols_hc3(design, y)
    contrasts = []
    for f in factors:
        width = len(f.levels) - 1
        base = design[f.active].mean(axis=0)  # average design row over the runs where H is active
        base[f.start : f.start + width] = 0.0
        rows = np.tile(base, (len(f.levels), 1))  # (K, p): counterfactual "H = level k" for every active run
        rows[:, f.start : f.start + width] = _coding_rows(len(f.levels))
        contrasts.append(rows)
    return MainEffectsFit(theta, cov, dof, tuple(factors), tuple(contrasts))


def _share_of_best(draws: np.ndarray, mode: str) -> np.ndarray:
    """Per column of `draws` (D, K): the mean share of the best value over the D draws, ties split equally."""
    best = draws.max(axis=1, keepdims=True) if mode == "max" else draws.min(axis=1, keepdims=True)
    tol = 1e-12 * max(1.0, float(np.abs(draws).max(initial=0.0)))
    tied = np.abs(draws - best) <= tol
    return (tied / tied.sum(axis=1, keepdims=True)).mean(axis=0)


def _factor_tables(
    fit: MainEffectsFit, k: int, *, mode: str, num_draws: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], tuple[float, float, float]]:
    """Value means, effects, intervals, p_best for factor k, and its (importance, lo, hi)."""
    f, rows = fit.factors[k], fit.contrasts[k]
    num_levels = len(f.levels)
    centre = np.eye(num_levels) - 1.0 / num_levels  # effect = mean - average of means
    means = rows @ fit.theta
    effect_map = centre @ rows  # (K, p)
    effects = effect_map @ fit.theta
    table = {
        "value": np.asarray(f.levels, dtype=object),
        "n_runs": np.bincount(f.codes[f.active], minlength=num_levels),
        "mean": means,
        "effect": effects,
    }
    if fit.dof < 1:
        # saturated: zero residuals would make every interval zero-wide; say "unknown", not "significant"
        nan = np.full(num_levels, np.nan)
        table |= {
            "effect_lo": nan,
            "effect_hi": nan,
            "p_best": nan,
            "significant": np.zeros(num_levels, bool),
        }
        return table, (float("nan"), float("nan"), float("nan"))
    effect_cov = effect_map @ fit.cov @ effect_map.T
    se = np.sqrt(np.clip(np.diag(effect_cov), 0.0, None))
    t95 = t_quantile(fit.dof, 0.975)
    t_adj = t_quantile(fit.dof, 1.0 - 0.025 / num_levels)  # Bonferroni over the K values
    mean_cov = rows @ fit.cov @ rows.T
    draws = rng.multivariate_normal(means, mean_cov, size=num_draws, method="eigh")  # (D, K)
    p_best = _share_of_best(draws, mode)
    noise = np.diag(effect_cov).mean()
    importance = float(np.sqrt(max(0.0, np.mean(effects**2) - noise)))
    draw_effects = draws - draws.mean(axis=1, keepdims=True)  # (D, K)
    draw_imp = np.sqrt(np.clip(np.mean(draw_effects**2, axis=1) - 2.0 * noise, 0.0, None))
    lo, hi = np.quantile(draw_imp, [0.025, 0.975])
    table |= {
        "effect_lo": effects - t95 * se,
        "effect_hi": effects + t95 * se,
        "p_best": p_best,
        "significant": np.abs(effects) > t_adj * se,
    }
    return table, (importance, float(lo), float(hi))


def compute_effects(
    runs: pd.DataFrame,
    *,
    metric: str,
    stratum: str | None,
    hparams: Sequence[str],
    mode: str = "max",
    seed: int = 0,
    num_draws: int = 4000,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Effects and importance per stratum and hyperparameter (see the module docstring for the method).

    Args:
        runs: (num_runs, ...) the analysed runs, already filtered (finished, finite metric) and binned:
            hyperparameter columns hold strings, "" where a conditional hyperparameter is inactive.
        metric: the metric column.
        stratum: the stratum column, or None for one stratum called "all".
        hparams: hyperparameter columns (the `params.` prefix, if any, is dropped in the output).
        mode: "max" or "min": which direction `p_best` looks for.
        seed: seeds the normal draws behind `p_best` and the importance interval.
        num_draws: number of normal draws.

    Returns:
        effects (columns EFFECTS_COLUMNS first) and importance (IMPORTANCE_COLUMNS), rows ordered by stratum,
        then hyperparameter as given, then value.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r}: use 'max' or 'min'")
    missing = [c for c in [metric, *hparams, *([stratum] if stratum else [])] if c not in runs.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the runs table; pass existing columns")
    rng = np.random.default_rng(seed)
    hparams = [h for h in hparams if h != stratum]
    if stratum:
        groups = sorted(
            runs.groupby(runs[stratum].astype(str), sort=False), key=lambda kv: value_sort_key(kv[0])
        )
    else:
        groups = [("all", runs)]
    effect_rows, importance_rows = [], []
    for stratum_value, frame in groups:
        if len(frame) < 3:
            continue
        fit = fit_main_effects(frame, metric, hparams)
        if fit.dof < 1:
            logger.warning(
                "stratum %s: %d runs for %d main-effect coefficients leave no residual degrees of freedom; "
                "effects are shown without intervals, significance or importance (add runs to get them)",
                stratum_value,
                len(frame),
                len(fit.theta),
            )
        for k, f in enumerate(fit.factors):
            table, (imp, lo, hi) = _factor_tables(fit, k, mode=mode, num_draws=num_draws, rng=rng)
            label = f.name.removeprefix("params.")
            part = pd.DataFrame(table)
            part.insert(0, "hparam", label)
            part.insert(0, "stratum", str(stratum_value))
            effect_rows.append(part)
            importance_rows.append((str(stratum_value), label, imp, lo, hi, IMPORTANCE_METHOD))
    effects = (
        pd.concat(effect_rows, ignore_index=True) if effect_rows else pd.DataFrame(columns=EFFECTS_COLUMNS)
    )
    importance = pd.DataFrame(importance_rows, columns=IMPORTANCE_COLUMNS)
    return effects[EFFECTS_COLUMNS], importance
