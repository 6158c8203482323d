"""Figures shared by the report and `agentsweep aggregate`, drawn on a bare Agg canvas (no pyplot start-up)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["DPI", "new_figure", "plot_profiles", "save"]

DPI = 110
"""PNG resolution: a 7-inch-wide figure is about 770 pixels, readable at a normal zoom."""


def new_figure(width_in: float, height_in: float):
    """A matplotlib Figure attached to an Agg canvas (what pyplot would make, without importing pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def plot_profiles(profile_rows: Sequence[tuple], path: Path, *, metric: str) -> Path:
    """Performance profiles (share of scores above tau) per group with their bootstrap bands, as PNG.

    Args:
        profile_rows: PROFILE_COLUMNS rows (group, tau, fraction, lo, hi), as `Aggregates.profile_rows`.
        path: the PNG to write.
        metric: the score's name, for the x axis.
    """
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    groups: dict[str, list[tuple]] = {}
    for row in profile_rows:
        groups.setdefault(row[0], []).append(row)
    for name, rows in groups.items():
        tau, frac, lo, hi = (list(col) for col in zip(*(r[1:5] for r in rows), strict=True))
        (line,) = ax.plot(tau, frac, label=name, lw=1.8)
        ax.fill_between(tau, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(f"{metric} threshold tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(title="group", fontsize=9)
    ax.set_title("performance profiles (95% stratified-bootstrap bands)", fontsize=11)
    return save(fig, path)
