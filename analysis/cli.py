"""`agentsweep report` and `agentsweep simulate` (also `python -m analysis ...`). click + stdlib at import."""

from __future__ import annotations

import sys

import click

from analysis.choices import BAND_METHODS, BUDGET_RULES, DEFAULT_BAND_METHOD, ArmError, ArmOptions

__all__ = ["aggregate", "main", "report", "simulate"]


def _single_threaded_blas() -> None:
    """One OpenBLAS thread unless the user chose otherwise (before numpy loads): the report's products are
    small (200 x n by n x 50), and BLAS's worker threads cost more CPU than they save, more so on a busy
    machine (the 1,370-run report: 3.4 -> 2.3 s CPU, benchmarks/RESULTS.md)."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@click.command()
@click.argument("runs")
@click.option("--out", "out_dir", default="report", show_default=True, help="Output folder.")
@click.option("--metric", default="metrics.heldout_goal_success", show_default=True, help="Metric column.")
@click.option(
    "--stratum",
    default=None,
    help="Stratum column, e.g. params.sft_checkpoint; 'auto': params.sft_checkpoint when present.",
)
@click.option(
    "--hparams", default=None, help="Comma-separated hyperparameter columns (default: all params.*)."
)
@click.option("--mode", type=click.Choice(["max", "min"]), default="max", show_default=True)
@click.option(
    "--method",
    type=click.Choice(["exact", "mc"]),
    default="exact",
    show_default=True,
    help="Algorithm 1: closed form or Monte Carlo.",
)
@click.option(
    "--resamples", type=click.IntRange(min=1), default=1000, show_default=True, help="B for --method mc."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--bins",
    type=click.IntRange(min=2),
    default=4,
    show_default=True,
    help="Quantile bins for continuous hyperparameters.",
)
@click.option(
    "--curves", default=None, help="Curves table (run_id, step, flops, <metric>) for compute budgets."
)
@click.option("--target", type=float, default=None, help="Score for the FLOPs-to-target table.")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI for RUNS=mlflow:EXPERIMENT.")
@click.option(
    "--bounds",
    default="0,1",
    show_default=True,
    help="The metric's range LO,HI for distribution-free tuning-curve bands ('none': skip them).",
)
@click.option(
    "--band-method",
    type=click.Choice(BAND_METHODS),
    default=DEFAULT_BAND_METHOD,
    show_default=True,
    help="Distribution-free CDF band behind band_lo/band_hi: Learned-Miller-DeStefano with equal-tailed or "
    "highest-density (opda's default) order-statistic intervals, each at its exact level, or DKW.",
)
@click.option(
    "--arm",
    default=None,
    help="Runs-table column naming each run's arm (e.g. params.arm: sft, rl, sft+rl; runs without a value are "
    "in no arm): compare arms at an equal number of runs k on the --curves (frontier_k.csv).",
)
@click.option(
    "--baseline",
    default=ArmOptions.baseline,
    help="With --arm: the arm whose equal-k peak the others must reach (e.g. sft): compute_to_match.csv.",
)
@click.option(
    "--k",
    "arm_k",
    type=click.IntRange(min=1),
    default=ArmOptions.k,
    help="With --arm: runs per arm [default: the smallest arm's number of runs].",
)
@click.option(
    "--budget-rule",
    type=click.Choice(BUDGET_RULES),
    default=ArmOptions.rule,
    show_default=True,
    help="With --arm: a run's score as of a FLOPs budget: its last evaluation within it, or the study's "
    "checkpoint rule among those evaluations.",
)
@click.option(
    "--arm-reps",
    type=click.IntRange(min=1),
    default=ArmOptions.reps,
    show_default=True,
    help="With --arm: bootstrap replicates (runs resampled within each arm).",
)
@click.option("--no-plots", is_flag=True, help="Skip PNGs (faster).")
def report(
    runs,
    out_dir,
    metric,
    stratum,
    hparams,
    mode,
    method,
    resamples,
    seed,
    bins,
    curves,
    target,
    tracking_uri,
    bounds,
    band_method,
    arm,
    baseline,
    arm_k,
    budget_rule,
    arm_reps,
    no_plots,
) -> None:
    """Rank hyperparameters on RUNS (CSV, parquet or mlflow:EXPERIMENT): Algorithm 1, effects, curves, budgets.

    Writes OUT/hparams.csv, effects.csv, importance.csv, tuning_curves.csv, aggregates.csv,
    (with --curves) frontier.csv (the envelope), compute_to_target.csv, budget_winners.csv, (with --curves
    and --arm) frontier_k.csv and, with --baseline, compute_to_match.csv, PNGs, summary.json and a
    self-contained report.html.
    """
    _single_threaded_blas()
    from analysis.report import ReportOptions, build_report

    try:
        limits = None if bounds.lower() == "none" else tuple(float(v) for v in bounds.split(","))
    except ValueError:
        limits = ()
    if limits is not None and (len(limits) != 2 or limits[0] >= limits[1]):
        raise click.BadParameter(
            f"{bounds!r}: use LO,HI with LO < HI (e.g. 0,1) or none", param_hint="--bounds"
        )
    if arm is None and (baseline is not None or arm_k is not None):
        raise click.UsageError(
            "--baseline and --k compare arms: pass --arm COLUMN too (e.g. --arm params.arm)"
        )
    arms = None
    if arm is not None:
        if curves is None:
            raise click.UsageError("--arm compares arms on their curves: pass --curves CURVES too")
        arms = ArmOptions(column=arm, baseline=baseline, k=arm_k, rule=budget_rule, reps=arm_reps)
    options = ReportOptions(
        metric=metric,
        stratum=stratum,
        hparams=tuple(hparams.split(",")) if hparams else None,
        mode=mode,
        method=method,
        resamples=resamples,
        seed=seed,
        bins=bins,
        target=target,
        bounds=limits,
        band_method=band_method,
        arms=arms,
        plots=not no_plots,
    )
    try:
        result = build_report(runs, out_dir, options, curves_source=curves, tracking_uri=tracking_uri)
    except ArmError as exc:
        raise click.UsageError(str(exc)) from exc
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    _print_summary(result.summary, result.out_dir)


def _bound(value, spec: str) -> str:
    """An interval bound as summary.json holds it: a number, "inf"/"-inf" or None (NaN)."""
    if isinstance(value, str):
        return value
    return "nan" if value is None else format(value, spec)


def _print_summary(summary: dict, out_dir) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.width = max(console.width, 110)
    console.print(
        f"[bold]{summary['n_runs_used']}[/] runs analysed ({summary['metric']}, {summary['mode']}); "
        f"excluded: {summary['excluded']}; {summary['wall_s']:.2f} s"
    )
    for label, info in summary["strata"].items():
        table = Table(title=f"stratum {label} ({info['n_runs']} runs)", title_justify="left")
        table.add_column("hparam", no_wrap=True)
        for col in ("Alg.1 winner", "win rate", "effects best", "p_best", "matters?", "importance"):
            table.add_column(col, no_wrap=True)
        ranked = sorted(info["hparams"].items(), key=lambda kv: -(kv[1].get("importance") or 0.0))
        for name, e in ranked:
            table.add_row(
                name,
                str(e["algorithm1_winner"]),
                f"{e['win_rate']:.2f}",
                str(e.get("effects_best", "")),
                f"{e.get('p_best', float('nan')):.2f}",
                "yes" if e.get("any_significant") else "no",
                f"{e.get('importance') or 0.0:.3g}",
            )
        console.print(table)
    arms = summary.get("arms")
    if arms:
        runs = ", ".join(f"{a} {n}" for a, n in arms["arm_runs"].items())
        console.print(f"arms of {arms['column']} at equal k = {arms['k']} ({arms['k_rule']}; runs: {runs})")
        for row in arms["compute_to_match"]:
            ratio = "not reached" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            lo, hi = (_bound(v, ".3g") for v in (row["lo"], row["hi"]))
            console.print(
                f"  {row['arm']} reaches {row['baseline']}'s peak {row['target']:.3g} with {ratio} its FLOPs "
                f"[{lo}, {hi}] (reached in {row['p_reached']:.0%} of replicates)",
                markup=False,  # rich would take "[inf, inf]" for a style tag and drop it
            )
    for row in summary.get("findings", []):
        lo, hi = (_bound(v, "+.3g") for v in (row["lo"], row["hi"]))
        interval = "" if row["estimate"] is None else f": {row['estimate']:+.3g} [{lo}, {hi}]"
        console.print(f"  finding '{row['finding']}'{interval} -> {row['verdict']}", markup=False)
    console.print(f"report: [bold]{out_dir}/report.html[/] (tables and summary.json beside it)")


@click.command()
@click.argument("scores")
@click.option("--group", required=True, help="Column naming the configuration (rliable's algorithm).")
@click.option("--task", default=None, help="Column naming the task (or a stratum); default: one task.")
@click.option("--metric", required=True, help="Score column.")
@click.option(
    "--reps", type=click.IntRange(min=1), default=50_000, show_default=True, help="Bootstrap replicates."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--gamma", type=float, default=1.0, show_default=True, help="Optimality gap threshold.")
@click.option("--out", "out_dir", required=True, help="Output folder.")
def aggregate(scores, group, task, metric, reps, seed, gamma, out_dir) -> None:
    """rliable's aggregates for any long SCORES table (CSV or parquet; one row per run and task).

    IQM, mean, median and optimality gap per group, the probability of improvement for every pair, each
    with stratified-bootstrap percentile intervals (runs resampled within each task), and performance
    profiles with bands. Writes OUT/aggregates.csv (group,statistic,estimate,lo,hi,...), poi.csv
    (group_x,group_y,poi,lo,hi,...), profiles.csv and profiles.png.
    """
    _single_threaded_blas()
    import numpy as np

    from analysis._output import finish_folder, open_folder
    from analysis.aggregate import aggregates, read_scores
    from analysis.plots import plot_profiles

    try:
        out = open_folder(out_dir)
        table = read_scores(scores, group=group, task=task, metric=metric)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    every = np.concatenate([a for per_task in table.values() for a in per_task.values()])
    taus = np.linspace(every.min(), every.max(), 41)
    result = aggregates(table, reps=reps, rng=np.random.default_rng(seed), taus=taus, gamma=gamma)
    files = result.write_csv(out) + [plot_profiles(result.profile_rows, out / "profiles.png", metric=metric)]
    finish_folder(out, files)
    click.echo(f"{len(table)} groups, {reps} replicates -> {out}/aggregates.csv, poi.csv, profiles.png")


@click.command()
@click.option("--runs", "num_runs", type=click.IntRange(min=2), default=1370, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, help="Runs table to write (.csv or .parquet); truth JSON beside it.")
@click.option("--curves", default=None, help="Also write the curves table here.")
def simulate(num_runs, seed, out, curves) -> None:
    """Write a synthetic study with planted effects (and its truth JSON) in the runs-table layout."""
    from analysis.simulate import simulate_study, write_study

    runs, curve_table, truth = simulate_study(num_runs, seed=seed)
    truth_path = write_study(runs, curve_table, truth, out, curves)
    click.echo(
        f"{len(runs)} runs -> {out}"
        + (f", curves -> {curves}" if curves else "")
        + f", truth -> {truth_path}"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def _group() -> None:
    """agentsweep's analysis commands (runs table -> statistics -> report)."""


_group.add_command(aggregate)
_group.add_command(report)
_group.add_command(simulate)


def main(argv: list[str] | None = None) -> int:
    """`python -m analysis` entry point."""
    try:
        _group.main(args=argv, prog_name="python -m analysis", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
