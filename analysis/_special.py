"""The two special functions the report needs, in numpy and the standard library (scipy.special costs ~0.4 s
of start-up, a quarter of a report's budget).

- `log_factorials(n)`: log(0!), ..., log(n!) by a cumulative sum of logs (exact to float round-off).
- `t_quantile(dof, p)`: Student's t quantile for an integer number of degrees of freedom (the residual dof of
  an OLS fit). The CDF is the finite series of Abramowitz & Stegun 26.7.3 (odd dof) / 26.7.4 (even dof), exact
  for integer dof; the quantile is found by safeguarded Newton steps from the normal quantile, to ~1e-12.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["log_factorials", "t_cdf", "t_quantile"]


def log_factorials(n: int) -> np.ndarray:
    """(n + 1,) log(k!) for k = 0..n."""
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))])


def _abs_mass(t: float, dof: int) -> float:
    """P(|T| <= t) for t >= 0 (A&S 26.7.3 / 26.7.4)."""
    theta = math.atan(t / math.sqrt(dof))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if dof % 2 == 0:  # sin(theta) [1 + 1/2 c^2 + (1 3)/(2 4) c^4 + ... up to c^(dof-2)]
        j = np.arange(1, dof // 2)  # term j multiplies the previous by (2j - 1)/(2j) c^2
        terms = np.cumprod((2 * j - 1) / (2 * j) * c2) if len(j) else np.zeros(0)
        return float(s * (1.0 + terms.sum()))
    if dof == 1:
        return 2.0 * theta / math.pi
    # (2/pi)[theta + sin(theta) cos(theta) (1 + 2/3 c^2 + (2 4)/(3 5) c^4 + ... up to c^(dof-3))]
    j = np.arange(1, (dof - 1) // 2)
    terms = np.cumprod((2 * j) / (2 * j + 1) * c2) if len(j) else np.zeros(0)
    return float(2.0 / math.pi * (theta + s * math.sqrt(c2) * (1.0 + terms.sum())))


def t_cdf(t: float, dof: int) -> float:
    """P(T <= t) for Student's t with an integer dof >= 1."""
    half = 0.5 * _abs_mass(abs(t), dof)
    return 0.5 + half if t >= 0 else 0.5 - half


def _t_pdf(t: float, dof: int) -> float:
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return math.exp(log_c - (dof + 1) / 2 * math.log1p(t * t / dof))


def t_quantile(dof: int, p: float) -> float:
    """The p quantile of Student's t with integer dof >= 1 (as scipy.special.stdtrit(dof, p))."""
    if dof != int(dof) or dof < 1:
        raise ValueError(f"dof={dof} must be a positive integer (the residual degrees of freedom)")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p} must be inside (0, 1)")
    dof = int(dof)
    if p < 0.5:
        return -t_quantile(dof, 1.0 - p)
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    lo, hi = 0.0, max(1.0, NormalDist().inv_cdf(p))
    while t_cdf(hi, dof) < p:  # bracket [lo, hi]
        lo, hi = hi, 2.0 * hi
    t = min(max(NormalDist().inv_cdf(p), lo), hi)
    for _ in range(100):
        f = t_cdf(t, dof) - p
        if f > 0:
            hi = t
        else:
            lo = t
        step = f / _t_pdf(t, dof)
        new = t - step
        if not lo < new < hi:  # Newton left the bracket: bisect
            new = 0.5 * (lo + hi)
        if abs(new - t) <= 1e-13 * max(1.0, abs(t)):
            return new
        t = new
    return t
