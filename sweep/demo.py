"""`agentsweep demo`: the main job on one machine, end to end, in about 15 minutes on 2 cores.

Stages: SFT branch points (built once, content-hashed) -> a small RL sweep on Ray Tune logged to a sqlite MLflow
under OUT -> export (runs + curves tables) -> the bootstrap report -> OUT/DEMO.md saying what ran and where.
The trials train the tiny Llama on the toy env and two MiniWoB++ tasks at once (`env: toy+miniwob`, Chromium),
from branch points the scripted teacher's traces on those tasks produced.

The real pipeline needs the trainers package (teacher traces, SFT, multi-turn GRPO on the toy env and MiniWoB++)
and the analysis report. Where a piece has not been installed or written yet, the demo runs what is real (the
driver, Ray, MLflow, resume machinery and export on the surrogate objective) and says exactly what was missing,
in the log, in the summary it returns and in DEMO.md: it never passes a stand-in off as the real thing.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEMO_OPTIONS", "DemoSummary", "missing_pieces", "run_demo"]

logger = logging.getLogger(__name__)

SURROGATE_TRIALS = 60
REAL_TRIALS = 8
DEMO_TASKS = ["toy.click-button", "miniwob.click-test", "miniwob.click-test-2"]
DEMO_ENV_OPTIONS = {
    "toy": {"num_distractors": 1},
    "miniwob": {"observation": "compact", "max_obs_tokens": 400},
}
DEMO_OPTIONS: dict[str, Any] = {
    # non-swept RLConfig fields of every trial (the swept ones come from spaces/demo.yaml): the toy env and two
    # MiniWoB++ tasks in Chromium, held-out goals of those tasks, the toy env's held-out task click-link
    "rl": {
        "env": "toy+miniwob",
        "tasks": DEMO_TASKS,
        "eval_tasks": ["toy.click-link"],
        "student": "tiny-llama",
        "group_size": 4,
        "num_updates": 4,
        "eval_every": 2,
        "max_eval_goals": 9,
        "max_steps": 4,
        "workers": 1,
        "max_new_tokens": 24,
        "max_seq_len": 640,
        "cpu_threads": 1,
        "env_options": DEMO_ENV_OPTIONS,
    },
    # inputs of the shared SFT branch points (their content hash decides whether they are rebuilt)
    "sft": {
        "teacher": {
            "env": "toy+miniwob",
            "tasks": DEMO_TASKS,
            "teacher": "scripted",
            "max_goals": 60,
            "max_steps": 4,
            "env_options": DEMO_ENV_OPTIONS,
        },
        "student": {
            "student": "tiny-llama",
            "num_epochs": 6.0,
            "learning_rate": 3e-3,
            "batch_size": 8,
            "micro_batch_size": 8,
            "max_seq_len": 640,
            "checkpoint_every_steps": 30,
            "cpu_threads": 1,
        },
    },
}


@dataclass
class DemoSummary:
    """What the demo did and where its outputs are."""

    out_dir: Path
    sweep_dir: Path
    tracking_uri: str
    runs_path: Path
    curves_path: Path
    report_dir: Path | None
    num_finished: int
    num_failed: int
    objective: str
    missing: list[str] = field(default_factory=list)
    stage_s: dict[str, float] = field(default_factory=dict)


def missing_pieces() -> list[str]:
    """What the real pipeline needs and cannot import (an empty list: everything is there)."""
    wanted = [
        ("trainers.config", "RLConfig"),
        ("trainers.rl", "train_rl"),
        ("trainers.sft", "train_sft"),
        ("trainers.teacher", "collect_teacher_traces"),
        ("envs.runner", "open_runner"),
    ]
    missing = []
    for module, attr in wanted:
        try:
            if not hasattr(importlib.import_module(module), attr):
                missing.append(f"{module}.{attr}")
        except ImportError:
            missing.append(f"{module}.{attr}")
    return missing


def _has_report() -> bool:
    from sweep.cli import LAZY_COMMANDS

    return "report" in LAZY_COMMANDS


def run_demo(
    out_dir: Path,
    *,
    num_trials: int | None = None,
    num_updates: int | None = None,
    seed: int = 0,
    progress: Any = None,
) -> DemoSummary:
    """Run the demo into `out_dir` (see the module docstring); returns where everything is.

    `num_trials` and `num_updates` (GRPO updates per trial) override the defaults (8 and 4)."""
    from sweep.driver import launch
    from sweep.export import export_sweep

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stage_s: dict[str, float] = {}
    missing = missing_pieces()
    t0 = time.perf_counter()
    if not missing:
        options = DEMO_OPTIONS
        if num_updates is not None:
            if num_updates < 1:
                raise ValueError(f"--updates {num_updates}: give at least 1 GRPO update per trial")
            options = {**DEMO_OPTIONS, "rl": {**DEMO_OPTIONS["rl"], "num_updates": num_updates}}
        result = launch(
            "demo",
            out_dir=out_dir,
            options=options,
            branch_builder="sweep.branch_points:sft_branch_points",
            num_trials=num_trials or REAL_TRIALS,
            seed=seed,
            progress=progress,
        )
    else:
        logger.warning(
            "the real SFT+RL pipeline is not available (missing: %s): running the sweep machinery on the "
            "surrogate objective instead",
            "; ".join(missing),
        )
        result = launch(
            "paper",
            out_dir=out_dir,
            objective="sweep.objectives:surrogate",
            options={"num_evals": 5},
            num_trials=num_trials or SURROGATE_TRIALS,
            seed=seed,
            progress=progress,
        )
    stage_s["sweep"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    runs_path, curves_path = export_sweep(result.settings.sweep_dir, out_dir / "runs.parquet")
    stage_s["export"] = time.perf_counter() - t1
    report_dir = None
    if _has_report():
        t2 = time.perf_counter()
        cmd = [sys.executable, "-m", "sweep.cli", "report", str(runs_path), "--out", str(out_dir / "report")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        stage_s["report"] = time.perf_counter() - t2
        if proc.returncode == 0:
            report_dir = out_dir / "report"
        else:
            missing.append(
                f"a working `agentsweep report` (exit {proc.returncode}: {proc.stderr.strip()[-300:]})"
            )
    else:
        missing.append("`agentsweep report` (the analysis package's command)")
    summary = DemoSummary(
        out_dir=out_dir,
        sweep_dir=Path(result.settings.sweep_dir),
        tracking_uri=result.settings.tracking_uri,
        runs_path=runs_path,
        curves_path=curves_path,
        report_dir=report_dir,
        num_finished=result.num_finished,
        num_failed=result.num_failed,
        objective=result.settings.objective,
        missing=missing,
        stage_s=stage_s,
    )
    (out_dir / "DEMO.md").write_text(_markdown(summary))
    return summary


def _markdown(s: DemoSummary) -> str:
    lines = [
        "# agentsweep demo",
        "",
        f"- objective: `{s.objective}`; {s.num_finished} runs finished, {s.num_failed} failed",
        f"- sweep directory: `{s.sweep_dir}` (`agentsweep status {s.sweep_dir}`)",
        f"- MLflow store: `{s.tracking_uri}`; open the UI with `agentsweep ui {s.sweep_dir}` (http://127.0.0.1:5000)",
        f"- runs table: `{s.runs_path}`; curves: `{s.curves_path}`",
        f"- report: `{s.report_dir / 'report.html'}`"
        if s.report_dir
        else "- report: not produced (see below)",
        "- stage wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in s.stage_s.items()),
    ]
    if s.missing:
        lines += ["", "## Not run: missing pieces", ""] + [f"- {m}" for m in s.missing]
    return "\n".join(lines) + "\n"
