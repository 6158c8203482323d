"""analysis: runs table -> statistics -> report.

numpy / pandas / scipy / matplotlib only: no torch, ray or sibling packages; mlflow is imported lazily and
only to read `mlflow:EXPERIMENT` inputs. The public names below load their module on first use (PEP 562), so
`import analysis` (and `analysis.selection`, which trainers and sweep share) costs no pandas or scipy:

    import analysis
    runs = analysis.load_runs("runs.parquet")
    prepared = analysis.prepare_runs(runs, metric="metrics.heldout_goal_success", stratum="params.sft_checkpoint")
    table = analysis.algorithm1_table(prepared)                      # the study's Algorithm 1, exactly
    effects, importance = analysis.main_effects(prepared.frame, metric=prepared.metric,
                                                stratum=prepared.stratum, hparams=prepared.hparams)
    curves = analysis.tuning_curves(prepared)
    result = analysis.aggregates({"a": {"task": scores_a}, "b": {"task": scores_b}}, reps=50_000,
                                 rng=np.random.default_rng(0))   # rliable's aggregates
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ReportOptions",
    "aggregates",
    "algorithm1",
    "algorithm1_table",
    "build_report",
    "iqm",
    "load_curves",
    "load_runs",
    "main_effects",
    "prepare_runs",
    "probability_of_improvement",
    "select_checkpoint",
    "simulate_study",
    "tuning_curves",
]

# public name -> (module, attribute). `main_effects`, not `effects`: importing the module analysis.effects
# would overwrite a package attribute of that name.
_EXPORTS: dict[str, tuple[str, str]] = {
    "ReportOptions": ("analysis.report", "ReportOptions"),
    "aggregates": ("analysis.aggregate", "aggregates"),
    "algorithm1": ("analysis.bootstrap", "algorithm1"),
    "algorithm1_table": ("analysis.bootstrap", "algorithm1_table"),
    "build_report": ("analysis.report", "build_report"),
    "iqm": ("analysis.aggregate", "iqm"),
    "load_curves": ("analysis.runs", "load_curves"),
    "load_runs": ("analysis.runs", "load_runs"),
    "main_effects": ("analysis.effects", "compute_effects"),
    "prepare_runs": ("analysis.runs", "prepare_runs"),
    "probability_of_improvement": ("analysis.aggregate", "probability_of_improvement"),
    "select_checkpoint": ("analysis.selection", "select_checkpoint"),
    "simulate_study": ("analysis.simulate", "simulate_study"),
    "tuning_curves": ("analysis.curves", "tuning_curves"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(
            f"module 'analysis' has no attribute {name!r}; public names: {', '.join(__all__)}"
        )
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
