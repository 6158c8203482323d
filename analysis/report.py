"""The report: runs table in, CSV tables, `summary.json`, PNG plots and one self-contained `report.html` out.

Which table to read for what:
- `effects.csv` (main-effects model): "what does value h do to the metric, on average over everything else,
  and how sure are we". Read this to choose values and to say that a hyperparameter does not matter.
- `hparams.csv` (the study's Algorithm 1): "how often does value h sit in the best run of a resampled study".
  It is about the top of the distribution, reproduces the paper's tables, and is noisy: the spread created by
  the other hyperparameters can hide a real effect.
- `tuning_curves.csv`: expected best of k random runs per value (unbiased): what a budget of k runs buys.
- `frontier_k.csv`, `compute_to_match.csv` (with curves and `ArmOptions`, `--arm`): arms (SFT only, RL only,
  SFT+RL) compared at an equal number of runs k: the expected best of k runs per FLOPs budget, and the FLOPs
  an arm needs to reach the baseline arm's peak over the baseline's (`analysis.arms`). Read these to compare
  arms: they do not favour the arm with more runs.
- `frontier.csv`, `compute_to_target.csv`, `budget_winners.csv` (with curves): the envelope (the best single
  evaluation of any run in a stratum within C FLOPs, which grows with the number of runs), FLOPs for the best
  run to reach a target, and Algorithm 1's winners under a budget.
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
from analysis.choices import DEFAULT_BAND_METHOD, ArmError, ArmOptions, BandMethod
from analysis.curves import budget_grid, compute_to_reach, frontier, reached_by_budget, tuning_curves
from analysis.effects import compute_effects
from analysis.runs import PreparedRuns, load_curves, load_runs, prepare_runs

__all__ = [
    "AUTO_STRATUM",
    "BRANCH_POINT",
    "ReportOptions",
    "ReportResult",
    "build_report",
    "hyperparameter_runs",
]

AUTO_STRATUM = "auto"
BRANCH_POINT = "params.sft_checkpoint"
"""The stratum `--stratum auto` picks when the runs table has it: the SFT branch point."""
ARM = "params.arm"
SFT_ONLY_ARM = "sft"
"""Runs with this `params.arm` (the SFT-only arm: SFT checkpoints, no RL hyperparameters) are compared as an arm
(`--arm`) and left out of the hyperparameter analysis; `params.arm` is no hyperparameter by default either."""

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
    band_method: BandMethod = DEFAULT_BAND_METHOD
    """The distribution-free band on the CDF: ld_equal_tailed or ld_highest_density (Learned-Miller-DeStefano,
    exact level) or dkw."""
    arms: ArmOptions | None = None
    """Compare arms at an equal number of runs k (needs curves): frontier_k.csv, compute_to_match.csv."""
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
    hyper_runs, num_sft_only = hyperparameter_runs(runs, stratum, options.hparams)
    prepared = prepare_runs(
        hyper_runs,
        metric=options.metric,
        stratum=stratum,
        hparams=options.hparams,
        mode=options.mode,
        bins=options.bins,
    )
    if num_sft_only:
        prepared.excluded["sft_only_arm"] = num_sft_only
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
    comparison = None
    if options.arms is not None:
        if curves_source is None:
            raise ArmError(
                "--arm compares arms on their curves: pass --curves CURVES (run_id, step, flops, metric)"
            )
        comparison = _compare_arms(runs, curves, prepared, options)
        tables["frontier_k"] = comparison.frontier
        tables["arm_peaks"] = comparison.peaks
        if options.arms.baseline is not None:
            tables["compute_to_match"] = comparison.compute_to_match
            tables["findings"] = _findings(curves, prepared, comparison, tables["effects"], options)
    files = []
    for name, table in tables.items():
        path = out / f"{name}.csv"
        table.to_csv(path, index=False)
        files.append(path)
    summary = _summary(prepared, tables, options, runs_source)
    if "findings" in tables:
        summary["findings"] = _json_records(tables["findings"])
    if comparison is not None:
        summary["arms"] = _arms_summary(comparison, options.arms)
    figures = _plots(prepared, tables, out, summary.get("arms")) if options.plots else {}
    files += list(figures.values())
    summary["files"] = sorted(p.name for p in files) + ["summary.json", "report.html"]
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))
    (out / "report.html").write_text(_html(summary, tables, figures))
    files += [out / "summary.json", out / "report.html"]
    finish_folder(out, files)
    return ReportResult(out, summary, files)


def hyperparameter_runs(
    runs: pd.DataFrame, stratum: str | None, hparams: tuple[str, ...] | None
) -> tuple[pd.DataFrame, int]:
    """(the runs the hyperparameter analysis reads, how many SFT-only runs it leaves out): without the runs of
    the `sft` arm, and without the `params.arm` column unless --stratum or --hparams names it (within a branch
    point the arm is constant)."""
    if ARM not in runs.columns:
        return runs, 0
    sft_only = runs[ARM].astype(str) == SFT_ONLY_ARM
    out = runs[~sft_only]
    named = stratum in (ARM, "arm") or any(h in (ARM, "arm") for h in hparams or ())
    return (out if named else out.drop(columns=ARM)), int(sft_only.sum())


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


def _compare_arms(runs: pd.DataFrame, curves: pd.DataFrame, prepared: PreparedRuns, options: ReportOptions):
    """`analysis.arms.compare_arms` on the runs table's arm column (every finished run with a value in it,
    including runs the hyperparameter analysis leaves out, such as the SFT run's checkpoints)."""
    from analysis.arms import arm_labels, compare_arms

    metric = prepared.metric.removeprefix("metrics.")
    if metric not in curves.columns:
        raise ValueError(f"the curves table has no column {metric!r}; columns: {list(curves.columns)}")
    arm = options.arms
    return compare_arms(
        curves,
        arm_labels(runs, arm.column),
        metric,
        baseline=arm.baseline,
        k=arm.k,
        rule=arm.rule,
        mode=prepared.mode,
        reps=arm.reps,
        seed=options.seed,
    )


def _findings(curves: pd.DataFrame, prepared: PreparedRuns, comparison, effects: pd.DataFrame, options):
    from analysis.findings import study_findings

    arm = options.arms
    return study_findings(
        curves,
        prepared,
        comparison,
        effects,
        baseline=arm.baseline,
        rule=arm.rule,
        reps=arm.reps,
        seed=options.seed,
    )


def _arms_summary(comparison, arm: ArmOptions) -> dict:
    """The headline of the arm comparison, for summary.json and the page's first section."""
    match = comparison.compute_to_match
    return {
        "column": arm.column,
        "baseline": comparison.baseline,
        "k": comparison.k,
        "k_rule": comparison.k_rule,
        "budget_rule": comparison.rule,
        "reps": arm.reps,
        "arm_runs": comparison.arm_runs,
        "peaks": {
            r["arm"]: {c: _json_number(r[c]) for c in ("peak", "lo", "hi", "flops_at_peak")}
            for r in comparison.peaks.to_dict(orient="records")
        },
        "compute_to_match": _json_records(match),
    }


def _json_number(value):
    """A table cell for summary.json: NaN -> None, +-inf -> "inf"/"-inf" (strict JSON has neither)."""
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return None
        return float(value) if np.isfinite(value) else ("inf" if value > 0 else "-inf")
    return value.item() if hasattr(value, "item") else value


def _json_records(frame: pd.DataFrame) -> list[dict]:
    """A table's rows for summary.json, each cell through `_json_number`."""
    return [{c: _json_number(v) for c, v in row.items()} for row in frame.to_dict(orient="records")]


def _from_json_number(value) -> float:
    return float("nan") if value is None else float(value)


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
            top_e, best_name = _effects_best(e)
            if top_e is not None:  # None: the stratum's fit had no residual dof
                entry |= {
                    "effects_best": best_name,
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


def _plots(
    prepared: PreparedRuns, tables: dict[str, pd.DataFrame], out: Path, arms: dict | None = None
) -> dict[str, Path]:
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
    if "frontier_k" in tables:
        figures["frontier_k"] = plots.plot_frontier_k(
            tables["frontier_k"],
            tables.get("compute_to_match"),
            out / "frontier_k.png",
            metric=metric,
            arms=arms,
        )
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


def _effects_best(e: pd.DataFrame) -> tuple[pd.Series | None, object]:
    """The value with the highest p_best among a hyperparameter's effects rows, and how to name it: the value, or
    every value tied at the top joined by ' = ' (a stratum whose runs all scored the same has no best value).
    (None, '') when p_best is unknown (the fit had no residual degrees of freedom)."""
    if e.empty or not e.p_best.notna().any():
        return None, ""
    top = e.loc[e.p_best.idxmax()]
    tied = e[np.isclose(e.p_best, top.p_best, rtol=0.0, atol=1e-9)]
    return top, " = ".join(str(v) for v in tied.value) if len(tied) > 1 else top.value


def _headline(tables: dict[str, pd.DataFrame], label: str) -> pd.DataFrame:
    """What a reader came for, per stratum: hyperparameters by importance, the value to pick, how sure."""
    imp = tables["importance"][tables["importance"].stratum == label].set_index("hparam")
    eff = dict(list(tables["effects"][tables["effects"].stratum == label].groupby("hparam", sort=False)))
    alg = dict(list(tables["hparams"][tables["hparams"].stratum == label].groupby("hparam", sort=False)))
    empty = tables["effects"].iloc[:0]
    rows = []
    for name in dict.fromkeys([*imp.index, *alg]):
        e, a = eff.get(name, empty), alg.get(name, tables["hparams"].iloc[:0])
        best, best_name = _effects_best(e)
        top = a.loc[a.win_rate.idxmax()] if len(a) else None
        i = imp.loc[name] if name in imp.index else None
        rows.append(
            {
                "hparam": name,
                "importance [95% CI]": ""
                if i is None
                else _interval_text(i.importance, i.importance_lo, i.importance_hi),
                "recommended": best_name,
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


_K_TEXT = {"given": "k given by --k", "smallest arm": "k = the smallest arm's number of runs"}
_RULE_TEXT = {
    "last": "last evaluation at or below the budget",
    "checkpoint": "checkpoint chosen by the study's rule among its evaluations at or below the budget",
}


def _runs_text(arm_runs: dict[str, int]) -> str:
    return ", ".join(f"{html.escape(a)}: {n} runs" for a, n in arm_runs.items())


def _ratio_text(row: dict) -> str:
    """'0.55x [0.41, 0.83]' (or that the target was not reached), from a compute_to_match row."""
    lo, hi, ratio = (_from_json_number(row[c]) for c in ("lo", "hi", "ratio"))
    interval = f"[{lo:.2f}, {'inf' if np.isinf(hi) else f'{hi:.2f}'}]"
    if not np.isfinite(ratio):
        return f"not reached (95% interval {interval}, reached in {row['p_reached']:.0%} of replicates)"
    return f"{ratio:.2f}x its FLOPs {interval} (reached in {row['p_reached']:.0%} of replicates)"


def _arms_headline(arms: dict | None) -> list[str]:
    """The page's first section when arms are compared: each arm's compute to match the baseline's peak."""
    if not arms:
        return []
    parts = [
        f"<h2>Headline: arms at equal k = {arms['k']}</h2><p>Arms of <code>{html.escape(arms['column'])}</code>"
        f" ({_runs_text(arms['arm_runs'])}), each scored as the expected best of {arms['k']} runs "
        f"({_K_TEXT.get(arms['k_rule'], arms['k_rule'])}) per FLOPs budget.</p>"
    ]
    whole = [a for a, n in arms["arm_runs"].items() if n == arms["k"]]
    if whole:
        parts.append(
            f"<p class='warn'>k = {arms['k']} is all the runs of {html.escape(', '.join(whole))}: there the curve is "
            "the best run, and a bootstrap of a maximum lies below it (its band and the ratio's interval "
            "understate the uncertainty). A smaller <code>--k</code> gives intervals that mean more.</p>"
        )
    if arms["compute_to_match"]:
        items = "".join(
            f"<li><b>{html.escape(str(r['arm']))}</b> reaches {html.escape(str(r['baseline']))}'s peak "
            f"({r['target']:.3g}) with {_ratio_text(r)}</li>"
            for r in arms["compute_to_match"]
        )
        parts.append(f"<ul id='headline-arms'>{items}</ul>")
    return parts


def _findings_section(findings: pd.DataFrame | None) -> list[str]:
    """The study's headline findings beside ours, right after the arms' headline."""
    if findings is None or findings.empty:
        return []
    return [
        "<h2>The study's findings beside ours</h2><p>Each of the paper's headline findings, the quantity that "
        "tests it on these runs with its 95% interval, and the verdict: <i>reproduced</i> (the interval lies on "
        "the paper's side of 0, or below 1 for the ratio), <i>not reproduced</i> (on the other side), <i>not "
        "resolvable at this scale</i> (it contains the boundary) or <i>not measured</i> (the table lacks an arm, "
        "a knob or a stratum). Method: <code>analysis.findings</code>.</p>",
        _table(findings, table_id="findings"),
    ]


def _html(summary: dict, tables: dict[str, pd.DataFrame], figures: dict[str, Path]) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>agentsweep report</title><style>{_STYLE}"
        "</style></head><body><h1>agentsweep report</h1>",
        f"<p>{summary['n_runs_used']} runs of <code>{html.escape(str(summary['source']))}</code>, metric "
        f"<code>{html.escape(summary['metric'])}</code> ({summary['mode']}), stratum "
        f"<code>{html.escape(str(summary['stratum']))}</code>; excluded: "
        f"{html.escape(json.dumps(summary['excluded']))}. Seed {summary['seed']}.</p>",
        *_arms_headline(summary.get("arms")),
        *_findings_section(tables.get("findings")),
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
    if "compute_to_target" in tables or "frontier" in figures or "frontier_k" in tables:
        parts.append("<h2>Compute</h2>")
        if "frontier_k" in tables:
            arms = summary["arms"]
            parts.append(
                f"<h3>Arms at an equal number of runs (k = {arms['k']}: "
                f"{_K_TEXT.get(arms['k_rule'], arms['k_rule'])})</h3>"
                f"<p>Per arm of <code>{html.escape(arms['column'])}</code> ({_runs_text(arms['arm_runs'])}), "
                f"the expected best of k runs as of each FLOPs budget (each run's {_RULE_TEXT[arms['budget_rule']]}"
                f"), with a 95% bootstrap band over the arm's runs ({arms['reps']} replicates).</p>"
            )
            if "frontier_k" in figures:
                parts.append(_img(figures["frontier_k"]))
            if "compute_to_match" in tables:
                parts += [
                    "<h3>Compute to match the baseline's peak</h3>",
                    "<p><i>ratio</i>: the FLOPs at which the arm's equal-k curve first reaches the baseline's "
                    "peak over the baseline's FLOPs at that peak; interval: bootstrap percentiles (inf: the "
                    "target was not reached in that share of replicates); <i>p_reached</i>: the share of "
                    "replicates in which it was reached.</p>",
                    _table(tables["compute_to_match"], table_id="compute-to-match"),
                ]
        if "frontier" in figures:
            parts += [
                "<h3>Envelope per stratum</h3><p>The best single evaluation of any run within C FLOPs: it grows "
                "with the number of runs, so it favours the stratum with more runs; compare arms with the "
                "equal-k curves above.</p>",
                _img(figures["frontier"]),
            ]
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
