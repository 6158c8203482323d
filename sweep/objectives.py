"""Objectives: what one trial runs. A plain function `objective(params, ctx, report)`, as in Ray Tune's examples.

- `params`: the trial's hyperparameters, every name of the space present (inactive conditionals are None).
- `ctx`: a `TrialContext` (seed, working directory, checkpoint to resume from, SFT branch point, options).
- `report(metrics, checkpoint=None)`: call after each evaluation with at least `step` and `flops`
  (the trainers' reporter contract); `checkpoint` is a directory holding a resumable state.

Objectives know nothing of Ray or MLflow; the driver wraps them as Tune trainables. A sweep names its objective
by import path ("sweep.objectives:surrogate", "sweep.objectives:rl", "mypkg.mod:fn") so `resume` can find it.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "Objective",
    "Reporter",
    "TrialContext",
    "import_object",
    "rl",
    "rl_flops_of",
    "surrogate",
    "surrogate_success",
]


class Reporter(Protocol):
    def __call__(self, metrics: dict[str, float], checkpoint: str | None = None) -> None: ...


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its hyperparameters."""

    trial_id: str
    seed: int
    """The trial's seed: a stable function of the sweep seed and the trial's suggestion index
    (`sweep.tracking.seed_of_trial`), the same for every attempt of the trial."""
    trial_dir: str
    """A writable working directory for this trial."""
    samples_dir: str
    """Files written here (e.g. `trajectories.jsonl`, a sample of episodes) become MLflow artifacts."""
    resume_from: str | None = None
    """A checkpoint directory this trial reported earlier (after a crash or retry), else None."""
    branch_point: str | None = None
    """Path of the SFT checkpoint this trial starts from (None: the base student)."""
    branch_point_flops: float = 0.0
    """SFT FLOPs spent up to the branch point (counted in the trial's `flops`)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The sweep's fixed (non-swept) settings for the objective."""
    resources: Mapping[str, float] = field(default_factory=dict)
    """Resources Ray assigned to this trial, e.g. {"CPU": 1.0, "GPU": 0.5, "browser": 1.0}."""


Objective = Callable[[dict[str, Any], TrialContext, Reporter], None]


def import_object(path: str) -> Any:
    """`module:attribute` -> the object. Raises ValueError naming the path when it cannot be found."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"objective {path!r} must be 'module:function', e.g. 'sweep.objectives:surrogate'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import objective {path!r}: {exc}") from exc


def rl_flops_of(metrics: Mapping[str, Any]) -> float:
    """A trial's RL compute from one of its results: `rl_flops`, else `flops` (an objective that reports no
    split), else 0."""
    return float(metrics.get("rl_flops", metrics.get("flops", 0.0)) or 0.0)


# --------------------------------------------------------------------------- surrogate (benchmarks, tests)

# Effects in logit units, shaped after the study's reported findings (PAPER.md): the optimum sits at its best
# values, curriculum/error logs help only without SFT, std normalisation and gamma matter more for weak SFT,
# the trust region hurts from scratch and helps the strongest SFT. Values not listed have no effect.
_EFFECTS: dict[str, dict[Any, float]] = {
    "temperature": {0.1: -0.10, 0.25: 0.15, 0.5: 0.10, 0.75: -0.05, 1.0: -0.30},
    "gamma": {0.5: -0.30, 0.8: -0.10, 0.9: 0.10, 0.95: 0.05, 0.98: 0.0, 1.0: -0.05},
    "grouped_advantage": {True: 0.15, False: -0.15},
    "zero_adv_filter": {True: 0.05, False: -0.05},
    "batch_size": {64: -0.15, 256: 0.0, 512: 0.10, 1024: 0.05},
    "learning_rate": {1e-6: 0.10, 5e-6: -0.20, 5e-7: -0.05},
    "curriculum_target_return": {0.25: -0.02, 0.5: 0.03, 0.75: -0.01},
    "curriculum_temperature": {0.1: 0.02, 0.3: -0.02},
}


def surrogate_success(params: Mapping[str, Any]) -> float:
    """Expected final held-out goal success of an RL run: a pure, cheap function of the hyperparameters.

    Args:
        params: hyperparameters by name (missing or None ones contribute nothing).

    Returns:
        A success rate in (0, 1).
    """
    sft = float(params.get("sft_checkpoint") or 0.0)
    weak = 1.0 if sft <= 0 else (0.5 if sft < 5e18 else 0.0)  # how weakly fine-tuned the student is
    logit = -0.9 + 1.1 * (1 - weak) + (0.15 if sft >= 5e18 else 0.0)
    for name, table in _EFFECTS.items():
        logit += table.get(params.get(name), 0.0) * (1 + weak if name == "gamma" else 1)
    if params.get("curriculum") is not None:
        logit += (0.20 if params["curriculum"] else -0.05) * weak - (0.15 if params["curriculum"] else 0) * (
            1 - weak
        )
    if params.get("std_normalize") is not None:
        logit += (0.10 if params["std_normalize"] else -0.10) * (1 + weak)
    if params.get("error_log") is not None:
        logit += 0.15 * weak if params["error_log"] else -0.02 * (1 - weak)
    if params.get("importance_ratio") is not None and params["importance_ratio"]:
        logit += -0.15 * weak + 0.10 * (1 - weak)
    return 1.0 / (1.0 + math.exp(-logit))


def surrogate(params: dict[str, Any], ctx: TrialContext, report: Reporter) -> None:
    """A stand-in RL run on `surrogate_success`: seeded noisy learning curves, FLOPs, resumable checkpoints.

    Options (`ctx.options`): `num_evals` (default 5), `rl_flops_per_episode` (default 2e13), `noise` (0.03),
    `fail_when` (a mapping name -> value: raise when the params match, to exercise retries), `sleep_s` (0),
    `hold_dir` (fault tests: see `_hold`), `eval_at_start` (False; True: an evaluation at step 0 before any
    update, at the branch point's FLOPs, as `trainers.rl.train_rl` does; the curve's start plus noise).
    """
    import time

    import numpy as np

    num_evals = int(ctx.options.get("num_evals", 5))
    flops_per_episode = float(ctx.options.get("rl_flops_per_episode", 2e13))
    noise = float(ctx.options.get("noise", 0.03))
    fail_when = ctx.options.get("fail_when") or {}
    if fail_when and all(params.get(k) == v for k, v in fail_when.items()):
        raise RuntimeError(f"surrogate: configured to fail for {dict(fail_when)}")
    start = 0
    if ctx.resume_from:
        start = json.loads((Path(ctx.resume_from) / "state.json").read_text())["step"]
    final = surrogate_success(params)
    batch = int(params.get("batch_size") or 64)
    base = 0.3 * final
    rng = np.random.default_rng([ctx.seed, start])
    if ctx.options.get("eval_at_start") and ctx.resume_from is None:
        goal = float(np.clip(base + noise * rng.standard_normal(), 0.0, 1.0))
        report(
            {
                "step": 0,
                "rl_flops": 0.0,
                "flops": ctx.branch_point_flops,
                "heldout_goal_success": goal,
                "heldout_task_success": float(np.clip(goal - 0.05 + noise * rng.standard_normal(), 0.0, 1.0)),
            }
        )
    for step in range(start + 1, num_evals + 1):
        if ctx.options.get("sleep_s"):
            time.sleep(float(ctx.options["sleep_s"]))
        if ctx.options.get("hold_dir"):
            _hold(Path(ctx.options["hold_dir"]), step, ctx.trial_id)
        frac = 1.0 - math.exp(-3.0 * step / num_evals)
        goal = float(np.clip(base + (final - base) * frac + noise * rng.standard_normal(), 0.0, 1.0))
        rl_flops = step * batch * flops_per_episode
        ckpt = Path(ctx.trial_dir) / f"ckpt_{step}"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "state.json").write_text(json.dumps({"step": step}))
        report(
            {
                "step": step,
                "rl_flops": rl_flops,
                "flops": ctx.branch_point_flops + rl_flops,
                "heldout_goal_success": goal,
                "heldout_task_success": float(np.clip(goal - 0.05 + noise * rng.standard_normal(), 0.0, 1.0)),
                "train_return": float(2 * goal - 1),
                "tokens": float(step * batch * 200),
            },
            checkpoint=str(ckpt),
        )
    Path(ctx.samples_dir).mkdir(parents=True, exist_ok=True)
    summary = {
        "final_success": final,
        "seed": ctx.seed,
        "resources": dict(ctx.resources),
        "start_step": start,
        "branch_point": ctx.branch_point,
        "branch_point_flops": ctx.branch_point_flops,
    }
    (Path(ctx.samples_dir) / "summary.json").write_text(json.dumps(summary))


def _hold(folder: Path, step: int, trial_id: str, *, max_wait_s: float = 120.0) -> None:
    """A chosen point for fault tests: when `<folder>/arm-step<step>` exists, the first trial to get here
    before reporting `step` writes its id to `held-step<step>` and waits for `release-step<step>` (or
    `max_wait_s`); every other trial, and every later pass, goes on."""
    import os
    import time

    if not (folder / f"arm-step{step}").exists():
        return
    try:
        fd = os.open(folder / f"held-step{step}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(trial_id)
    deadline = time.monotonic() + max_wait_s
    while not (folder / f"release-step{step}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


# --------------------------------------------------------------------------- the real RL run


def rl(params: dict[str, Any], ctx: TrialContext, report: Reporter) -> None:
    """One RL run of the trainers package from the trial's branch point (`trainers.train_rl(cfg, report)`).

    `ctx.options["rl"]` holds the non-swept RLConfig fields (env, tasks, student, steps, ...); the swept ones come
    from `params` (the same names); the branch point, seed, output directory and resume state from `ctx`.
    """
    from trainers.config import RLConfig
    from trainers.rl import train_rl

    fields = dict(ctx.options.get("rl", {}))
    fields.update({k: v for k, v in params.items() if v is not None})
    fields.update(
        seed=ctx.seed,
        output_dir=ctx.trial_dir,
        resume_from=ctx.resume_from,
        sft_checkpoint=float(params.get("sft_checkpoint") or 0.0),
        init_checkpoint=ctx.branch_point,
        sft_flops=ctx.branch_point_flops,
        samples_dir=ctx.samples_dir,
    )
    known = set(RLConfig.__dataclass_fields__)
    missing = sorted(k for k in fields if k not in known)
    if missing:
        raise ValueError(f"RLConfig has no field(s) {missing}; fix the sweep's rl options or the space")
    train_rl(RLConfig(**fields), report)
