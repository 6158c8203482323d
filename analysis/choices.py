"""The choices the CLI offers and the defaults it reads, stdlib only (so `--help` loads no numpy or pandas).

`BandMethod`: the distribution-free CDF band (`analysis.bands`); `BudgetRule`, `ArmOptions` and `ArmError`:
arms compared at an equal number of runs (`analysis.arms`, `agentsweep report --arm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "BAND_METHODS",
    "BUDGET_RULES",
    "DEFAULT_BAND_METHOD",
    "ArmError",
    "ArmOptions",
    "BandMethod",
    "BudgetRule",
]

BandMethod = Literal["ld_equal_tailed", "ld_highest_density", "dkw"]
"""Learned-Miller-DeStefano with each order statistic's equal-tailed or highest-density Beta interval (both at
their exact simultaneous level), or Dvoretzky-Kiefer-Wolfowitz-Massart."""
BAND_METHODS: tuple[BandMethod, ...] = get_args(BandMethod)
DEFAULT_BAND_METHOD: BandMethod = "ld_equal_tailed"
"""The default band: its pointwise level is tabled for n <= 500 (the highest-density one is computed)."""

BudgetRule = Literal["last", "checkpoint"]
"""A run's score as of a FLOPs budget C: its last evaluation with flops <= C, or the study's checkpoint rule
among those evaluations."""
BUDGET_RULES: tuple[BudgetRule, ...] = get_args(BudgetRule)


class ArmError(ValueError):
    """Bad arm input (unknown column or baseline, k larger than an arm): the message says what to pass."""


@dataclass(frozen=True)
class ArmOptions:
    """Arms compared at an equal number of runs k (the equal-k frontier and the compute-to-match ratio)."""

    column: str
    """Runs-table column naming each run's arm (e.g. params.arm); runs whose value is missing are in no arm."""
    baseline: str | None = None
    """The arm whose equal-k peak is the compute-to-match target (e.g. sft); None: no ratio."""
    k: int | None = None
    """Runs per arm; None: the smallest arm's number of runs."""
    rule: BudgetRule = "last"
    """A run's score as of a budget (see BudgetRule)."""
    reps: int = 500
    """Bootstrap replicates (runs resampled within each arm) behind the bands and the ratio's interval."""
