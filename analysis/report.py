"""The report: runs table in, CSV tables, `summary.json`, PNG plots and one self-contained `report.html` out.

Which table to read for what:
- `effects.csv` (main-effects model): "what does value h do to the metric, on average over everything else,
  and how sure are we". Read this to choose values and to say that a hyperparameter does not matter.
- `hparams.csv` (the study's Algorithm 1): "how often does value h sit in the best run of a resampled study".
  It is about the top of the distribution, reproduces the paper's tables, and is noisy: the spread created by
  the other hyperparameters can hide a real effect.
- `tuning_curves.csv`: expected best of k random runs per value (unbiased): what a budget of k runs buys.
- `frontier.csv`, `compute_to_target.csv`, `budget_winners.csv` (with curves): success vs FLOPs.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis._output import finish_folder, open_folder
from analysis.aggregate import value_aggregates
from analysis.bootstrap import algorithm1_table, win_rate_intervals
from analysis.curves import budget_grid, compute_to_reach, frontier, reached_by_budget, tuning_curves
from analysis.effects import compute_effects
from analysis.runs import PreparedRuns, load_curves, load_runs, prepare_runs

__all__ = ["ReportOptions", "ReportResult", "build_report"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOptions:
    """Everything `agentsweep report` can be told."""

    metric: str = "metrics.heldout_goal_success"
    """The metric column to rank by."""
    stratum: str | None = None
    """Stratum column (e.g. params.sft_checkpoint); None: one stratum "all"."""
    hparams: tuple[str, ...] | None = None
    """Hyperparameter columns; default every params.* column except the stratum."""
    mode: str = "max"
    """max: larger metric is better; min: smaller is better."""
    method: str = "exact"
    """Algorithm 1: exact (closed form) or mc (Monte Carlo with `resamples`)."""
    resamples: int = 1000
    """B for --method mc."""
    seed: int = 0
    """Seeds every random draw of the report."""
    bins: int = 4
    """Quantile bins for continuous hyperparameters."""
    target: float | None = None
    """Score for compute_to_target.csv (default: the best score of the lowest stratum's frontier)."""
    win_ci_reps: int = 50
    """Outer bootstrap replicates behind the win-rate bars' intervals (0: none)."""
    plots: bool = True
    """Write PNGs and embed them in report.html."""


@dataclass
class ReportResult:
    out_dir: Path
    summary: dict
    files: list[Path] = field(default_factory=list)


def build_report(
    runs_source: str | Path | pd.DataFrame,
    out_dir: str | Path,
    options: ReportOptions = ReportOptions(),  # noqa: B008 - frozen dataclass
    *,
    curves_source: str | Path | pd.DataFrame | None = None,
    tracking_uri: str | None = None,
) -> ReportResult:
    """Run every analysis on a runs table and write the report folder."""
    t0 = time.perf_counter()
    out = open_folder(out_dir)
    runs = (
        runs_source
        if isinstance(runs_source, pd.DataFrame)
        else load_runs(runs_source, tracking_uri=tracking_uri)
    )
    prepared = prepare_runs(
        runs, metric=options.metric, stratum=options.stratum, hparams=options.hparams, mode=options.mode,
        bins=options.bins,
    )  # fmt: skip
    tables: dict[str, pd.DataFrame] = {}
    alg1 = algorithm1_table(prepared, method=options.method, resamples=options.resamples, seed=options.seed)
    if options.win_ci_reps > 0:
        ci = win_rate_intervals(prepared, reps=options.win_ci_reps, seed=options.seed)
        alg1 = alg1.merge(ci, on=["stratum", "hparam", "value"], how="left")
    tables["hparams"] = alg1
    effects, importance = compute_effects(
        prepared.frame, metric=prepared.metric, stratum=prepared.stratum, hparams=prepared.hparams,
        mode=prepared.mode, seed=options.seed,
    )  # fmt: skip
    tables["effects"], tables["importance"] = (
        effects,
        importance.sort_values(["stratum", "importance"], ascending=[True, False], kind="stable"),
    )
    tables["tuning_curves"] = tuning_curves(prepared, seed=options.seed)
    tables["aggregates"] = value_aggregates(prepared, reps=1000, seed=options.seed)
    if curves_source is not None:
        curves = curves_source if isinstance(curves_source, pd.DataFrame) else load_curves(curves_source)
        tables.update(_compute_tables(prepared, curves, options))
    files = []
    for name, table in tables.items():
        path = out / f"{name}.csv"
        table.to_csv(path, index=False)
        files.append(path)
    summary = _summary(prepared, tables, options, runs_source)
    figures = _plots(prepared, tables, out) if options.plots else {}
    files += list(figures.values())
    summary["files"] = sorted(p.name for p in files) + ["summary.json", "report.html"]
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))
    (out / "report.html").write_text(_html(summary, tables, figures))
    files += [out / "summary.json", out / "report.html"]
    finish_folder(out, files)
    return ReportResult(out, summary, files)


def _json_default(obj):
    if isinstance(obj, np.integer | np.floating | np.bool_):
        return obj.item()
    return str(obj)


def _compute_tables(
    prepared: PreparedRuns, curves: pd.DataFrame, options: ReportOptions
) -> dict[str, pd.DataFrame]:
    metric = prepared.metric.removeprefix("metrics.")
    if metric not in curves.columns:
        raise ValueError(f"the curves table has no column {metric!r}; columns: {list(curves.columns)}")
    rng = np.random.default_rng(options.seed)
    used = set(prepared.frame["run_id"])
    curves = curves[curves["run_id"].isin(used)]
    if curves.empty:
        raise ValueError(
            f"the curves table shares no run_id with the {len(used)} analysed runs (e.g. runs "
            f"{sorted(used)[:2]}): pass the curves exported with this runs table (runs.curves.parquet)"
        )
    strata = prepared.frame.set_index("run_id")[prepared.stratum] if prepared.stratum else None
    fronts = []
    for label, frame in prepared.strata():
        part = curves[curves["run_id"].isin(set(frame["run_id"]))]
        if not part.empty:
            f = frontier(part, metric, rng=rng, reps=100)
            f.insert(0, "stratum", label)
            fronts.append(f)
    out = {"frontier": pd.concat(fronts, ignore_index=True)} if fronts else {}
    target = options.target
    if target is None and fronts:
        target = float(np.nanmax(fronts[0]["frontier"]))  # the lowest stratum's best: e.g. SFT-only's peak
    if target is not None:
        reach = compute_to_reach(curves, metric, target, groups=strata, rng=rng, reps=300)
        reach.insert(1, "target", target)
        out["compute_to_target"] = reach
    rows = []
    for budget in budget_grid(curves):
        scores = reached_by_budget(curves, metric, budget)
        frame = prepared.frame[prepared.frame["run_id"].isin(scores.index)].copy()
        if len(frame) < 2:
            continue
        frame[prepared.metric] = scores.loc[frame["run_id"]].to_numpy()
        sub = PreparedRuns(frame, prepared.metric, prepared.stratum, prepared.hparams, prepared.mode)
        t = algorithm1_table(sub, method="exact")
        winners = t.loc[t.groupby(["stratum", "hparam"])["win_rate"].idxmax()]
        winners = winners.assign(budget_flops=budget)[
            ["budget_flops", "stratum", "hparam", "value", "win_rate", "n_runs"]
        ]
        rows.append(winners.rename(columns={"value": "winner", "n_runs": "winner_n_runs"}))
    if rows:
        out["budget_winners"] = pd.concat(rows, ignore_index=True)
    return out


def _summary(prepared: PreparedRuns, tables: dict[str, pd.DataFrame], options: ReportOptions, source) -> dict:
    alg1, effects, importance = tables["hparams"], tables["effects"], tables["importance"]
    strata = {}
    for label, frame in prepared.strata():
        per_h = {}
        for h in prepared.hparams:
            name = h.removeprefix("params.")
            a = alg1[(alg1.stratum == label) & (alg1.hparam == name)]
            e = effects[(effects.stratum == label) & (effects.hparam == name)]
            imp = importance[(importance.stratum == label) & (importance.hparam == name)]
            if a.empty:
                continue
            top_a = a.loc[a.win_rate.idxmax()]
            entry = {"algorithm1_winner": top_a.value, "win_rate": float(top_a.win_rate)}
            if not e.empty and e.p_best.notna().any():  # all NaN: the stratum's fit had no residual dof
                top_e = e.loc[e.p_best.idxmax()]
                entry |= {
                    "effects_best": top_e.value, "p_best": float(top_e.p_best),
                    "any_significant": bool(e.significant.any()),
                    "importance": float(imp.importance.iloc[0]) if not imp.empty else None,
                }  # fmt: skip
            per_h[name] = entry
        e_all = effects[effects.stratum == label]
        strata[label] = {"n_runs": int(len(frame)), "hparams": per_h,
                         "effects_without_intervals": bool(len(e_all) and e_all.effect_lo.isna().all())}  # fmt: skip
    return {
        "source": source if isinstance(source, str | Path) else "<DataFrame>",
        "metric": prepared.metric, "mode": prepared.mode, "stratum": prepared.stratum,
        "method": options.method, "resamples": options.resamples if options.method == "mc" else None,
        "seed": options.seed, "n_runs_used": int(len(prepared.frame)), "excluded": prepared.excluded,
        "hparams": [h.removeprefix("params.") for h in prepared.hparams],
        "binned": {h.removeprefix("params."): bins for h, bins in prepared.binned.items()},
        "binning": f"quantile bins ({options.bins}) for numeric hyperparameters with > 12 distinct values",
        "importance_method": str(importance["method"].iloc[0]) if len(importance) else None,
        "strata": strata,
    }  # fmt: skip


def _plots(prepared: PreparedRuns, tables: dict[str, pd.DataFrame], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, Path] = {}
    names = [h.removeprefix("params.") for h in prepared.hparams]
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    for label, _ in prepared.strata():
        for kind in ("winrates", "effects"):
            fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
            for ax, name in zip(axes.ravel(), names, strict=False):
                if kind == "winrates":
                    _bar_winrates(ax, tables["hparams"], label, name)
                else:
                    _points_effects(ax, tables["effects"], label, name)
            for ax in axes.ravel()[len(names) :]:
                ax.set_visible(False)
            title = "Algorithm 1 win rate (95% CI: outer bootstrap)" if kind == "winrates" else (
                "marginal mean (95% CI of the effect)")  # fmt: skip
            fig.suptitle(f"{title} - stratum {label}", fontsize=10)
            fig.subplots_adjust(hspace=0.7, wspace=0.3, top=0.9, bottom=0.1)
            figures[f"{kind}_{label}"] = _save(fig, out / f"{kind}_{_slug(label)}.png")
            plt.close(fig)
    figures["tuning_curves"] = _plot_tuning(prepared, tables, out, plt)
    if "frontier" in tables:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, part in tables["frontier"].groupby("stratum", sort=False):
            ax.plot(part.flops, part.frontier, label=f"stratum {label}")
            ax.fill_between(part.flops, part.lo, part.hi, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("cumulative FLOPs")
        ax.set_ylabel(prepared.metric.removeprefix("metrics."))
        ax.set_title("compute frontier (upper envelope, 95% bootstrap band)", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        figures["frontier"] = _save(fig, out / "frontier.png")
        plt.close(fig)
    return figures


def _tick(value: object) -> str:
    """A value as a tick label: large or long numbers in short scientific form (FLOPs 469546450944.0 -> 4.7e+11)."""
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text
    return f"{number:.3g}" if len(text) > 8 and number != 0 else text


def _bar_winrates(ax, alg1: pd.DataFrame, stratum: str, name: str) -> None:
    a = alg1[(alg1.stratum == stratum) & (alg1.hparam == name)]
    x = np.arange(len(a))
    err = None
    if "win_lo" in a:
        err = np.vstack([a.win_rate - a.win_lo, a.win_hi - a.win_rate]).clip(min=0)
    ax.bar(x, a.win_rate, yerr=err, capsize=2, color="tab:blue")
    ax.set_xticks(x, [_tick(v) for v in a.value], fontsize=7, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_title(name, fontsize=9)


def _points_effects(ax, effects: pd.DataFrame, stratum: str, name: str) -> None:
    e = effects[(effects.stratum == stratum) & (effects.hparam == name)]
    x = np.arange(len(e))
    colors = ["tab:red" if s else "tab:gray" for s in e.significant]
    ax.errorbar(
        x, e["mean"], yerr=[e.effect - e.effect_lo, e.effect_hi - e.effect], fmt="none", ecolor="gray"
    )
    ax.scatter(x, e["mean"], c=colors, zorder=3, s=18)
    ax.set_xticks(x, [_tick(v) for v in e.value], fontsize=7, rotation=30)
    ax.set_title(name, fontsize=9)


def _plot_tuning(prepared: PreparedRuns, tables, out: Path, plt) -> Path:
    importance = tables["importance"]
    top = importance.groupby("hparam")["importance"].mean().sort_values(ascending=False).index[:3].tolist()
    strata = [label for label, _ in prepared.strata()]
    fig, axes = plt.subplots(len(strata), max(len(top), 1), figsize=(3.6 * max(len(top), 1), 2.6 * len(strata)),
                             squeeze=False)  # fmt: skip
    tc = tables["tuning_curves"]
    for r, label in enumerate(strata):
        for c, name in enumerate(top):
            ax = axes[r, c]
            for value, part in tc[(tc.stratum == label) & (tc.hparam == name)].groupby("value", sort=False):
                ax.plot(part.k, part.expected_best, label=value)
                ax.fill_between(part.k, part.lo, part.hi, alpha=0.15)
            ax.set_title(f"{name} | {label}", fontsize=9)
            ax.set_xlabel("k runs", fontsize=8)
            ax.legend(fontsize=6)
    fig.suptitle("expected best of k random runs (unbiased; 95% bootstrap band)", fontsize=10)
    fig.subplots_adjust(hspace=0.6, wspace=0.3, top=0.9, bottom=0.1)
    path = _save(fig, out / "tuning_curves.png")
    plt.close(fig)
    return path


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=72)
    return path


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in label)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, max_rows: int = 400) -> str:
    return frame.head(max_rows).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t")


_GUIDE = """
<p><b>Which to read for what.</b> <i>Effects</i> (a main-effects regression of the metric on all
hyperparameters at once, per stratum, HC3 intervals, Bonferroni-adjusted flags) say what a value does to the
metric on average over everything else, and whether a hyperparameter matters at all: read them to choose
values. <i>Algorithm 1</i> (the study's bootstrap) says how often a value sits in the best run of a resampled
study: it reproduces the paper's tables and speaks about the top of the distribution, but the spread
created by the other hyperparameters makes it noisy. When the two disagree, trust the effects for "which
value is better on average" and the tuning curves for "what a budget of k runs buys".</p>
"""


def _html(summary: dict, tables: dict[str, pd.DataFrame], figures: dict[str, Path]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>agentsweep report</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}",
        "table.t{border-collapse:collapse;font-size:12px;margin:.5em 0}",
        "table.t td,table.t th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}",
        "img{max-width:100%}h2{border-bottom:2px solid #eee;padding-bottom:.2em}</style></head><body>",
        "<h1>agentsweep report</h1>",
        f"<p>Source: <code>{html.escape(str(summary['source']))}</code>. Metric "
        f"<code>{html.escape(summary['metric'])}</code> ({summary['mode']}), stratum "
        f"<code>{html.escape(str(summary['stratum']))}</code>. Runs used: {summary['n_runs_used']}; "
        f"excluded: {html.escape(json.dumps(summary['excluded']))}. Algorithm 1 method: {summary['method']}. "
        f"Seed {summary['seed']}.</p>",
    ]
    if summary["binned"]:
        parts.append(f"<p>Binned ({html.escape(summary['binning'])}): "
                     f"{html.escape(json.dumps(summary['binned']))}</p>")  # fmt: skip
    counts = pd.DataFrame(
        [(k, v["n_runs"]) for k, v in summary["strata"].items()], columns=["stratum", "runs"]
    )
    parts += ["<h2>Runs per stratum</h2>", _table(counts), _GUIDE]
    parts += ["<h2>Importance</h2>", f"<p>Method: {html.escape(str(summary['importance_method']))}.</p>",
              _table(tables["importance"].drop(columns="method"))]  # fmt: skip
    for label in summary["strata"]:
        parts.append(f"<h2>Stratum {html.escape(label)}</h2>")
        if summary["strata"][label].get("effects_without_intervals"):
            parts.append(
                "<p><b>Too few runs for the effects model:</b> the runs fit the main-effects model exactly (no "
                "residual degrees of freedom), so its effects have no intervals, significance, p_best or importance. "
                "Add runs; Algorithm 1's bootstrap win rates below still apply.</p>"
            )
        for key in (f"effects_{label}", f"winrates_{label}"):
            if key in figures:
                parts.append(_img(figures[key]))
        eff = tables["effects"][tables["effects"].stratum == label]
        alg = tables["hparams"][tables["hparams"].stratum == label]
        parts += ["<div style='display:flex;gap:2em;flex-wrap:wrap'><div><h3>Effects</h3>", _table(eff),
                  "</div><div><h3>Algorithm 1</h3>", _table(alg), "</div></div>"]  # fmt: skip
    if "tuning_curves" in figures:
        parts += ["<h2>Tuning curves</h2>", _img(figures["tuning_curves"])]
    parts += ["<h2>Aggregates (IQM, probability of improvement; stratified bootstrap)</h2>",
              _table(tables["aggregates"])]  # fmt: skip
    if "frontier" in figures:
        parts += ["<h2>Compute</h2>", _img(figures["frontier"])]
    for name, title in (("compute_to_target", "FLOPs to reach the target"),
                        ("budget_winners", "Algorithm 1 winners under a FLOPs budget")):  # fmt: skip
        if name in tables:
            parts += [f"<h3>{title}</h3>", _table(tables[name])]
    parts.append("</body></html>")
    return "\n".join(parts)
