"""The study's headline findings beside ours: each one measured on a runs table, with the interval that decides it.

The study (Vattikonda et al., arXiv 2507.04103; ../shared/PAPER.md) reports five headline findings. Each row of
`paper_findings` restates one, gives the quantity that tests it on our runs, its 95% bootstrap or t interval and a
verdict (`Verdict`):

- "reproduced": the interval lies on the paper's side (a difference > 0, a ratio < 1);
- "not reproduced": the interval lies on the other side (the data contradict the finding);
- "not resolvable at this scale": the interval contains the boundary (0 or 1): these runs cannot tell;
- "not measured": the runs table lacks what the finding needs (an arm, a hyperparameter, a stratum).

The quantities:

1. SFT+RL > SFT-only > RL-only: differences of equal-k peaks (`analysis.arms`, the expected best of k runs at its
   best budget; every arm at the same k) between the arms, from the arm comparison's bootstrap.
2. SFT+RL reaches SFT-only's peak with 55% of its compute: the compute-to-match ratio and its interval
   (reproduced when the whole interval is below 1; the row says whether 0.55 is inside it).
3. Curriculum helps only from scratch and 4. error logs help only without SFT: the main-effects model's
   difference true - false (`analysis.effects`: twice the binary knob's effect, HC3 t-interval) in the base
   student's stratum (it must help there) and in every SFT branch point's stratum (it must not).
5. Branching early, but not from the instruct model, gives the best frontier: the peak of the mean RL run's curve
   (k = 1) per branch point; the earliest SFT branch point must beat the base student and not lose to a later one.

A finding that joins two claims (helps here, not there) is reproduced only when both hold and not reproduced when
either is contradicted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from analysis._values import value_sort_key
from analysis.choices import ArmError

logger = logging.getLogger(__name__)

__all__ = ["FINDINGS_COLUMNS", "PAPER_RATIO", "FindingArms", "Verdict", "paper_findings", "study_findings"]

Verdict = Literal["reproduced", "not reproduced", "not resolvable at this scale", "not measured"]
REPRODUCED, CONTRADICTED, UNRESOLVED, UNMEASURED = get_args(Verdict)
FINDINGS_COLUMNS = ["finding", "paper", "measure", "estimate", "lo", "hi", "verdict", "note"]
PAPER_RATIO = 0.55
"""The study's compute-to-match ratio: SFT+RL reaches SFT-only's peak with 55% of SFT-only's compute."""


@dataclass(frozen=True)
class FindingArms:
    """The arm labels of the runs table's arm column (the values `agentsweep export` writes to params.arm)."""

    sft: str = "sft"
    rl: str = "rl"
    sft_rl: str = "sft+rl"


def _side(lo: float, hi: float, boundary: float = 0.0, *, below: bool = False) -> Verdict:
    """The verdict of one interval against the paper's side of `boundary` (above it, or below with `below`)."""
    if np.isnan(lo) or np.isnan(hi):
        return UNMEASURED
    if below:
        lo, hi, boundary = -hi, -lo, -boundary
    if lo > boundary:
        return REPRODUCED
    if hi < boundary:
        return CONTRADICTED
    return UNRESOLVED


def _unmeasured(measure: str, note: str) -> dict:
    """A finding's row when the table lacks what it needs: no estimate, no interval, the note says what is missing."""
    return dict(measure=measure, estimate=np.nan, lo=np.nan, hi=np.nan, verdict=UNMEASURED, note=note)


def _joint(verdicts: list[Verdict]) -> Verdict:
    """Several claims that must all hold: contradicted if one is, reproduced if all are."""
    if not verdicts or UNMEASURED in verdicts:
        return UNMEASURED
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else UNRESOLVED


def _interval(estimate: float, lo: float, hi: float) -> str:
    return f"{estimate:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _peak_difference(comparison, arm: str, versus: str) -> tuple[float, float, float] | None:
    d = comparison.peak_differences
    row = d[(d["arm"] == arm) & (d["versus"] == versus)]
    if row.empty:
        return None
    r = row.iloc[0]
    return float(r["difference"]), float(r["lo"]), float(r["hi"])


def _arm_order(comparison, arms: FindingArms) -> dict:
    k = comparison.k if comparison is not None else None
    measure = f"equal-k peak difference (k = {k}, expected best of {k} runs)"
    pairs = [(arms.sft_rl, arms.sft), (arms.sft, arms.rl)]
    found = [_peak_difference(comparison, a, b) if comparison is not None else None for a, b in pairs]
    if any(f is None for f in found):
        have = sorted(comparison.arm_runs) if comparison is not None else []
        return _unmeasured(
            measure, f"needs the arms {arms.sft_rl}, {arms.sft} and {arms.rl}; the table has {have}"
        )
    verdict = _joint([_side(lo, hi) for _, lo, hi in found])
    (d1, lo1, hi1), (d2, lo2, hi2) = found
    note = (f"{arms.sft_rl} - {arms.sft}: {_interval(d1, lo1, hi1)}; {arms.sft} - {arms.rl}: "
            f"{_interval(d2, lo2, hi2)}; runs per arm {comparison.arm_runs}")  # fmt: skip
    single = sorted(a for a, n in comparison.arm_runs.items() if n == 1)
    if single:
        note += (f"; {', '.join(single)}: one run, whose peak a bootstrap over runs cannot vary (the interval "
                 "holds the other arm's spread only)")  # fmt: skip
    return dict(measure=measure + f", {arms.sft_rl} - {arms.sft}", estimate=d1, lo=lo1, hi=hi1, verdict=verdict,
                note=note)  # fmt: skip


def _compute_to_match(comparison, arms: FindingArms) -> dict:
    measure = "compute-to-match ratio (FLOPs to reach the SFT-only equal-k peak / SFT-only's FLOPs at it)"
    match = comparison.compute_to_match if comparison is not None else pd.DataFrame()
    row = match[match["arm"] == arms.sft_rl] if not match.empty else match
    if row.empty:
        return _unmeasured(
            measure, f"needs the {arms.sft_rl} arm compared against the baseline {arms.sft} (--baseline)"
        )
    r = row.iloc[0]
    ratio, lo, hi = float(r["ratio"]), float(r["lo"]), float(r["hi"])
    verdict = _side(lo, hi, 1.0, below=True) if np.isfinite(lo) else CONTRADICTED
    inside = lo <= PAPER_RATIO <= hi
    note = (f"{arms.sft_rl} reached the target {float(r['target']):.3f} in {float(r['p_reached']):.0%} of the "
            f"bootstrap replicates; the paper's {PAPER_RATIO:.0%} is {'inside' if inside else 'outside'} the "
            "interval")  # fmt: skip
    if not np.isfinite(ratio):
        note = f"{arms.sft_rl}'s equal-k curve never reaches SFT-only's peak; " + note
    return dict(measure=measure, estimate=ratio, lo=lo, hi=hi, verdict=verdict, note=note)


def _true_minus_false(effects: pd.DataFrame, stratum: str, hparam: str) -> tuple[float, float, float] | None:
    """The binary knob's difference mean(true) - mean(false) in one stratum: 2 x the effect of true (the two
    effects are +-e under sum-to-zero coding), with the same t-interval scaled by 2."""
    part = effects[(effects["stratum"].astype(str) == stratum) & (effects["hparam"] == hparam)]
    values = {str(v).lower(): r for v, r in zip(part["value"], part.itertuples(), strict=True)}
    if set(values) != {"true", "false"}:
        return None
    r = values["true"]
    return 2 * float(r.effect), 2 * float(r.effect_lo), 2 * float(r.effect_hi)


def _is_base(label: str) -> bool:
    """Whether a stratum label is the base student's branch point (0 SFT FLOPs)."""
    try:
        return float(label) == 0.0
    except ValueError:
        return False


def _helps_only_from_base(effects: pd.DataFrame, strata: list[str], hparam: str) -> dict:
    measure = f"main-effects difference {hparam}=true - false (95% t-interval), base stratum vs SFT strata"
    if effects.empty or len(strata) < 2 or not _is_base(strata[0]):
        return _unmeasured(
            measure, "needs the base student's stratum (branch point 0) and an SFT branch point (--stratum)"
        )
    base, later = strata[0], strata[1:]
    found = {s: _true_minus_false(effects, s, hparam) for s in strata}
    if found[base] is None:
        return _unmeasured(measure, f"{hparam} is not a varied true/false hyperparameter of stratum {base}")
    d, lo, hi = found[base]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return _unmeasured(
            measure, f"stratum {base} (base) has no interval: too few runs for the effects model"
        )
    verdicts = [_side(lo, hi)]
    parts = [f"stratum {base} (base): {_interval(d, lo, hi)}"]
    if lo == hi:
        parts.append("every base-stratum run scored the same, so the knob cannot show an effect there")
    for s in later:
        if found[s] is None or not np.isfinite(found[s][1]):
            parts.append(f"stratum {s}: no interval")
            continue
        ds, los, his = found[s]
        parts.append(f"stratum {s}: {_interval(ds, los, his)}")
        # it must not help after SFT: an interval above 0 there contradicts "only"
        verdicts.append(CONTRADICTED if los > 0 else REPRODUCED)
    return dict(measure=measure, estimate=d, lo=lo, hi=hi, verdict=_joint(verdicts), note="; ".join(parts))


def _branch_points(by_branch, strata: list[str]) -> dict:
    measure = "peak of the mean RL run (k = 1) per branch point: earliest SFT branch point - base student"
    if by_branch is None or len(strata) < 2 or not _is_base(strata[0]):
        return _unmeasured(
            measure, "needs RL runs from the base student (branch point 0) and from an SFT branch point"
        )
    base, early, later = strata[0], strata[1], strata[2:]
    found = _peak_difference(by_branch, early, base)
    if found is None:
        return _unmeasured(measure, f"no curves for strata {base} and {early}")
    d, lo, hi = found
    verdicts = [_side(lo, hi)]
    parts = [f"k = {by_branch.k}; {early} - {base}: {_interval(d, lo, hi)}"]
    for s in later:
        other = _peak_difference(by_branch, early, s)
        if other is None:
            continue
        parts.append(f"{early} - {s}: {_interval(*other)}")
        verdicts.append(CONTRADICTED if other[2] < 0 else REPRODUCED)  # a later branch point must not win
    return dict(measure=measure, estimate=d, lo=lo, hi=hi, verdict=_joint(verdicts), note="; ".join(parts))


def paper_findings(
    *,
    comparison=None,
    effects: pd.DataFrame | None = None,
    strata: list[str] | None = None,
    by_branch=None,
    arms: FindingArms = FindingArms(),  # noqa: B008 - frozen dataclass
) -> pd.DataFrame:
    """The five headline findings of the study beside ours (module docstring); one row each, FINDINGS_COLUMNS.

    Args:
        comparison: `analysis.arms.compare_arms` over the arm column with the SFT-only arm as baseline.
        effects: `analysis.effects.compute_effects`' effects table, stratified by branch point.
        strata: the effects' stratum labels in increasing SFT compute (the base student first).
        by_branch: `compare_arms` over the RL runs labelled by their stratum (the branch point).
        arms: the arm labels.
    """
    effects = effects if effects is not None else pd.DataFrame(columns=["stratum", "hparam", "value"])
    strata = sorted(strata or [], key=value_sort_key)
    rows = [
        ("SFT+RL > SFT-only > RL-only", "SFT+RL's frontier lies above SFT-only's, which lies above RL-only's",
         _arm_order(comparison, arms)),
        ("SFT+RL matches SFT-only with 55% of the compute", f"ratio {PAPER_RATIO}", _compute_to_match(comparison, arms)),
        ("curriculum helps only from scratch", "helps RL from the instruct model, not from SFT branch points",
         _helps_only_from_base(effects, strata, "curriculum")),
        ("error logs help only without SFT", "help RL from the instruct model, not from SFT branch points",
         _helps_only_from_base(effects, strata, "error_log")),
        ("branch early, not from the instruct model", "an early SFT branch point gives the best frontier",
         _branch_points(by_branch, strata)),
    ]  # fmt: skip
    out = pd.DataFrame([{"finding": f, "paper": p, **row} for f, p, row in rows])
    return out[FINDINGS_COLUMNS]


def study_findings(
    curves: pd.DataFrame,
    prepared,
    comparison,
    effects: pd.DataFrame,
    *,
    baseline: str = "sft",
    rule: str = "last",
    reps: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """`paper_findings` from what a report has computed: the arm comparison (its SFT-only baseline), the effects
    per branch point, and the peak of the mean RL run's curve per branch point (runs labelled by their stratum;
    k = 1: the expected best of all of a stratum's runs is its best run, whose bootstrap lies below it), which
    this function compares.

    Args:
        curves: the curves table (run_id, step, flops, the metric).
        prepared: `analysis.runs.PreparedRuns` of the hyperparameter runs (SFT-only arm left out), stratified by
            the branch point.
        comparison: `analysis.arms.compare_arms` over the arm column with `baseline`.
        effects: `analysis.effects.compute_effects`' effects table for `prepared`.
        baseline: the SFT-only arm's label.
        rule, reps, seed: the per-branch-point comparison's budget rule, bootstrap replicates and seed.
    """
    from analysis.arms import compare_arms

    strata = [label for label, _ in prepared.strata()] if prepared.stratum else []
    by_branch = None
    if len(strata) >= 2:
        labels = pd.Series(
            prepared.frame[prepared.stratum].astype(str).to_numpy(),
            index=prepared.frame["run_id"].astype(str).to_numpy(),
        )
        metric = prepared.metric.removeprefix("metrics.")
        try:
            by_branch = compare_arms(
                curves, labels, metric, k=1, rule=rule, mode=prepared.mode, reps=reps, seed=seed
            )
        except ArmError as exc:  # e.g. a stratum without curves: the finding reads "not measured"
            logger.warning("findings: no per-branch-point comparison (%s)", exc)
    return paper_findings(
        comparison=comparison,
        effects=effects,
        strata=strata,
        by_branch=by_branch,
        arms=FindingArms(sft=baseline),
    )
