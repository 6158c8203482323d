"""The root `agentsweep` command line.

Subcommands live in the package that owns them and are imported lazily, only when invoked (or when
`--help` lists them), so `agentsweep --help` never imports torch, ray, transformers or mlflow. Each module
named below must keep its top-level imports light (click and the standard library); heavy imports go
inside the command functions.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

__all__ = ["LAZY_COMMANDS", "main", "cli"]

# name -> "module:attribute" of a click command or group. Only commands that exist are listed here.
LAZY_COMMANDS: dict[str, str] = {
    "aggregate": "analysis.cli:aggregate",
    "report": "sweep.report_command:report",
    "simulate": "analysis.cli:simulate",
    "launch": "sweep.commands:launch",
    "resume": "sweep.commands:resume",
    "status": "sweep.commands:status",
    "export": "sweep.commands:export",
    "ui": "sweep.commands:ui",
    "demo": "sweep.commands:demo",
    "flops": "trainers.cli:flops",
    "train": "trainers.cli:train",
    "envs": "envs.cli:envs",
}


class _LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented lazy-loading pattern)."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module_name, attr = self._lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self._lazy[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


def _setup_logging(verbose: int, quiet: bool) -> None:
    from rich.logging import RichHandler

    from sweep.secrets import RedactingFilter

    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = RichHandler(rich_tracebacks=verbose > 0, show_path=verbose > 1, markup=False)
    handler.addFilter(RedactingFilter())  # no URI password or secret value in what any library logs
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)


@click.group(
    cls=_LazyGroup,
    lazy_commands=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(package_name="agentsweep", prog_name="agentsweep")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """agentsweep: train LLM web agents (SFT + multi-turn GRPO) and learn which hyperparameters matter."""
    _setup_logging(verbose, quiet)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    try:
        cli.main(args=argv, prog_name="agentsweep", standalone_mode=True)
    except SystemExit as exc:  # click exits with the command's code
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
