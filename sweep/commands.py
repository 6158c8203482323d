"""`agentsweep launch|resume|status|export|ui|demo`: the sweep commands (click + stdlib at import time only)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import click

from sweep.demo import ScaleName
from sweep.secrets import redact_uri
from sweep.settings import CLI_FLAG, SweepLocked, SweepSettings, field_docs, load_settings
from sweep.tracking import TrackingUnreachable, default_tracking_uri, ensure_reachable

__all__ = ["demo", "export", "launch", "resume", "status", "ui"]

logger = logging.getLogger(__name__)

_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, SweepLocked, TrackingUnreachable)
"""What a command reports as one line and exit 1 (click's usage errors exit 2)."""


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
        f"{result.num_trials} trials in {result.wall_s:.0f} s\n  sweep dir: {s.sweep_dir}\n  MLflow: {redact_uri(s.tracking_uri)}"
        f"\n  next: agentsweep export {s.sweep_dir} -o runs.parquet"
    )


def _settings_options(command: Any) -> Any:
    """One `launch` option per user-facing `SweepSettings` field: its docstring is the help, its default the
    option's default (`sweep.settings` marks them; nothing is restated here)."""
    hints = typing.get_type_hints(SweepSettings)
    docs = field_docs(SweepSettings)
    for f in reversed(dataclasses.fields(SweepSettings)):
        if CLI_FLAG not in f.metadata:
            continue
        flag = "--" + (f.metadata[CLI_FLAG] or f.name).replace("_", "-")
        kind = _strip_none(hints[f.name])
        default = None if f.default is dataclasses.MISSING or f.default == "" else f.default
        kwargs: dict[str, Any] = {
            "default": default,
            "show_default": default is not None,
            "help": docs[f.name],
        }
        if typing.get_origin(kind) is Literal:
            kwargs["type"] = click.Choice(typing.get_args(kind))
        elif typing.get_origin(kind) is dict and typing.get_args(kind)[1] is float:
            kwargs.update(multiple=True, metavar="NAME=AMOUNT", default=(), show_default=False)
        elif typing.get_origin(kind) is dict:
            kwargs.update(type=click.Path(exists=True, dir_okay=False), metavar="FILE")
        else:
            kwargs["type"] = kind
        command = click.option(flag, f.name, **kwargs)(command)
    return command


def _strip_none(kind: Any) -> Any:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1 else kind


def _settings_from_cli(values: dict[str, Any]) -> dict[str, Any]:
    """Click's values of the generated options -> `SweepSettings` field values (files read, pairs parsed)."""
    hints = typing.get_type_hints(SweepSettings)
    out = dict(values)
    for name, value in values.items():
        kind = _strip_none(hints[name])
        if typing.get_origin(kind) is dict and typing.get_args(kind)[1] is float:
            out[name] = _parse_resources(value)
        elif typing.get_origin(kind) is dict:
            out[name] = _load_options(value)
    return out


def _local_ray_options(command: Any) -> Any:
    """Options of a local Ray (ignored with --address)."""
    command = click.option(
        "--num-gpus", type=float, default=None, help="GPUs of a local Ray (default: detected)."
    )(command)
    return click.option("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all).")(
        command
    )


@click.command()
@click.argument("space")
@click.option(
    "--out", "out_dir", default="sweeps", show_default=True, help="Directory for sweeps (and sqlite MLflow)."
)
@click.option(
    "--branch-builder", default=None, help="module:function building SFT branch points (once, cached)."
)
@_settings_options
@_local_ray_options
@click.option("--dashboard", is_flag=True, help="Start Ray's dashboard on 127.0.0.1 (local Ray only).")
def launch(space, out_dir, branch_builder, num_cpus, num_gpus, dashboard, **values) -> None:
    """Start a sweep over SPACE (a YAML path or a packaged name: paper, demo)."""
    from sweep.driver import launch as _launch
    from sweep.space import load_space

    try:
        settings = _settings_from_cli(values)
        space_obj = load_space(space)
        if (
            settings["num_trials"] is None
            and settings["budget_flops"] is None
            and (settings["search"] or space_obj.search) != "grid"
        ):
            raise click.UsageError("give --trials N or --budget-flops F (or use --search grid)")
        local = (
            None
            if settings["address"]
            else {"num_cpus": num_cpus, "num_gpus": num_gpus, "dashboard": dashboard}
        )
        if settings["tracking_uri"]:
            ensure_reachable(settings["tracking_uri"])  # before the progress bar: an error is one line
        with _RichProgress(settings["num_trials"], f"sweep {space_obj.name}") as bar:
            result = _launch(
                space_obj,
                out_dir=out_dir,
                branch_builder=branch_builder,
                progress=bar,
                ray_init=local,
                options=settings.pop("options"),
                tracking_uri=settings.pop("tracking_uri") or None,
                **settings,
            )
    except _USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    _summary(result)


@click.command()
@click.argument("sweep", type=click.Path(exists=True))
@_local_ray_options
def resume(sweep, num_cpus, num_gpus) -> None:
    """Continue SWEEP (its directory) after the driver stopped: no trial lost, none duplicated."""
    from sweep.driver import resume as _resume

    try:
        settings = load_settings(sweep)
        ray_init = None if settings.address else {"num_cpus": num_cpus, "num_gpus": num_gpus}
        ensure_reachable(settings.tracking_uri)
        with _RichProgress(None, f"resume {settings.sweep_id}") as bar:
            result = _resume(sweep, progress=bar, ray_init=ray_init)
    except _USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    _summary(result)


@click.command()
@click.argument("sweep", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(sweep, as_json) -> None:
    """Trials by state, FLOPs spent and the best trial so far of SWEEP."""
    from sweep.tracking import sweep_status

    try:
        info = sweep_status(sweep)
    except _USER_ERRORS as exc:
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
@click.option(
    "--sft-arm/--no-sft-arm",
    default=True,
    show_default=True,
    help="With SFT branch points: add the SFT-only arm as a run of its own (run_id sft:<hash>, params.arm sft), "
    "its curve the branch points' step-0 evaluations (mean over the trials from each).",
)
def export(sweep, out, sft_arm) -> None:
    """Write SWEEP's runs table to OUT and its curves table beside it (OUT stem + .curves).

    Every run has params.arm: rl (from the base student), sft+rl (from an SFT branch point) or sft (the SFT-only
    arm's run); `agentsweep report OUT --curves ... --arm params.arm --baseline sft` compares them."""
    from sweep.export import export_sweep

    try:
        runs_path, curves = export_sweep(sweep, out, sft_arm=sft_arm)
    except _USER_ERRORS as exc:
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
    try:
        if tracking_uri is None and sweep is not None:
            tracking_uri = load_settings(sweep).tracking_uri
        tracking_uri = tracking_uri or default_tracking_uri(".")
        ensure_reachable(tracking_uri)
    except _USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "the MLflow UI will listen on %s: anyone who can reach it can read and delete runs", host
        )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    click.echo(f"MLflow UI on http://{host}:{port} (Ctrl-C to stop)")
    os.execv(sys.executable, cmd)


@click.command()
@click.option("--out", "out_dir", default="demo_out", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--scale",
    type=click.Choice(typing.get_args(ScaleName)),
    default="full",
    show_default=True,
    help="The demo's size (sweep.demo.SCALES): full is `make demo`, smoke the test's cut-down variant.",
)
@click.option(
    "--trials", "num_trials", type=int, default=None, help="Override the scale's number of RL trials."
)
@click.option(
    "--updates", "num_updates", type=int, default=None, help="Override the scale's GRPO updates per trial."
)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out_dir, scale, num_trials, num_updates, seed) -> None:
    """The study's recipe, cut down, on one machine: SFT branch points of the shipped student, a random-search RL
    sweep on MiniWoB++, export, the report by branch point with the compute frontier; ends with the headline."""
    from rich.console import Console

    from sweep.demo import SCALES, DemoError, run_demo

    total = num_trials or SCALES[scale].num_trials
    try:
        with _RichProgress(total, "demo sweep") as bar:
            s = run_demo(
                Path(out_dir),
                scale=scale,
                num_trials=num_trials,
                num_updates=num_updates,
                seed=seed,
                progress=bar,
            )
    except (*_USER_ERRORS, DemoError) as exc:
        raise click.ClickException(str(exc)) from exc
    console = Console()
    console.width = max(console.width, 120)
    console.print(
        f"[bold]demo done[/]: {s.num_finished} runs finished, {s.num_failed} failed ({s.objective})"
    )
    console.print(f"  runs table: {s.runs_path}\n  curves:     {s.curves_path}")
    console.print(f"  report:     {s.report_dir / 'report.html'}")
    console.print(f"  summary:    {s.out_dir / 'DEMO.md'}")
    console.print(f"  MLflow UI:  agentsweep ui {s.sweep_dir}   (then open http://127.0.0.1:5000)")
    console.print("  stages:     " + ", ".join(f"{k} {v:.0f} s" for k, v in s.stage_s.items()))
    console.print("[bold]headline[/]")
    for line in s.headline:
        console.print(f"  {line}", highlight=False, markup=False)  # "[inf, inf]" is text, not a rich tag
