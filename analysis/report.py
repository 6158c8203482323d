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
from analysis.bands import BandMethod
from analysis.bootstrap import algorithm1_table, win_rate_intervals
from analysis.curves import budget_grid, compute_to_reach, frontier, reached_by_budget, tuning_curves
from analysis.effects import compute_effects
from analysis.runs import PreparedRuns, load_curves, load_runs, prepare_runs

__all__ = ["AUTO_STRATUM", "BRANCH_POINT", "ReportOptions", "ReportResult", "build_report"]

AUTO_STRATUM = "auto"
BRANCH_POINT = "params.sft_checkpoint"
"""The stratum `--stratum auto` picks when the runs table has it: the SFT branch point."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOptions:
    """Everything `agentsweep report` can be told."""

    metric: str = "metrics.heldout_goal_success"
    """The metric column to rank by."""
    stratum: str | None = None
    """Stratum column (e.g. params.sft_checkpoint); None: one stratum "all"; AUTO_STRATUM: the branch point
    column when the table has one."""
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
    bounds: tuple[float, float] | None = (0.0, 1.0)
    """The metric's possible range, for the distribution-free tuning-curve bands (None: bootstrap bands only)."""
    band_method: BandMethod = "ld_equal_tailed"
    """The distribution-free band on the CDF: ld_equal_tailed (Learned-Miller-DeStefano, exact level) or dkw."""
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
    stratum = options.stratum
    if stratum == AUTO_STRATUM:
        stratum = BRANCH_POINT if BRANCH_POINT in runs.columns else None
    prepared = prepare_runs(
        runs,
        metric=options.metric,
        stratum=stratum,
        hparams=options.hparams,
        mode=options.mode,
        bins=options.bins,
    )
    tables: dict[str, pd.DataFrame] = {}
    alg1 = algorithm1_table(prepared, method=options.method, resamples=options.resamples, seed=options.seed)
    if options.win_ci_reps > 0:
        ci = win_rate_intervals(prepared, reps=options.win_ci_reps, seed=options.seed)
        alg1 = alg1.merge(ci, on=["stratum", "hparam", "value"], how="left")
    tables["hparams"] = alg1
    effects, importance = compute_effects(
        prepared.frame,
        metric=prepared.metric,
        stratum=prepared.stratum,
        hparams=prepared.hparams,
        mode=prepared.mode,
        seed=options.seed,
    )
    tables["effects"], tables["importance"] = (
        effects,
        importance.sort_values(["stratum", "importance"], ascending=[True, False], kind="stable"),
    )
    tables["tuning_curves"] = tuning_curves(
        prepared, seed=options.seed, bounds=options.bounds, band_method=options.band_method
    )
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
    cells = {
        name: dict(list(table.groupby(["stratum", "hparam"], sort=False)))
        for name, table in (("alg1", alg1), ("effects", effects), ("importance", importance))
    }
    strata = {}
    for label, frame in prepared.strata():
        per_h = {}
        for h in prepared.hparams:
            name = h.removeprefix("params.")
            a = cells["alg1"].get((label, name), alg1.iloc[:0])
            e = cells["effects"].get((label, name), effects.iloc[:0])
            imp = cells["importance"].get((label, name), importance.iloc[:0])
            if a.empty:
                continue
            top_a = a.loc[a.win_rate.idxmax()]
            entry = {"algorithm1_winner": top_a.value, "win_rate": float(top_a.win_rate)}
            if not e.empty and e.p_best.notna().any():  # all NaN: the stratum's fit had no residual dof
                top_e = e.loc[e.p_best.idxmax()]
                entry |= {
                    "effects_best": top_e.value,
                    "p_best": float(top_e.p_best),
                    "any_significant": bool(e.significant.any()),
                    "importance": float(imp.importance.iloc[0]) if not imp.empty else None,
                }
            per_h[name] = entry
        e_all = effects[effects.stratum == label]
        coefficients = 1 + len(e_all) - e_all.hparam.nunique()  # intercept + (K_H - 1) per hyperparameter
        strata[label] = {
            "n_runs": int(len(frame)),
            "hparams": per_h,
            "effects_without_intervals": bool(len(e_all) and e_all.effect_lo.isna().all()),
            "coefficients": int(coefficients),
            "runs_for_intervals": int(max(0, coefficients + 1 - len(frame))),
        }
    return {
        "source": source if isinstance(source, str | Path) else "<DataFrame>",
        "metric": prepared.metric,
        "mode": prepared.mode,
        "stratum": prepared.stratum,
        "method": options.method,
        "resamples": options.resamples if options.method == "mc" else None,
        "seed": options.seed,
        "n_runs_used": int(len(prepared.frame)),
        "excluded": prepared.excluded,
        "hparams": [h.removeprefix("params.") for h in prepared.hparams],
        "binned": {h.removeprefix("params."): bins for h, bins in prepared.binned.items()},
        "binning": f"quantile bins ({options.bins}) for numeric hyperparameters with > 12 distinct values",
        "importance_method": str(importance["method"].iloc[0]) if len(importance) else None,
        "strata": strata,
    }


def _plots(prepared: PreparedRuns, tables: dict[str, pd.DataFrame], out: Path) -> dict[str, Path]:
    from analysis import plots

    metric = prepared.metric.removeprefix("metrics.")
    strata = [label for label, _ in prepared.strata()]
    ranked = _ranked_hparams(prepared, tables["importance"])
    figures = {
        "effects": plots.plot_effects(tables["effects"], strata, ranked, out / "effects.png", metric=metric),
        "winrates": plots.plot_winrates(tables["hparams"], strata, ranked, out / "winrates.png"),
        "tuning_curves": plots.plot_tuning_curves(
            tables["tuning_curves"], strata, ranked[:3], out / "tuning_curves.png", metric=metric
        ),
    }
    if "frontier" in tables:
        figures["frontier"] = plots.plot_frontier(tables["frontier"], out / "frontier.png", metric=metric)
    return figures


def _ranked_hparams(prepared: PreparedRuns, importance: pd.DataFrame) -> list[str]:
    """Hyperparameter names, most important first (mean over strata; unknown importance last)."""
    names = [h.removeprefix("params.") for h in prepared.hparams]
    mean = importance.groupby("hparam")["importance"].mean()
    return sorted(names, key=lambda n: -(mean.get(n, np.nan) if np.isfinite(mean.get(n, np.nan)) else -1.0))


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in label)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _cell(value) -> str:
    if isinstance(value, float | np.floating):
        return "NaN" if value != value else f"{value:.4g}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, max_rows: int = 400, table_id: str | None = None) -> str:
    """An HTML table of the first `max_rows` rows (as DataFrame.to_html would draw it, at a tenth of its cost)."""
    head = frame.head(max_rows)
    id_attr = f' id="{html.escape(table_id)}"' if table_id else ""
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in head.columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in head.itertuples(index=False, name=None)
    )
    return f'<table class="t"{id_attr}>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


_GUIDE = """
<p><b>Which to read for what.</b> <i>Effects</i> (a main-effects regression of the metric on all
hyperparameters at once, per stratum, HC3 intervals, Bonferroni-adjusted flags) say what a value does to the
metric on average over everything else, and whether a hyperparameter matters at all: read them to choose
values. <i>Algorithm 1</i> (the study's bootstrap) says how often a value sits in the best run of a resampled
study: it reproduces the paper's tables and speaks about the top of the distribution, but the spread
created by the other hyperparameters makes it noisy. When the two disagree, trust the effects for "which
value is better on average" and the tuning curves for "what a budget of k runs buys".</p>
"""


def _headline(tables: dict[str, pd.DataFrame], label: str) -> pd.DataFrame:
    """What a reader came for, per stratum: hyperparameters by importance, the value to pick, how sure."""
    imp = tables["importance"][tables["importance"].stratum == label].set_index("hparam")
    eff = dict(list(tables["effects"][tables["effects"].stratum == label].groupby("hparam", sort=False)))
    alg = dict(list(tables["hparams"][tables["hparams"].stratum == label].groupby("hparam", sort=False)))
    empty = tables["effects"].iloc[:0]
    rows = []
    for name in dict.fromkeys([*imp.index, *alg]):
        e, a = eff.get(name, empty), alg.get(name, tables["hparams"].iloc[:0])
        best = e.loc[e.p_best.idxmax()] if len(e) and e.p_best.notna().any() else None
        top = a.loc[a.win_rate.idxmax()] if len(a) else None
        i = imp.loc[name] if name in imp.index else None
        rows.append(
            {
                "hparam": name,
                "importance [95% CI]": ""
                if i is None
                else _interval_text(i.importance, i.importance_lo, i.importance_hi),
                "recommended": "" if best is None else best.value,
                "p_best": np.nan if best is None else best.p_best,
                "effect [95% CI]": ""
                if best is None
                else _interval_text(best.effect, best.effect_lo, best.effect_hi),
                "matters?": "" if best is None else ("yes" if e.significant.any() else "no"),
                "Algorithm 1 winner (win rate)": "" if top is None else f"{top.value} ({top.win_rate:.2f})",
            }
        )
    return pd.DataFrame(rows)


def _interval_text(value: float, lo: float, hi: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{value:+.3g} [{lo:+.3g}, {hi:+.3g}]" if np.isfinite(lo) else f"{value:+.3g} [no interval]"


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222;"
    "line-height:1.4}table.t{border-collapse:collapse;font-size:13px;margin:.5em 0}"
    "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
    "table.t th{background:#f5f5f5}img{max-width:100%;display:block;margin:.5em 0}"
    "h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:1.6em}.warn{background:#fff4e0;"
    "border-left:4px solid #f0a020;padding:.4em .8em}details{margin:.6em 0}summary{cursor:pointer}"
)


def _html(summary: dict, tables: dict[str, pd.DataFrame], figures: dict[str, Path]) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>agentsweep report</title><style>{_STYLE}"
        "</style></head><body><h1>agentsweep report</h1>",
        f"<p>{summary['n_runs_used']} runs of <code>{html.escape(str(summary['source']))}</code>, metric "
        f"<code>{html.escape(summary['metric'])}</code> ({summary['mode']}), stratum "
        f"<code>{html.escape(str(summary['stratum']))}</code>; excluded: "
        f"{html.escape(json.dumps(summary['excluded']))}. Seed {summary['seed']}.</p>",
        "<h2>What to pick</h2><p>Per stratum, hyperparameters from most to least important (importance: how much "
        "the metric moves, typically, when you change it, in metric units). <i>recommended</i>: the value with "
        "the highest probability of having the best marginal mean (<i>p_best</i>); <i>effect</i>: its marginal "
        "mean minus the average over values; <i>matters?</i>: some value's effect is significant after "
        "Bonferroni adjustment.</p>",
    ]
    for label, info in summary["strata"].items():
        parts.append(f"<h3>Stratum {html.escape(label)} ({info['n_runs']} runs)</h3>")
        if info.get("effects_without_intervals"):
            parts.append(
                f"<p class='warn'><b>Too few runs for the effects model:</b> {info['n_runs']} runs fit its "
                f"{info['coefficients']} coefficients exactly, so effects have no intervals, significance, "
                f"p_best or importance. Add at least {info['runs_for_intervals']} more runs to this stratum "
                f"for intervals (about {10 * info['coefficients']} runs in all give intervals narrow enough "
                "to rank values); Algorithm 1's win rates below still apply.</p>"
            )
        parts.append(_table(_headline(tables, label), table_id=f"headline-{_slug(label)}"))
    if "compute_to_target" in tables or "frontier" in figures:
        parts.append("<h2>Compute</h2>")
        if "frontier" in figures:
            parts.append(_img(figures["frontier"]))
        if "compute_to_target" in tables:
            parts += ["<h3>FLOPs to reach the target</h3>", _table(tables["compute_to_target"])]
    for key, title in (
        ("effects", "Effects"),
        ("winrates", "Algorithm 1"),
        ("tuning_curves", "Tuning curves"),
    ):
        if key in figures:
            parts += [f"<h2>{title}</h2>", _img(figures[key])]
    parts += ["<h2>Tables</h2>", _GUIDE]
    if summary["binned"]:
        parts.append(
            f"<p>Binned ({html.escape(summary['binning'])}): {html.escape(json.dumps(summary['binned']))}</p>"
        )
    for label in summary["strata"]:
        eff = tables["effects"][tables["effects"].stratum == label]
        alg = tables["hparams"][tables["hparams"].stratum == label]
        parts += [
            f"<details><summary>Stratum {html.escape(label)}: Effects and Algorithm 1</summary>",
            "<div style='display:flex;gap:2em;flex-wrap:wrap'><div><h3>Effects</h3>",
            _table(eff),
            "</div><div><h3>Algorithm 1</h3>",
            _table(alg),
            "</div></div></details>",
        ]
    parts += [
        "<details><summary>Importance</summary>",
        f"<p>Method: {html.escape(str(summary['importance_method']))}.</p>",
        _table(tables["importance"].drop(columns="method")),
        "</details>",
        "<details><summary>Aggregates (IQM, probability of improvement vs the other values; stratified "
        "bootstrap)</summary>",
        _table(tables["aggregates"]),
        "</details>",
    ]
    if "budget_winners" in tables:
        parts += [
            "<details><summary>Algorithm 1 winners under a FLOPs budget</summary>",
            _table(tables["budget_winners"]),
            "</details>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
