"""`agentsweep demo`: a cut-down run of the study's recipe on one machine, about 15 minutes on 2 cores.

Stages: the scripted teacher's traces on a few MiniWoB++ training tasks -> SFT of the shipped pretrained student
(`lookup-tiny`, trainers.models.SHIPPED_STUDENTS) with a branch point every k updates (built once, content-hashed)
-> a random-search RL sweep (sweep/spaces/demo.yaml: two knobs varied, the rest at the study's recommended values)
over the branch points and the base student, on Ray Tune logged to a sqlite MLflow under OUT -> export (runs and
curves tables, with the arms: `params.arm` and the SFT-only arm as a run of its own, `sweep.arms`) -> `agentsweep
report --stratum params.sft_checkpoint --curves --arm params.arm --baseline sft` (effects, importance, p_best per
branch point, the compute frontier, FLOPs-to-target, the arms at equal k and SFT+RL's compute to match SFT-only's
peak) -> OUT/DEMO.md and the headline numbers on the terminal.

The sizes live in one place, `SCALES` (`--scale full`, the default, is `make demo`; `smoke` is the test's cut-down
variant). Every stage is the product's own code (no surrogate objective); a stage that fails fails the demo.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEMO_TASKS",
    "REPORT_EXTRA_ARGS",
    "SCALES",
    "DemoError",
    "DemoScale",
    "DemoSummary",
    "ScaleName",
    "demo_options",
    "headline",
    "missing_pieces",
    "run_demo",
]

logger = logging.getLogger(__name__)

DEMO_TASKS: tuple[str, ...] = tuple(
    f"miniwob.{t}"
    for t in (
        # easy ones (one click, no reading)
        "click-test",
        "click-test-2",
        "click-dialog",
        # ones that need the goal read (which link, which text, which tab, which button, which field)
        "click-link",
        "enter-text",
        "click-dialog-2",
        "click-tab",
        "focus-text-2",
    )
)
"""Training tasks of the demo (the study's training split); held-out goals are their seeds 0-2."""

STUDENT = "lookup-tiny"
ENV_OPTIONS = {"observation": "compact", "max_obs_tokens": 600}  # the study recipe's observation
METRIC = "heldout_goal_success"  # the demo space's metric (spaces/demo.yaml)
MAX_STEPS = 3  # agent steps per episode: the scripted teacher needs at most 2 on these tasks

ScaleName = Literal["full", "smoke"]


@dataclass(frozen=True)
class DemoScale:
    """How big the demo is: what the wall time is traded against."""

    num_trials: int
    """RL trials (random search over spaces/demo.yaml and the branch points)."""
    num_updates: int
    """GRPO updates per trial (held-out evaluation at step 0 and after the last update)."""
    tasks: tuple[str, ...]
    """MiniWoB++ training tasks (teacher, SFT, RL and their held-out goals)."""
    sft_epochs: float
    """SFT epochs over the teacher's traces."""
    branch_every_steps: int
    """An SFT branch point every this many updates (and one at the end)."""


SCALES: dict[ScaleName, DemoScale] = {
    # `make demo`: 2 SFT branch points (of 160 updates on the ~64 teacher steps) + the base student = 3 strata
    # of 5-7 runs (seed 0) for 3 coefficients each (intercept, learning rate, temperature)
    "full": DemoScale(num_trials=18, num_updates=2, tasks=DEMO_TASKS, sft_epochs=20.0, branch_every_steps=80),
    # the test's cut-down variant: fewer tasks, runs and updates, same stages
    "smoke": DemoScale(
        num_trials=4, num_updates=1, tasks=DEMO_TASKS[:2], sft_epochs=2.0, branch_every_steps=4
    ),
}
assert set(SCALES) == set(typing.get_args(ScaleName))

REPORT_EXTRA_ARGS: tuple[str, ...] = ("--arm", "params.arm", "--baseline", "sft")
"""Further `agentsweep report` flags of the demo: compare the arms of the exported `params.arm` (sft: the SFT-only
pseudo-run the export adds, rl: from the base student, sft+rl: from an SFT branch point) at an equal number of runs
(k: the smallest arm's, 1 with one SFT run), and each arm's compute to match SFT-only's peak (frontier_k.png and
compute_to_match.csv, the report's headline)."""


def demo_options(scale: DemoScale) -> dict[str, Any]:
    """The sweep's fixed objective options: the non-swept RLConfig fields and the SFT branch points' inputs."""
    return {
        # non-swept RLConfig fields of every trial (the swept ones come from spaces/demo.yaml)
        "rl": {
            "env": "miniwob",
            "tasks": list(scale.tasks),
            "student": STUDENT,
            "eval_task_split": None,  # the metric is held-out goal success (seeds 0-2 of the training tasks)
            "group_size": 4,
            "num_updates": scale.num_updates,
            "eval_every": scale.num_updates,
            "max_steps": MAX_STEPS,
            "workers": 1,
            "max_new_tokens": 24,
            "max_seq_len": 1024,
            "micro_batch_size": 16,
            "cpu_threads": 1,
            "env_options": ENV_OPTIONS,
        },
        # inputs of the shared SFT branch points (their content hash decides whether they are rebuilt)
        "sft": {
            "teacher": {
                "env": "miniwob",
                "tasks": list(scale.tasks),
                "teacher": "scripted",
                "max_steps": MAX_STEPS,
                "workers": 2,
                "env_options": ENV_OPTIONS,
            },
            "student": {
                "student": STUDENT,
                "num_epochs": scale.sft_epochs,
                "learning_rate": 1e-3,
                "batch_size": 8,
                "micro_batch_size": 8,
                "max_seq_len": 1024,
                "checkpoint_every_steps": scale.branch_every_steps,
                "cpu_threads": 2,
            },
        },
    }


class DemoError(RuntimeError):
    """A stage of the demo failed (the CLI exits non-zero with this message)."""


@dataclass
class DemoSummary:
    """What the demo did and where its outputs are."""

    out_dir: Path
    sweep_dir: Path
    tracking_uri: str
    runs_path: Path
    curves_path: Path
    report_dir: Path
    num_finished: int
    num_failed: int
    objective: str
    headline: list[str] = field(default_factory=list)
    stage_s: dict[str, float] = field(default_factory=dict)


def missing_pieces() -> list[str]:
    """What the pipeline needs and cannot import (an empty list: everything is there)."""
    import importlib

    wanted = [
        ("trainers.config", "RLConfig"),
        ("trainers.rl", "train_rl"),
        ("trainers.sft", "train_sft"),
        ("trainers.teacher", "collect_teacher_traces"),
        ("envs.runner", "open_runner"),
        ("analysis.cli", "report"),
    ]
    missing = []
    for module, attr in wanted:
        try:
            if not hasattr(importlib.import_module(module), attr):
                missing.append(f"{module}.{attr}")
        except ImportError:
            missing.append(f"{module}.{attr}")
    return missing


def sft_only_peak(curves: Path) -> float:
    """The SFT-only curve's best score: the best branch point's own evaluation (step 0 of the RL runs from it),
    the FLOPs-to-target table's target (how much compute SFT+RL needs to match SFT alone at its peak)."""
    import pandas as pd

    c = pd.read_parquet(curves, columns=["step", METRIC])
    return float(c.loc[c["step"] == 0, METRIC].max())


def report_command(runs: Path, curves: Path, out: Path) -> list[str]:
    """The demo's `agentsweep report` command line (a subprocess: its own BLAS threads and a clean exit code)."""
    return [
        sys.executable,
        "-m",
        "sweep.cli",
        "report",
        str(runs),
        "--curves",
        str(curves),
        "--stratum",
        "params.sft_checkpoint",
        "--target",
        repr(sft_only_peak(curves)),
        "--out",
        str(out),
        *REPORT_EXTRA_ARGS,
    ]


def run_demo(
    out_dir: Path,
    *,
    scale: ScaleName = "full",
    num_trials: int | None = None,
    num_updates: int | None = None,
    seed: int = 0,
    progress: Any = None,
) -> DemoSummary:
    """Run the demo into `out_dir` (see the module docstring); returns where everything is.

    `num_trials` and `num_updates` (GRPO updates per trial) override the scale's.

    Raises:
        DemoError: a piece is missing, a trial failed to finish, or the report failed.
    """
    from sweep.driver import launch
    from sweep.export import export_sweep

    missing = missing_pieces()
    if missing:
        raise DemoError(
            f"the demo needs {', '.join(missing)}: install agentsweep with its extras (`make setup`)"
        )
    chosen = SCALES[scale]
    if num_updates is not None:
        if num_updates < 1:
            raise ValueError(f"--updates {num_updates}: give at least 1 GRPO update per trial")
        chosen = DemoScale(**{**chosen.__dict__, "num_updates": num_updates})
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stage_s: dict[str, float] = {}
    t0 = time.perf_counter()
    result = launch(
        "demo",
        out_dir=out_dir,
        options=demo_options(chosen),
        branch_builder="sweep.branch_points:sft_branch_points",
        num_trials=num_trials or chosen.num_trials,
        seed=seed,
        progress=progress,
    )
    stage_s["sft + sweep"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    runs_path, curves_path = export_sweep(result.settings.sweep_dir, out_dir / "runs.parquet")
    stage_s["export"] = time.perf_counter() - t1
    if result.num_failed:
        raise DemoError(
            f"{result.num_failed} RL trial(s) failed: `agentsweep status {result.settings.sweep_dir}` "
            "shows them and their logs"
        )
    t2 = time.perf_counter()
    report_dir = out_dir / "report"
    proc = subprocess.run(report_command(runs_path, curves_path, report_dir), capture_output=True, text=True)
    stage_s["report"] = time.perf_counter() - t2
    (out_dir / "report.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise DemoError(
            f"`agentsweep report` failed (exit {proc.returncode}; {out_dir / 'report.log'}): "
            f"{proc.stderr.strip()[-400:]}"
        )
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
        headline=headline(report_dir),
        stage_s=stage_s,
    )
    (out_dir / "DEMO.md").write_text(_markdown(summary))
    return summary


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return "nan" if math.isnan(v) else f"{v:.3f}"


def _branch_label(stratum: str) -> str:
    from sweep.arms import arm_of

    return "base student" if arm_of(stratum) == "rl" else f"SFT branch point {float(stratum):.3g} FLOPs"


def headline(report_dir: Path) -> list[str]:
    """The report's headline numbers, one line each, read from its tables.

    Per branch point: the best configuration (each varied knob's most probably best value, p_best) and, for the
    stratum's most important knob, the estimated mean at that value and its effect with the 95% interval;
    FLOPs to reach the SFT-only peak from each branch point; the top hyperparameter by importance
    (mean over strata); the compute frontier's best (score, interval, FLOPs); with the arms compared
    (`compute_to_match.csv`), each arm's compute-to-match ratio against SFT-only's equal-k peak, with its 95%
    bootstrap interval; each of the paper's headline findings with its verdict and interval (`findings.csv`)."""
    import pandas as pd

    report_dir = Path(report_dir)
    effects = pd.read_csv(report_dir / "effects.csv", dtype={"stratum": str, "value": str})
    importance = pd.read_csv(report_dir / "importance.csv", dtype={"stratum": str})
    strata = json.loads((report_dir / "summary.json").read_text())["strata"]
    lines = []
    for stratum, info in strata.items():
        e = effects[effects.stratum == stratum].dropna(subset=["p_best"])  # none without residual dof
        label = f"{_branch_label(stratum)} ({info['n_runs']} runs)"
        if e.empty:
            lines.append(f"{label}: no intervals (too few runs for the effects model)")
            continue
        if (e.effect_lo == e.effect_hi).all():  # zero residual variance: every run scored the same
            lines.append(f"{label}: every run scored {_fmt(e['mean'].iloc[0])}, nothing to rank")
            continue
        imp = importance[importance.stratum == stratum].set_index("hparam")["importance"]
        best = e.loc[e.groupby("hparam")["p_best"].idxmax()]
        config = ", ".join(f"{r.hparam}={r.value} (p_best {r.p_best:.2f})" for r in best.itertuples())
        top = best.assign(imp=best.hparam.map(imp)).sort_values("imp", ascending=False).iloc[0]
        lines.append(
            f"{label}: best {config}; at {top.hparam}={top.value} mean {_fmt(top['mean'])}, "
            f"effect {_fmt(top.effect)} [{_fmt(top.effect_lo)}, {_fmt(top.effect_hi)}]"
        )
    finite = importance.dropna(subset=["importance"])
    if len(finite):
        by_h = finite.groupby("hparam")[["importance", "importance_lo", "importance_hi"]].mean()
        h = by_h["importance"].idxmax()
        r = by_h.loc[h]
        lines.append(
            f"top hyperparameter by importance: {h} {_fmt(r.importance)} "
            f"[{_fmt(r.importance_lo)}, {_fmt(r.importance_hi)}] (mean over the branch points that estimate it)"
        )
    else:
        lines.append("importance: not estimable (no stratum has residual degrees of freedom; add runs)")
    frontier_csv = report_dir / "frontier.csv"
    if frontier_csv.is_file():
        f = pd.read_csv(frontier_csv, dtype={"stratum": str})
        if len(f) and f["frontier"].notna().any():
            b = f.loc[f["frontier"].idxmax()]
            lines.append(
                f"frontier's best: {_fmt(b.frontier)} [{_fmt(b.lo)}, {_fmt(b.hi)}] held-out goal success at "
                f"{b.flops:.3g} FLOPs ({_branch_label(b.stratum)})"
            )
    reach_csv = report_dir / "compute_to_target.csv"
    if reach_csv.is_file():
        r = pd.read_csv(reach_csv, dtype={"group": str})
        if len(r):
            parts = [
                f"{_branch_label(g.group)} {g.flops_to_target:.3g} FLOPs (reached in {g.p_reached:.0%} of resamples)"
                if g.p_reached > 0
                else f"{_branch_label(g.group)} never"
                for g in r.itertuples()
            ]
            lines.append(f"FLOPs to the SFT-only peak {_fmt(r.target.iloc[0])}: " + "; ".join(parts))
    match_csv = report_dir / "compute_to_match.csv"
    if match_csv.is_file():
        m = pd.read_csv(match_csv)
        if len(m):
            parts = [_match_text(row) for row in m.itertuples()]
            lines.append(
                f"compute to match the SFT-only arm's peak {_fmt(m.target.iloc[0])} (expected best of "
                f"k = {int(m.k.iloc[0])} runs per arm): " + "; ".join(parts)
            )
    findings_csv = report_dir / "findings.csv"
    if findings_csv.is_file():
        f = pd.read_csv(findings_csv)
        lines += [
            f"paper's finding '{r.finding}': {r.verdict}"
            + ("" if pd.isna(r.estimate) else f" ({_fmt(r.estimate)} [{_fmt(r.lo)}, {_fmt(r.hi)}])")
            for r in f.itertuples()
        ]
    return lines


_ARM_LABELS = {"sft": "SFT only", "rl": "RL only", "sft+rl": "SFT+RL"}


def _match_text(row: Any) -> str:
    """'SFT+RL 0.55x SFT-only's FLOPs [0.41, 0.83] (reached in 90% of resamples)', from a compute_to_match row."""
    name = _ARM_LABELS.get(row.arm, row.arm)
    interval = f"[{row.lo:.2f}, {'inf' if math.isinf(row.hi) else f'{row.hi:.2f}'}]"
    reached = f"reached in {row.p_reached:.0%} of resamples"
    if not math.isfinite(row.ratio):
        return f"{name} never ({interval}, {reached})"
    return f"{name} {row.ratio:.2f}x SFT-only's FLOPs {interval} ({reached})"


def _markdown(s: DemoSummary) -> str:
    lines = [
        "# agentsweep demo",
        "",
        f"- objective: `{s.objective}`; {s.num_finished} runs finished, {s.num_failed} failed",
        f"- sweep directory: `{s.sweep_dir}` (`agentsweep status {s.sweep_dir}`)",
        f"- MLflow store: `{s.tracking_uri}`; open the UI with `agentsweep ui {s.sweep_dir}` (http://127.0.0.1:5000)",
        f"- runs table: `{s.runs_path}`; curves: `{s.curves_path}`",
        f"- report: `{s.report_dir / 'report.html'}`",
        "- stage wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in s.stage_s.items()),
        "",
        "## Headline",
        "",
        *[f"- {line}" for line in s.headline],
    ]
    return "\n".join(lines) + "\n"
