"""`agentsweep launch|resume|status|export|ui|demo`: the sweep commands (click + stdlib at import time only)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

__all__ = ["demo", "export", "launch", "resume", "status", "ui"]

logger = logging.getLogger(__name__)


def _parse_resources(items: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, amount = item.partition("=")
        try:
            out[name] = float(amount)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: write NAME=AMOUNT, e.g. --resource browser=1")
    return out


def _load_options(path: str | None) -> dict:
    if path is None:
        return {}
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: the options file must be a YAML mapping")
    return data


class _RichProgress:
    """A rich progress bar fed by the driver's trial-end events."""

    def __init__(self, total: int | None, description: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total)
        self.failed = 0

    def __call__(self, event: str, trial_id: str, status: str) -> None:
        self.failed += status == "FAILED"
        self.progress.update(self.task, advance=1)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def _summary(result) -> None:
    from rich.console import Console

    s = result.settings
    Console(stderr=True).print(
        f"[bold]{s.sweep_id}[/]: {result.num_finished} finished, {result.num_failed} failed, "
        f"{result.num_trials} trials in {result.wall_s:.0f} s\n  sweep dir: {s.sweep_dir}\n  MLflow: {s.tracking_uri}"
        f"\n  next: agentsweep export {s.sweep_dir} -o runs.parquet"
    )


@click.command()
@click.argument("space")
@click.option(
    "--out", "out_dir", default="sweeps", show_default=True, help="Directory for sweeps (and sqlite MLflow)."
)
@click.option(
    "--address", default=None, help="Ray cluster address (ray://host:10001 or host:6379); default: local."
)
@click.option("--tracking-uri", default=None, help="MLflow tracking URI; default sqlite:///<out>/mlruns.db.")
@click.option("--experiment", default="agentsweep", show_default=True, help="MLflow experiment name.")
@click.option("--trials", "num_trials", type=int, default=None, help="Number of trials.")
@click.option(
    "--budget-flops", type=float, default=None, help="Stop starting trials once this compute is spent."
)
@click.option(
    "--search", type=click.Choice(["random", "tpe", "grid"]), default=None, help="Default: the space's."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--objective", default="sweep.objectives:rl", show_default=True, help="module:function run per trial."
)
@click.option(
    "--options", "options_file", type=click.Path(exists=True, dir_okay=False), help="YAML of fixed options."
)
@click.option(
    "--branch-builder", default=None, help="module:function building SFT branch points (once, cached)."
)
@click.option("--cpus-per-trial", type=float, default=1.0, show_default=True)
@click.option(
    "--gpus-per-trial", type=float, default=0.0, show_default=True, help="Fractions (0.5) share a GPU."
)
@click.option(
    "--resource", "resources", multiple=True, help="Custom resource per trial, NAME=AMOUNT (repeatable)."
)
@click.option("--max-concurrent", type=int, default=None, help="At most this many trials at once.")
@click.option("--max-failures", type=int, default=1, show_default=True, help="Retries of a failing trial.")
@click.option("--scheduler", type=click.Choice(["none", "asha"]), default="none", show_default=True)
@click.option("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all).")
@click.option("--num-gpus", type=float, default=None, help="GPUs of a local Ray (default: detected).")
@click.option("--dashboard", is_flag=True, help="Start Ray's dashboard on 127.0.0.1 (local Ray only).")
def launch(space, out_dir, address, tracking_uri, experiment, num_trials, budget_flops, search, seed, objective,
           options_file, branch_builder, cpus_per_trial, gpus_per_trial, resources, max_concurrent, max_failures,
           scheduler, num_cpus, num_gpus, dashboard) -> None:  # fmt: skip
    """Start a sweep over SPACE (a YAML path or a packaged name: paper, demo)."""
    from sweep.driver import launch as _launch
    from sweep.space import load_space

    try:
        space_obj = load_space(space)
        if num_trials is None and budget_flops is None and (search or space_obj.search) != "grid":
            raise click.UsageError("give --trials N or --budget-flops F (or use --search grid)")
        options = _load_options(options_file)
        with _RichProgress(num_trials, f"sweep {space_obj.name}") as bar:
            result = _launch(
                space_obj, out_dir=out_dir, objective=objective, options=options, branch_builder=branch_builder,
                tracking_uri=tracking_uri, progress=bar, experiment=experiment, num_trials=num_trials,
                budget_flops=budget_flops, search=search, seed=seed, cpus_per_trial=cpus_per_trial,
                gpus_per_trial=gpus_per_trial, custom_resources=_parse_resources(resources),
                max_concurrent=max_concurrent, max_failures=max_failures, scheduler=scheduler, address=address,
                ray_init={"num_cpus": num_cpus, "num_gpus": num_gpus, "dashboard": dashboard} if not address else None,
            )  # fmt: skip
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from exc
    _summary(result)


@click.command()
@click.argument("sweep", type=click.Path(exists=True))
@click.option("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all).")
@click.option("--num-gpus", type=float, default=None, help="GPUs of a local Ray (default: detected).")
def resume(sweep, num_cpus, num_gpus) -> None:
    """Continue SWEEP (its directory) after the driver stopped: no trial lost, none duplicated."""
    from sweep.driver import load_settings
    from sweep.driver import resume as _resume

    try:
        settings = load_settings(sweep)
        ray_init = None if settings.address else {"num_cpus": num_cpus, "num_gpus": num_gpus}
        with _RichProgress(None, f"resume {settings.sweep_id}") as bar:
            result = _resume(sweep, progress=bar, ray_init=ray_init)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    _summary(result)


@click.command()
@click.argument("sweep", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(sweep, as_json) -> None:
    """Trials by state, FLOPs spent and the best trial so far of SWEEP."""
    from sweep.driver import sweep_status

    try:
        info = sweep_status(sweep)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(info, indent=1, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{info['sweep_id']} ({info['parent_status']})", show_header=False)
    table.add_row("planned trials", str(info["planned_trials"] or f"until {info['budget_flops']:.3g} FLOPs"))
    for state, n in info["trials_by_state"].items():
        table.add_row(f"trials {state}", str(n))
    table.add_row("FLOPs spent", f"{info['flops_spent']:.4g}")
    if info["best"]:
        best = info["best"]
        table.add_row(f"best {info['metric']}", f"{best['value']:.4f} (trial {best['trial_id']})")
        table.add_row("best params", ", ".join(f"{k}={v}" for k, v in best["params"].items() if v != ""))
    table.add_row("MLflow", info["tracking_uri"])
    Console().print(table)


@click.command()
@click.argument("sweep", type=click.Path(exists=True))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="runs.parquet or runs.csv")
def export(sweep, out) -> None:
    """Write SWEEP's runs table to OUT and its curves table beside it (OUT stem + .curves)."""
    from sweep.export import export_sweep

    try:
        runs_path, curves = export_sweep(sweep, out)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"runs: {runs_path}\ncurves: {curves}")


@click.command()
@click.argument("sweep", required=False, type=click.Path(exists=True))
@click.option(
    "--tracking-uri", default=None, help="Backend store URI (default: the sweep's, or ./mlruns.db)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback unless told).")
@click.option("--port", type=int, default=5000, show_default=True)
def ui(sweep, tracking_uri, host, port) -> None:
    """Open the MLflow UI on SWEEP's store (or --tracking-uri), bound to 127.0.0.1 by default."""
    if tracking_uri is None and sweep is not None:
        from sweep.driver import load_settings

        tracking_uri = load_settings(sweep).tracking_uri
    tracking_uri = tracking_uri or f"sqlite:///{Path('mlruns.db').resolve()}"
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "the MLflow UI will listen on %s: anyone who can reach it can read and delete runs", host
        )
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host,
           "--port", str(port), "--workers", "1"]  # fmt: skip
    click.echo(f"MLflow UI on http://{host}:{port} (Ctrl-C to stop)")
    os.execv(sys.executable, cmd)


@click.command()
@click.option("--out", "out_dir", default="demo_out", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--trials", "num_trials", type=int, default=None, help="Override the demo's number of RL trials."
)
@click.option(
    "--updates",
    "num_updates",
    type=int,
    default=None,
    help="Override the GRPO updates per trial (default 4).",
)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out_dir, num_trials, num_updates, seed) -> None:
    """The full main job on one machine: SFT branch points, a small RL sweep, export, the bootstrap report."""
    from rich.console import Console

    from sweep.demo import run_demo

    try:
        with _RichProgress(num_trials, "demo sweep") as bar:
            s = run_demo(
                Path(out_dir), num_trials=num_trials, num_updates=num_updates, seed=seed, progress=bar
            )
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    console = Console()
    console.print(
        f"[bold]demo done[/]: {s.num_finished} runs finished, {s.num_failed} failed ({s.objective})"
    )
    console.print(f"  runs table: {s.runs_path}\n  curves:     {s.curves_path}")
    if s.report_dir is not None:
        console.print(f"  report:     {s.report_dir / 'report.html'}")
    console.print(f"  summary:    {s.out_dir / 'DEMO.md'}")
    console.print(f"  MLflow UI:  agentsweep ui {s.sweep_dir}   (then open http://127.0.0.1:5000)")
    for piece in s.missing:
        console.print(f"  [yellow]not run[/]: {piece}")
