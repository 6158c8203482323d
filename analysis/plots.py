"""Figures shared by the report and `agentsweep aggregate`, drawn on a bare Agg canvas (no pyplot start-up)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DPI",
    "new_figure",
    "plot_effects",
    "plot_frontier",
    "plot_frontier_k",
    "plot_profiles",
    "plot_tuning_curves",
    "plot_winrates",
    "save",
]

DPI = 96
"""PNG resolution: a 7-inch-wide figure is about 670 pixels, a 12-inch one 1,150: readable at a normal zoom."""


def new_figure(width_in: float, height_in: float, layout: str | None = "constrained"):
    """A matplotlib Figure attached to an Agg canvas (what pyplot would make, without importing pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout=layout)
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
    fig = new_figure(7.0, 4.2, layout=None)  # fixed margins: constrained layout was 0.13 s of CPU here
    fig.subplots_adjust(left=0.1, right=0.97, top=0.92, bottom=0.12)
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


def _tick(value: object) -> str:
    """A value as a label: long numbers in short scientific form (FLOPs 469546450944.0 -> 4.7e+11)."""
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text
    return f"{number:.3g}" if len(text) > 8 and number != 0 else text


def _rows(table, hparams: Sequence[str]) -> list[tuple[str, str]]:
    """(hparam, value) rows in the given hparam order, values in table order, as they appear in any stratum."""
    seen: dict[tuple[str, str], None] = {}
    for h in hparams:
        for v in table.loc[table.hparam == h, "value"]:
            seen.setdefault((h, str(v)), None)
    return list(seen)


def _few_ticks(ax, *, y: bool = True) -> None:
    """At most 5 major ticks on the x (and y) axis: each tick is two lines and two texts to build and draw."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    if y:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))


def _row_axes(strata: Sequence[str], rows: list[tuple[str, str]]):
    """One panel per stratum side by side, sharing the x axis (one metric scale across every hparam).

    Only the first panel carries the row labels; the others have no y ticks at all (a shared y axis would
    build every panel's ~50 ticks, most of the figure's drawing time), and each panel's separators between
    hyperparameters are one line collection.
    """
    width, height = min(4.2 * len(strata), 14.0) + 2.4, 1.3 + 0.2 * len(rows)
    fig = new_figure(width, height, layout=None)  # fixed margins: constrained layout costs a second here
    fig.subplots_adjust(left=2.4 / width, right=0.98, top=1 - 0.6 / height, bottom=0.55 / height, wspace=0.08)
    axes = fig.subplots(1, len(strata), sharex=True, squeeze=False)[0]
    _few_ticks(axes[0], y=False)
    labels = [f"{h} = {_tick(v)}" for h, v in rows]
    separators = [y - 0.5 for y in range(1, len(rows)) if rows[y - 1][0] != rows[y][0]]
    for i, ax in enumerate(axes):
        if i == 0:
            ax.set_yticks(range(len(rows)), labels, fontsize=8)
        else:
            ax.set_yticks([])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        if separators:
            ax.hlines(separators, 0, 1, transform=ax.get_yaxis_transform(), color="#ddd", lw=0.8)
    return fig, axes


def _stratum_panels(table, strata: Sequence[str], hparams: Sequence[str]):
    """The figure and, per stratum, (axes, stratum, its rows of `table`, their y positions)."""
    rows = _rows(table, hparams)
    index = {r: i for i, r in enumerate(rows)}
    fig, axes = _row_axes(strata, rows)
    panels = []
    for ax, stratum in zip(axes, strata, strict=True):
        part = table[table.stratum == stratum]
        y = [index[(h, str(v))] for h, v in zip(part.hparam, part.value, strict=True)]
        ax.set_title(f"stratum {_tick(stratum)}", fontsize=10)
        panels.append((ax, part, y))
    return fig, panels


def plot_effects(effects, strata: Sequence[str], hparams: Sequence[str], path: Path, *, metric: str) -> Path:
    """Marginal mean per (hparam, value) with the effect's 95% interval, one panel per stratum, one x axis.

    Args:
        effects: EFFECTS_COLUMNS table (stratum, hparam, value, mean, effect, effect_lo, effect_hi, significant).
        strata, hparams: panel and row order (hparams most important first).
    """
    fig, panels = _stratum_panels(effects, strata, hparams)
    for ax, e, y in panels:
        lo, hi = e["mean"] + (e.effect_lo - e.effect), e["mean"] + (e.effect_hi - e.effect)
        ax.hlines(y, lo, hi, color="#888", lw=1.5)
        ax.scatter(e["mean"], y, c=["tab:red" if s else "#444" for s in e.significant], s=22, zorder=3)
        ax.set_xlabel(f"{metric} (marginal mean)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        "effects: marginal mean per value, 95% interval of its effect (red: significant)", fontsize=11
    )
    return save(fig, path)


def plot_winrates(alg1, strata: Sequence[str], hparams: Sequence[str], path: Path) -> Path:
    """Algorithm 1's win rate per (hparam, value) with its outer-bootstrap interval, one panel per stratum."""
    fig, panels = _stratum_panels(alg1, strata, hparams)
    for ax, a, y in panels:
        err = None
        if "win_lo" in a:
            err = [(a.win_rate - a.win_lo).clip(lower=0), (a.win_hi - a.win_rate).clip(lower=0)]
        ax.barh(y, a.win_rate, xerr=err, color="tab:blue", height=0.7, error_kw={"lw": 0.8})
        ax.set_xlim(0, 1)
        ax.set_xlabel("win rate", fontsize=9)
    fig.suptitle("Algorithm 1: how often each value holds the best run of a resampled study", fontsize=11)
    return save(fig, path)


def plot_tuning_curves(
    curves, strata: Sequence[str], hparams: Sequence[str], path: Path, *, metric: str
) -> Path:
    """Expected best of k runs per value with its band; rows: strata, columns: hparams; one metric axis."""
    cols = max(len(hparams), 1)
    fig = new_figure(4.0 * cols, 2.9 * len(strata), layout=None)
    fig.subplots_adjust(
        left=0.08,
        right=0.98,
        top=1 - 0.75 / (2.9 * len(strata)),
        bottom=0.5 / (2.9 * len(strata)),
        hspace=0.3,
        wspace=0.08,
    )
    axes = fig.subplots(len(strata), cols, sharex=True, sharey=True, squeeze=False)
    _few_ticks(
        axes[0, 0]
    )  # the axes are shared: 4-5 ticks each instead of ~8 (ticks are most of the drawing)
    shown = curves[curves.hparam.isin(list(hparams))]
    lines = {key: part for key, part in shown.groupby(["stratum", "hparam", "value"], sort=False)}
    for r, stratum in enumerate(strata):
        for c, name in enumerate(hparams):
            ax = axes[r, c]
            for (s, h, value), line in lines.items():
                if s != stratum or h != name:
                    continue
                k = line.k.to_numpy()
                (handle,) = ax.plot(k, line.expected_best.to_numpy(), label=_tick(value), lw=1.6)
                ax.fill_between(
                    k, line.lo.to_numpy(), line.hi.to_numpy(), color=handle.get_color(), alpha=0.15, lw=0
                )
            ax.set_title(f"{name} | stratum {_tick(stratum)}", fontsize=9)
            ax.grid(alpha=0.3)
            if r == 0:  # the same values in every stratum: one legend per column
                ax.legend(fontsize=8, title=name, title_fontsize=8)
            if r == len(strata) - 1:
                ax.set_xlabel("k runs", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"best {metric}", fontsize=9)
    fig.suptitle("expected best of k random runs (unbiased estimator; 95% bands)", fontsize=11)
    return save(fig, path)


def plot_frontier_k(frontier_k, match, path: Path, *, metric: str, arms: dict | None = None) -> Path:
    """Arms at an equal number of runs: the expected best of k runs per FLOPs budget, one line and band per arm,
    log FLOPs, the baseline's peak as a horizontal line (with `match`, the COMPUTE_TO_MATCH_COLUMNS table).

    Args:
        frontier_k: FRONTIER_K_COLUMNS table (arm, k, flops, expected_best, lo, hi, n_runs).
        match: compute_to_match table, or None (no baseline).
        arms: the report's summary["arms"] (runs per arm, for the legend).
    """
    fig = new_figure(8.0, 4.8, layout=None)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.12)
    ax = fig.add_subplot()
    runs = (arms or {}).get("arm_runs", {})
    k = int(frontier_k.k.iloc[0]) if len(frontier_k) else 0
    for name, part in frontier_k.groupby("arm", sort=False):
        label = f"{name} ({runs[name]} runs)" if name in runs else str(name)
        (line,) = ax.plot(part.flops, part.expected_best, label=label, lw=2.0, drawstyle="steps-post")
        ax.fill_between(part.flops, part.lo, part.hi, color=line.get_color(), alpha=0.18, lw=0, step="post")
    if match is not None and len(match):
        row = match.iloc[0]
        ax.axhline(row.target, color="#444", ls="--", lw=1.2, label=f"{row.baseline} peak ({row.target:.3g})")
        ax.axvline(row.baseline_flops_at_peak, color="#999", ls=":", lw=1.0)
        for _, r in match.iterrows():
            if np.isfinite(r.flops_to_match):
                ax.plot([r.flops_to_match], [r.target], "o", color="#444", ms=5)
    ax.set_xscale("log")
    ax.set_xlabel("total FLOPs (SFT+RL runs include the SFT FLOPs to their branch point)")
    ax.set_ylabel(f"expected best {metric} of k={k} runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    ax.set_title(f"arms at an equal number of runs (k = {k}): expected best of {k} runs; 95% bootstrap bands",
                 fontsize=11)  # fmt: skip
    return save(fig, path)


def plot_frontier(frontier, path: Path, *, metric: str) -> Path:
    """The envelope per stratum (the best evaluation of any run within C FLOPs) with its band; it grows with
    the number of runs (`plot_frontier_k` compares arms at an equal number)."""
    fig = new_figure(7.0, 4.2, layout=None)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.92, bottom=0.12)
    ax = fig.add_subplot()
    for label, part in frontier.groupby("stratum", sort=False):
        (line,) = ax.plot(part.flops, part.frontier, label=f"stratum {_tick(label)}", lw=1.8)
        ax.fill_between(part.flops, part.lo, part.hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("cumulative FLOPs")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.set_title(
        "envelope: best evaluation of any run within C FLOPs (grows with the number of runs; 95% band)",
        fontsize=10,
    )
    ax.legend(fontsize=9)
    return save(fig, path)
