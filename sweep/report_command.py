"""`agentsweep report`: analysis' report command, which also takes a sweep directory (export + report in one step).

analysis never imports sweep; this wrapper does the export (sweep.export, MLflow) into a temporary folder and
hands the runs and curves tables to analysis' command. click and the standard library at import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from analysis.cli import report as _analysis_report

__all__ = ["report"]


def _report(**kwargs) -> None:
    if str(kwargs["runs"]).startswith("mlflow:"):
        _require_tracking(kwargs["tracking_uri"] or os.environ.get("MLFLOW_TRACKING_URI"))
    sweep_dir = Path(kwargs["runs"])
    if not sweep_dir.is_dir():
        return _analysis_report.callback(**kwargs)
    from sweep.export import export_sweep

    with tempfile.TemporaryDirectory(prefix="agentsweep-report-") as tmp:
        try:
            runs, curves = export_sweep(sweep_dir, Path(tmp) / "runs.parquet")
        except (FileNotFoundError, ValueError) as exc:
            raise click.ClickException(f"{sweep_dir} is not a sweep directory to export: {exc}") from exc
        kwargs["runs"] = str(runs)
        if kwargs["curves"] is None and _has_flops(curves):
            kwargs["curves"] = str(curves)
        return _analysis_report.callback(**kwargs)


def _require_tracking(tracking_uri: str | None) -> None:
    """Fail in seconds, in one line, when the tracking server of `mlflow:EXPERIMENT` does not answer."""
    if not tracking_uri:
        return  # MLflow's default local store
    from sweep.tracking import TrackingUnreachable, ensure_reachable

    try:
        ensure_reachable(tracking_uri)
    except TrackingUnreachable as exc:
        raise click.ClickException(str(exc)) from None


def _has_flops(curves: Path) -> bool:
    import pyarrow.parquet as pq

    return "flops" in pq.read_schema(curves).names


report = click.Command(
    "report",
    params=_analysis_report.params,
    callback=_report,
    help=(_analysis_report.help or "")
    + "\n\nRUNS may also be a sweep directory: it is exported (runs and curves) and reported in one step.",
    short_help=_analysis_report.get_short_help_str(),
)
