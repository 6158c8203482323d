"""Distribution-free simultaneous confidence bands for a CDF, from n iid scores (numpy only).

Two constructions, as opda (Lourie, Cho and He, "Show Your Work with Confidence", 2023) offers them:

- "ld_equal_tailed" (the default): Learned-Miller and DeStefano's band ("A Probabilistic Upper Bound on
  Differential Entropy", 2008). For a continuous F, U_(i) = F(Y_(i)) ~ Beta(i, n + 1 - i); take each order
  statistic's equal-tailed interval [l_i, h_i] at pointwise level c and widen c until all n hold at once with
  probability `level`. opda finds c by simulating 100,000 samples; here c is exact: the simultaneous coverage
  P(l_i <= U_(i) <= h_i for all i) is computed by a recursion over the 2n band edges (given j of the n
  uniforms below edge t, the number in the next gap (t, t') is Binomial(n - j, (t' - t) / (1 - t)); the count
  must stay between #{h_i <= t} and #{l_i < t}), and c is its root. F lies in the band everywhere with
  probability exactly `level` (continuous F; ties only make it conservative). The band is narrow at the ends
  and wider near the median, unlike DKW's constant width.
- "ld_highest_density" (opda's default): the same construction with each order statistic's highest-density
  (shortest) Beta interval instead of the equal-tailed one, at its own exact pointwise level (computed, not
  tabled: 0.8 s of CPU at n = 50, 9 s at n = 400, for each distinct n). It is narrower near the ends of the curve.
- "dkw": F_n -+ sqrt(log(2 / (1 - level)) / (2 n)) (Dvoretzky-Kiefer-Wolfowitz-Massart): closed form,
  conservative for small n.

The pointwise level c for level 0.95 and n <= 500 comes from a table (`_ld_levels.json`, made by
`ld_pointwise_level(n, 0.95, table=False)` for each n: `python -m analysis.bands`); other (n, level) are
computed (about 2 s at n = 600, 10 s at n = 1,000) and kept for the process.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from analysis._special import log_factorials
from analysis.choices import BAND_METHODS, BandMethod

__all__ = [
    "BAND_METHODS",
    "BandMethod",
    "beta_quantiles",
    "cdf_band",
    "highest_density_intervals",
    "ld_pointwise_level",
    "simultaneous_coverage",
]

_TABLE = Path(__file__).with_name("_ld_levels.json")
_TABLE_LEVEL = 0.95


def beta_quantiles(n: int, q: float, *, start: np.ndarray | None = None) -> np.ndarray:
    """(n,) the q quantile of Beta(i, n + 1 - i), i = 1..n (the i-th of n uniform order statistics).

    Solves P(Binomial(n, x) >= i) = q for each i by safeguarded Newton steps on log F against log x (the
    binomial tail is the Beta CDF; its derivative is the Beta density), to ~1e-13, from `start` (e.g. the quantiles at a
    nearby q) or a normal approximation.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q={q} must be inside (0, 1)")
    if q > 0.5:  # Beta(i, n + 1 - i) at q = 1 - Beta(n + 1 - i, i) at 1 - q: the lower tail converges well
        flipped = None if start is None else 1.0 - start[::-1]
        return 1.0 - beta_quantiles(n, 1.0 - q, start=flipped)[::-1]
    lf = log_factorials(n)
    i = np.arange(1, n + 1, dtype=float)
    k = np.arange(n + 1)
    log_binom = lf[n] - lf[k] - lf[n - k]  # (n + 1,)
    log_norm = lf[n] - lf[np.arange(n)] - lf[n - 1 - np.arange(n)]  # (n,) 1 / B(i, n + 1 - i)
    lo, hi = np.zeros(n), np.ones(n)
    if (
        start is None
    ):  # logit(U_(i)) is nearly normal: mean psi(i) - psi(n + 1 - i), var psi'(i) + psi'(n + 1 - i)
        from statistics import NormalDist

        j = n + 1 - i
        mean = _digamma(i) - _digamma(j)
        sd = np.sqrt(_trigamma(i) + _trigamma(j))
        start = 1.0 / (1.0 + np.exp(-(mean + NormalDist().inv_cdf(q) * sd)))
    x = np.clip(start, 1e-300, 1 - 1e-16)
    above = k[None, :] >= i[:, None]  # (n, n + 1) terms of P(Bin >= i)
    for _ in range(100):
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pmf = log_binom + k * np.log(x)[:, None] + (n - k) * np.log1p(-x)[:, None]  # (n, n + 1)
            cdf = np.where(above, np.exp(log_pmf), 0.0).sum(axis=1)
            dens = np.exp(log_norm + (i - 1) * np.log(x) + (n - i) * np.log1p(-x))
        f = cdf - q
        lo, hi = np.where(f < 0, x, lo), np.where(f >= 0, x, hi)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            # Newton on log F against log x: the lower tail is F ~ C x^i, nearly a line there
            new = x * np.exp(-(np.log(cdf) - np.log(q)) * cdf / (x * dens))
        bad = ~((new >= lo) & (new <= hi)) | ~np.isfinite(new)  # left the bracket: bisect
        new = np.where(bad, 0.5 * (lo + hi), new)
        if np.max(np.abs(new - x)) < 1e-14:
            return new
        x = new
    return x


def _beta_cdf_density(n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cdf, density) of Beta(i, n + 1 - i) at x[i - 1], i = 1..n (the binomial tail P(Bin(n, x) >= i))."""
    lf = log_factorials(n)
    i = np.arange(1, n + 1, dtype=float)
    k = np.arange(n + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = (lf[n] - lf[k] - lf[n - k]) + k * np.log(x)[:, None] + (n - k) * np.log1p(-x)[:, None]
        cdf = np.where(k[None, :] >= i[:, None], np.exp(log_pmf), 0.0).sum(axis=1)
        log_norm = lf[n] - lf[np.arange(n)] - lf[n - 1 - np.arange(n)]
        dens = np.exp(log_norm + (i - 1) * np.log(x) + (n - i) * np.log1p(-x))
    return cdf, dens


def highest_density_intervals(n: int, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (n,): the shortest interval holding `coverage` of Beta(i, n + 1 - i), i = 1..n.

    For 1 < i < n the density is unimodal inside (0, 1) and the interval [l, h] solves F(h) - F(l) = coverage
    with equal densities at both ends (Newton's method on the two equations, from the equal-tailed
    interval, kept on either side of the mode); the first order statistic's density decreases, so its interval
    is [0, F^-1(coverage)] = [0, 1 - (1 - coverage)^(1/n)], and the last one's [(1 - coverage)^(1/n), 1].
    n = 1 (a flat density: no unique shortest interval) gives the equal-tailed interval, as opda refuses it.
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage={coverage} must be inside (0, 1)")
    lo, hi = _equal_tailed(n, 1.0 - coverage)
    if n == 1:
        return lo, hi
    i = np.arange(1, n + 1, dtype=float)
    mode = (i - 1) / (n - 1)
    lo, hi = lo.copy(), hi.copy()
    for _ in range(100):
        cdf_lo, dens_lo = _beta_cdf_density(n, lo)
        cdf_hi, dens_hi = _beta_cdf_density(n, hi)
        f1 = cdf_hi - cdf_lo - coverage
        with np.errstate(divide="ignore", invalid="ignore"):
            slope_lo = (i - 1) / lo - (n - i) / (1 - lo)  # d log density / dx
            slope_hi = (i - 1) / hi - (n - i) / (1 - hi)
            f2 = (i - 1) * (np.log(lo) - np.log(hi)) + (n - i) * (np.log1p(-lo) - np.log1p(-hi))
            # Newton on (f1, f2) with Jacobian [[-dens_lo, dens_hi], [slope_lo, -slope_hi]]
            det = dens_lo * slope_hi - dens_hi * slope_lo
            step_lo = (-slope_hi * f1 - dens_hi * f2) / det
            step_hi = (-slope_lo * f1 - dens_lo * f2) / det
        inner = (i > 1) & (i < n)
        new_lo = np.where(inner, lo - step_lo, lo)
        new_hi = np.where(inner, hi - step_hi, hi)
        # stay on the mode's two sides, inside (0, 1): halfway to the bound where a step would leave them
        new_lo = np.where(np.isfinite(new_lo) & (new_lo > 0) & (new_lo < mode), new_lo, 0.5 * lo)
        new_lo = np.where(inner, new_lo, lo)
        new_hi = np.where(np.isfinite(new_hi) & (new_hi < 1) & (new_hi > mode), new_hi, 0.5 * (hi + 1))
        new_hi = np.where(inner, new_hi, hi)
        done = max(np.max(np.abs(new_lo - lo)), np.max(np.abs(new_hi - hi))) < 1e-14
        lo, hi = new_lo, new_hi
        if done:
            break
    lo[0], hi[0] = 0.0, 1.0 - (1.0 - coverage) ** (1.0 / n)
    lo[-1], hi[-1] = (1.0 - coverage) ** (1.0 / n), 1.0
    return lo, hi


def _digamma(a: np.ndarray) -> np.ndarray:
    """psi(a) for a >= 1: recurrence up to a >= 6, then the asymptotic series (error < 1e-10)."""
    shift = np.zeros_like(a)
    a = a.copy()
    for _ in range(6):
        small = a < 6
        shift -= np.where(small, 1.0 / a, 0.0)
        a = np.where(small, a + 1, a)
    inv2 = 1.0 / (a * a)
    return shift + np.log(a) - 0.5 / a - inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 / 252))


def _trigamma(a: np.ndarray) -> np.ndarray:
    """psi'(a) for a >= 1, as `_digamma` (error < 1e-9)."""
    shift = np.zeros_like(a)
    a = a.copy()
    for _ in range(6):
        small = a < 6
        shift += np.where(small, 1.0 / (a * a), 0.0)
        a = np.where(small, a + 1, a)
    inv2 = 1.0 / (a * a)
    return shift + 1.0 / a + 0.5 * inv2 + inv2 / a * (1 / 6 - inv2 * (1 / 30 - inv2 / 42))


def simultaneous_coverage(lo: np.ndarray, hi: np.ndarray) -> float:
    """P(lo_i <= U_(i) <= hi_i for every i) for the order statistics of n iid Uniform(0, 1).

    Args:
        lo, hi: (n,) non-decreasing bounds with lo_i < hi_i.
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    n = len(lo)
    lf = log_factorials(n)
    edges = np.sort(np.concatenate([lo, hi]))
    floor = np.searchsorted(hi, edges, side="right")  # (2n,) at least this many uniforms <= t
    ceil = np.searchsorted(lo, edges, side="left")  # (2n,) at most this many
    v, start, t_prev = np.ones(1), 0, 0.0  # v[j - start] = P(j uniforms <= t_prev, band held so far)
    for t, a, b in zip(edges, floor, ceil, strict=True):
        j = start + np.arange(len(v))[:, None]  # (J, 1) count before
        jn = np.arange(a, b + 1)[None, :]  # (1, J') count after
        d = jn - j
        p = (t - t_prev) / (1.0 - t_prev)
        if p <= 0.0:
            step = (d == 0).astype(float)
        elif (
            p >= 1.0
        ):  # the edge at 1 (a highest-density interval's end): every remaining uniform is below it
            step = (d == n - j).astype(float)
        else:
            ok = (d >= 0) & (d <= n - j)
            dd, rest = np.where(ok, d, 0), np.where(ok, n - j - d, 0)
            log_t = lf[n - j] - lf[dd] - lf[rest] + dd * np.log(p) + rest * np.log1p(-p)
            step = np.exp(np.where(ok, log_t, -np.inf))
        v, start, t_prev = v @ step, a, t
    return float(v.sum())


def _equal_tailed(n: int, alpha: float, start=(None, None)) -> tuple[np.ndarray, np.ndarray]:
    """Each order statistic's equal-tailed interval at pointwise miscoverage alpha."""
    return beta_quantiles(n, alpha / 2.0, start=start[0]), beta_quantiles(
        n, 1.0 - alpha / 2.0, start=start[1]
    )


@functools.cache
def _table() -> dict[int, float]:
    if not _TABLE.is_file():  # a source tree without the generated table: every level is computed
        return {}
    return {int(k): float(v) for k, v in json.loads(_TABLE.read_text())["alpha"].items()}


def _highest_density(n: int, alpha: float, start=None) -> tuple[np.ndarray, np.ndarray]:
    """Each order statistic's highest-density interval at pointwise miscoverage alpha."""
    return highest_density_intervals(n, 1.0 - alpha)


@functools.cache
def ld_pointwise_level(
    n: int,
    level: float = 0.95,
    *,
    table: bool = True,
    guess: float | None = None,
    kind: str = "equal_tailed",
) -> float:
    """The pointwise miscoverage alpha whose order-statistic intervals (`kind`: "equal_tailed" or
    "highest_density") hold all at once with probability `level` (Learned-Miller-DeStefano), by
    root-finding on `simultaneous_coverage`.

    Args:
        n: number of scores.
        level: simultaneous coverage.
        table: read (n, 0.95) from the shipped table when it has it (equal-tailed only).
        guess: a nearby alpha to start from (default: the table's trend beyond its end, else none).
        kind: which interval per order statistic.
    """
    intervals = {"equal_tailed": _equal_tailed, "highest_density": _highest_density}[kind]
    if kind == "equal_tailed" and table and level == _TABLE_LEVEL and n in _table():
        return _table()[n]
    target = float(level)
    last: list = [(None, None)]  # the previous evaluation's intervals: Newton's start for the next

    def excess(log_alpha: float) -> float:  # decreasing in alpha
        last[0] = intervals(n, float(np.exp(log_alpha)), last[0])
        return simultaneous_coverage(*last[0]) - target

    if guess is None and kind == "equal_tailed":
        guess = _guess(n, target)
    if guess is None:
        a, b = np.log(1.0 - target), np.log((1.0 - target) / (4.0 * n))  # excess(a) <= 0 <= excess(b)
    else:  # the table's trend carried to n: a narrow bracket, widened if it misses
        a, b = np.log(guess) + 0.05, np.log(guess) - 0.05
    fa, fb = excess(a), excess(b)
    while fa > 0:
        a, fa = min(a + 1.0, np.log(1.0 - target)), excess(min(a + 1.0, np.log(1.0 - target)))
    while fb < 0:
        b, fb = b - 1.0, excess(b - 1.0)
    side = 0
    for _ in range(60):  # Illinois regula falsi on log(alpha)
        c = b - fb * (b - a) / (fb - fa)
        fc = excess(c)
        if abs(fc) < 1e-10 or abs(b - a) < 1e-10:
            return float(np.exp(c))
        if (fc > 0) == (fb > 0):
            b, fb = c, fc
            if side == -1:
                fa /= 2.0
            side = -1
        else:
            a, fa = c, fc
            if side == 1:
                fb /= 2.0
            side = 1
    return float(np.exp(c))


def _guess(n: int, level: float) -> float | None:
    """alpha(n) extrapolated from the table's last entries (log alpha linear in log n), or None."""
    known = _table() if level == _TABLE_LEVEL else {}
    if len(known) < 50 or n <= max(known):
        return None
    top = max(known)
    slope = np.log(known[top] / known[top - 40]) / np.log(top / (top - 40))
    return float(known[top] * (n / top) ** slope)


def cdf_band(
    n: int, *, level: float = 0.95, method: BandMethod = "ld_equal_tailed"
) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous band for F at the sorted scores: (lower, upper), each (n + 1,).

    On [y_(i), y_(i+1)) (y_(0) = the metric's lower bound, y_(n+1) = its upper bound) the true CDF lies in
    [lower[i], upper[i]], for every i at once with probability >= level.
    """
    if method not in BAND_METHODS:
        raise ValueError(f"method={method!r}: use one of {', '.join(BAND_METHODS)}")
    if method == "dkw":
        eps = np.sqrt(np.log(2.0 / (1.0 - level)) / (2.0 * n))
        cdf = np.arange(n + 1) / n
        return np.clip(cdf - eps, 0.0, 1.0), np.clip(cdf + eps, 0.0, 1.0)
    lo, hi = _ld_band(n, float(level), method.removeprefix("ld_"))
    return lo.copy(), hi.copy()


@functools.cache
def _ld_band(n: int, level: float, kind: str = "equal_tailed") -> tuple[np.ndarray, np.ndarray]:
    alpha = ld_pointwise_level(n, level, kind=kind)
    lo, hi = _equal_tailed(n, alpha) if kind == "equal_tailed" else _highest_density(n, alpha)
    # below y_(i+1) at most i uniforms: F >= l_i there (l_0 = 0), and F <= h_(i+1) (h_(n+1) = 1)
    return np.concatenate([[0.0], lo]), np.concatenate([hi, [1.0]])


def _write_table(max_n: int = 500) -> None:
    alpha: dict[int, float] = {}
    for n in range(1, max_n + 1):  # each n starts from the previous one's level
        alpha[n] = ld_pointwise_level(n, _TABLE_LEVEL, table=False, guess=alpha.get(n - 1))
    _TABLE.write_text(json.dumps({"level": _TABLE_LEVEL, "alpha": {str(n): a for n, a in alpha.items()}}))


if __name__ == "__main__":
    _write_table()
