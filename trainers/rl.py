"""Multi-turn GRPO from a branch point: rollout -> advantages -> policy_loss, joined by a short loop.

Per update: `goals_per_update` goals are drawn (uniformly, or by the curriculum), each is played
`group_size` times through the env runner; the episode return (+1/-1 times gamma**steps) gives one
advantage per episode, shared by every agent step of that episode; the token-level loss runs over the
agent's completions only (never the prompts/observations), averaged over the batch's kept tokens, with
gradient accumulation over micro-batches up to the effective batch. No KL term.

Every `eval_every` updates (and before the first) the policy plays the held-out goals and held-out tasks;
a complete resumable checkpoint is written and `report(metrics, checkpoint)` is called. The result carries
the raw scores of the evaluation chosen by the rolling mean (window 3) of held-out-goal success.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.selection import CHECKPOINT_METRIC, select_checkpoint
from envs.protocol import Trajectory
from trainers.common import atomic_write, load_checkpoint, make_optimizer, save_checkpoint, seed_everything
from trainers.config import RLConfig
from trainers.envio import Runner, goal_key, open_env_runner, play_episodes, split_goals
from trainers.flops import FlopsCounter, gpu_metrics
from trainers.grpo import CurriculumState, curriculum_weights, training_batch, update
from trainers.models import load_student, resolve_device

__all__ = [
    "RLResult",
    "train_rl",
    "rollout",
    "group_returns",
    "sample_goals",
    "evaluate",
    "WALL_SPLIT_KEYS",
    "EVALS_FILE",
]

logger = logging.getLogger(__name__)

WALL_SPLIT_KEYS = ("rollout_gen_s", "rollout_env_s", "update_s")
"""Per-evaluation metrics: seconds of the updates since the previous evaluation spent generating rollouts, in
the envs (browsers, runner, prompts), and in the policy update (with the weight push); `eval_s` is the
evaluation's own, `wall_s` the run's clock."""


@dataclass
class RLResult:
    """What an RL run leaves: the chosen evaluation's raw scores and the whole evaluation history."""

    best_index: int
    """Index into `history` of the evaluation `analysis.selection.select_checkpoint` chooses."""
    scores: dict[str, float]
    """The chosen evaluation's raw metrics (heldout_goal_success, heldout_task_success, step, flops, ...)."""
    checkpoint: str | None
    """The chosen evaluation's checkpoint directory (None when it was not kept)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Every evaluation's metrics, in order."""


# --------------------------------------------------------------------------- the pieces of one update


def sample_goals(
    goals: Sequence[Any],
    num: int,
    rng: np.random.Generator,
    *,
    curriculum: CurriculumState | None,
    target_return: float,
    temperature: float,
) -> list[Any]:
    """Draw `num` goals: uniformly (curriculum None), or a task by `curriculum_weights` then a goal of it."""
    if curriculum is None:
        idx = rng.choice(len(goals), size=num, replace=num > len(goals))
        return [goals[i] for i in idx]
    by_task: dict[str, list[Any]] = {}
    for g in goals:
        by_task.setdefault(goal_key(g)[0], []).append(g)
    tasks = sorted(by_task)
    p = curriculum_weights(tasks, curriculum, target_return=target_return, temperature=temperature)
    picked = rng.choice(len(tasks), size=num, p=p)
    return [by_task[tasks[k]][rng.integers(len(by_task[tasks[k]]))] for k in picked]


def rollout(
    runner: Runner, policy, goals: Sequence[Any], cfg: RLConfig, *, timing: dict | None = None
) -> list[list[Trajectory]]:
    """Play each goal `group_size` times; returns (N, G) trajectories, one row per goal. With `timing`, adds the
    generation and env seconds to it (`play_episodes`)."""
    g = cfg.group_size
    played = [goal for goal in goals for _ in range(g)]
    trajs = play_episodes(runner, policy, played, cfg, timing=timing)
    return [trajs[i * g : (i + 1) * g] for i in range(len(goals))]


def group_returns(groups: Sequence[Sequence[Trajectory]], gamma: float) -> np.ndarray:
    """(N, G) episode returns (`trainers.returns.episode_return` with discount `gamma`); NaN for episodes lost to
    an env error."""
    from trainers.returns import episode_return

    return np.array(
        [
            [np.nan if t.env_error else episode_return(t.success, t.num_steps, gamma) for t in row]
            for row in groups
        ],
        dtype=np.float64,
    )


def evaluate(
    runner: Runner, policy, goals: Sequence[Any], cfg: RLConfig, *, seed: int, outcomes: list | None = None
) -> float:
    """Success rate on `goals` (one episode each) at the run's temperature; sampling seeded by `seed` and
    isolated from the training RNG stream. NaN when there are no goals; env-error episodes are left out. With
    `outcomes`, appends one `(task, seed, success, num_steps)` per goal played without an env error."""
    import torch

    if not goals:
        return float("nan")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trajs = play_episodes(runner, policy, list(goals), cfg)
    kept = [(g, t) for g, t in zip(goals, trajs, strict=True) if not t.env_error]
    if outcomes is not None:
        outcomes.extend((*goal_key(g), bool(t.success), int(t.num_steps)) for g, t in kept)
    return float(np.mean([t.success for _, t in kept])) if kept else float("nan")


# --------------------------------------------------------------------------- the loop


def _spread(goals: list[Any], k: int | None) -> list[Any]:
    """At most k goals spread evenly over the list (a fixed subset: every task represented when k allows)."""
    if k is None or k >= len(goals):
        return goals
    return [goals[i] for i in np.unique(np.round(np.linspace(0, len(goals) - 1, k)).astype(int))]


@dataclass
class _Run:
    """The mutable state of one RL run (what a checkpoint holds besides model and optimiser)."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[str | None] = field(default_factory=list)
    returns_since_eval: list[float] = field(default_factory=list)
    stats_since_eval: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0

    def best(self) -> int:
        """Index of the chosen evaluation: the study's rule (`analysis.selection`) over the history."""
        return select_checkpoint([h[CHECKPOINT_METRIC] for h in self.history])


@dataclass
class _Loop:
    """What the updates and evaluations of one run share."""

    cfg: RLConfig
    run: _Run
    model: Any
    tok: Any
    optimizer: Any
    policy: Any
    runner: Runner
    eval_goals: dict[str, list[Any]]
    """{"heldout_goals", "heldout_tasks"} -> the goals each evaluation plays."""
    counter: FlopsCounter
    """RL FLOPs (rollouts and updates)."""
    eval_counter: FlopsCounter
    """Evaluation FLOPs, counted apart."""
    rng: np.random.Generator
    """Goal sampling."""
    curriculum: CurriculumState | None
    wall0: float
    """perf_counter origin of the run's wall clock (time before a resume included)."""
    report: Callable[..., None] | None

    def done(self) -> bool:
        """All updates done, or the RL FLOPs budget spent."""
        cfg = self.cfg
        budget_spent = bool(cfg.rl_flops_budget) and self.counter.flops >= cfg.rl_flops_budget
        return self.run.step >= cfg.num_updates or budget_spent


def train_rl(
    cfg: RLConfig,
    report: Callable[..., None] | None = None,
    *,
    runner: Runner | None = None,
    goal_splits: dict[str, Sequence[Any]] | None = None,
) -> RLResult:
    """Multi-turn GRPO from `cfg.init_checkpoint` (or the student), or resumed from `cfg.resume_from`.

    Args:
        cfg: the RL configuration.
        report: `report(metrics, checkpoint)` after each evaluation with `step`, `flops` (SFT share + RL),
            `rl_flops`, `heldout_goal_success`, `heldout_task_success`, `train_return`, `tokens` and more.
        runner: an episode runner (default: `envs.runner.open_runner(cfg.env, ...)`, closed at the end).
        goal_splits: {"train", "heldout_goals", "heldout_tasks"} -> goals (default: the env registry's splits).

    Returns:
        RLResult with the chosen evaluation's raw scores.
    """
    t_start = time.perf_counter()
    device = resolve_device(cfg.device, cpu_threads=cfg.cpu_threads)
    seed_everything(cfg.seed)
    model_dir = cfg.resume_from or cfg.init_checkpoint or cfg.student
    model, tok = load_student(model_dir, device=device)
    model.train()
    optimizer = make_optimizer(model, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay)
    counter, eval_counter = FlopsCounter(model), FlopsCounter(model)
    rng = np.random.default_rng(cfg.seed)
    curriculum = CurriculumState() if cfg.curriculum else None
    run = _Run()
    if cfg.resume_from:
        state = load_checkpoint(cfg.resume_from, optimizer=optimizer)
        run = _Run(**state["run"])
        counter.load_state_dict(state["rl_counter"])
        eval_counter.load_state_dict(state["eval_counter"])
        rng.bit_generator.state = state["np_rng"]
        if curriculum is not None:
            curriculum = CurriculumState.from_state_dict(state["curriculum"])
        logger.info("resumed from %s at update %d", cfg.resume_from, run.step)
    splits = dict(goal_splits) if goal_splits is not None else _registry_splits(cfg)
    train_goals = list(splits["train"])
    eval_goals = {
        k: _spread(list(splits.get(k, [])), cfg.max_eval_goals) for k in ("heldout_goals", "heldout_tasks")
    }
    policy = _make_policy(cfg, model, tok, counter, model_dir)
    own_runner = runner is None
    runner = runner or open_env_runner(
        cfg.env, workers=cfg.workers, max_steps=cfg.max_steps, options=cfg.env_options
    )
    loop = _Loop(
        cfg=cfg,
        run=run,
        model=model,
        tok=tok,
        optimizer=optimizer,
        policy=policy,
        runner=runner,
        eval_goals=eval_goals,
        counter=counter,
        eval_counter=eval_counter,
        rng=rng,
        curriculum=curriculum,
        wall0=t_start - run.wall_s,  # time spent before a resume counts
        report=report,
    )
    _trim_outcomes(cfg, run)
    try:
        if run.step == 0 and not run.history:
            _evaluate_and_checkpoint(loop)
        while not loop.done():
            _train_step(loop, train_goals)
            if run.step % cfg.eval_every == 0 or loop.done():
                _evaluate_and_checkpoint(loop)
    finally:
        if own_runner:
            runner.close()
    best = run.best()
    return RLResult(best, dict(run.history[best]), run.checkpoints[best], list(run.history))


def _train_step(loop: _Loop, train_goals: Sequence[Any]) -> None:
    """One update: sample goals, play the groups, advantages, filter, the policy-gradient step."""
    cfg, run = loop.cfg, loop.run
    goals = sample_goals(
        train_goals,
        cfg.goals_per_update,
        loop.rng,
        curriculum=loop.curriculum,
        target_return=cfg.curriculum_target_return,
        temperature=cfg.curriculum_temperature,
    )
    timing: dict[str, float] = {}
    groups = rollout(loop.runner, loop.policy, goals, cfg, timing=timing)
    returns = group_returns(groups, cfg.gamma)
    keep, examples, advs, episodes = training_batch(groups, returns, loop.tok, cfg)
    if loop.curriculum is not None:
        loop.curriculum.update(_task_returns(groups, returns))
    pad_id = loop.tok.pad_token_id
    t0 = time.perf_counter()
    stats = update(
        loop.model,
        loop.optimizer,
        examples,
        advs,
        cfg,
        pad_id=pad_id,
        counter=loop.counter,
        step=run.step,
        episodes=episodes,
    )
    if hasattr(loop.policy, "push_weights"):
        loop.policy.push_weights(loop.model)
    run.step += 1
    run.returns_since_eval.extend(float(r) for r in returns[~np.isnan(returns)])
    run.stats_since_eval.append(
        {
            **stats,
            "kept_frac": float(keep.mean()),
            "rollout_gen_s": timing["gen_s"],
            "rollout_env_s": timing["env_s"],
            "update_s": time.perf_counter() - t0,
        }
    )
    _write_samples(cfg, groups[:2], run.step)


def _registry_splits(cfg: RLConfig) -> dict[str, list[Any]]:
    from envs.registry import parse_seeds

    def goals(split: str | None, tasks: Sequence[str] | None, seeds: str | None = None) -> list[Any]:
        if not split:
            return []
        return split_goals(cfg.env, split, tasks, parse_seeds(seeds) if seeds is not None else None)

    splits = {
        "train": goals(cfg.train_split, cfg.tasks, cfg.train_seeds),
        "heldout_goals": goals(cfg.eval_goal_split, cfg.tasks, cfg.eval_goal_seeds),
        "heldout_tasks": goals(cfg.eval_task_split, cfg.eval_tasks),
    }
    shared = {goal_key(g) for g in splits["train"]} & {goal_key(g) for g in splits["heldout_goals"]}
    if shared:
        raise ValueError(
            f"{len(shared)} held-out goals are also training goals (e.g. {sorted(shared)[:3]}): held-out goals must "
            "never be trained on; change eval_goal_seeds or train_seeds"
        )
    return splits


def _make_policy(cfg: RLConfig, model, tok, counter: FlopsCounter, model_dir: str):
    if cfg.backend == "vllm":
        from trainers.backends import VLLMPolicy
        from trainers.models import student_dir

        policy = VLLMPolicy(str(student_dir(model_dir)), tok, counter=counter, seed=cfg.seed)
        policy.push_weights(model)
        return policy
    from trainers.backends import HFPolicy

    return HFPolicy(
        model,
        tok,
        max_prompt_tokens=cfg.max_seq_len - cfg.max_new_tokens,
        counter=counter,
        micro_batch_size=max(cfg.micro_batch_size, 32),
    )


def _task_returns(groups, returns: np.ndarray) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for row, r in zip(groups, returns, strict=True):
        out.setdefault(row[0].task, []).extend(float(x) for x in r if not np.isnan(x))
    return out


def _evaluate_and_checkpoint(loop: _Loop) -> None:
    """Play the held-out goals and tasks, append the metrics to the history, checkpoint, prune, report."""
    cfg, run, counter, policy = loop.cfg, loop.run, loop.counter, loop.policy
    policy.counter = loop.eval_counter  # evaluation tokens are counted apart from the RL FLOPs
    t0 = time.perf_counter()
    outcomes: dict[str, list] = {"heldout_goals": [], "heldout_tasks": []}
    rates: dict[str, float] = {}
    try:
        for split, seed_base in (("heldout_goals", 100_003), ("heldout_tasks", 100_019)):
            rates[split] = evaluate(
                loop.runner,
                policy,
                loop.eval_goals[split],
                cfg,
                seed=cfg.seed * seed_base + run.step,
                outcomes=outcomes[split],
            )
    finally:
        policy.counter = counter
    goal_sr, task_sr = rates["heldout_goals"], rates["heldout_tasks"]
    _write_outcomes(cfg, run.step, outcomes)
    s = run.stats_since_eval
    metrics = {
        "step": float(run.step),
        "flops": cfg.sft_flops + counter.flops,
        "rl_flops": counter.flops,
        "heldout_goal_success": goal_sr,
        "heldout_task_success": task_sr,
        "train_return": float(np.mean(run.returns_since_eval)) if run.returns_since_eval else float("nan"),
        "tokens": float(counter.tokens),
        "eval_flops": loop.eval_counter.flops,
        "eval_s": time.perf_counter() - t0,
        "wall_s": time.perf_counter() - loop.wall0,
    }
    for key in ("loss", "clip_frac", "ratio_mean", "grad_norm", "kept_frac", "lr"):
        metrics[key] = float(np.mean([x[key] for x in s])) if s else float("nan")
    for key in WALL_SPLIT_KEYS:  # the wall split of the updates since the last evaluation (seconds, summed)
        metrics[key] = float(sum(x[key] for x in s))
    gen = {"gen_tokens": getattr(policy, "num_tokens", 0), "gen_s": getattr(policy, "gen_s", 0.0)}  # vLLM's
    metrics.update(gpu_metrics(counter.flops, metrics["wall_s"], **gen))
    run.history.append(metrics)
    run.returns_since_eval, run.stats_since_eval = [], []
    run.wall_s = metrics["wall_s"]
    path = Path(cfg.output_dir) / f"ckpt_{run.step:06d}"
    run.checkpoints.append(str(path))
    state = {
        "run": dataclasses.asdict(run),
        "rl_counter": counter.state_dict(),
        "eval_counter": loop.eval_counter.state_dict(),
        "np_rng": loop.rng.bit_generator.state,
        "curriculum": loop.curriculum.state_dict() if loop.curriculum else None,
        "config": dataclasses.asdict(cfg),
        "step": run.step,
        "flops": metrics["flops"],
    }
    save_checkpoint(path, model=loop.model, tokenizer=loop.tok, optimizer=loop.optimizer, state=state)
    _prune(cfg, run)
    logger.info(
        "update %d: held-out goals %.3f, tasks %.3f, train return %.3f, %.3g FLOPs",
        run.step,
        goal_sr,
        task_sr,
        metrics["train_return"],
        metrics["flops"],
    )
    if loop.report is not None:
        loop.report(metrics, checkpoint=str(path))


def _prune(cfg: RLConfig, run: _Run) -> None:
    """Keep the last `keep_checkpoints` checkpoints and the currently chosen one; delete the rest."""
    best = run.best()
    keep = set(range(max(0, len(run.checkpoints) - cfg.keep_checkpoints), len(run.checkpoints))) | {best}
    for i, p in enumerate(run.checkpoints):
        if p is not None and i not in keep:
            shutil.rmtree(p, ignore_errors=True)
            run.checkpoints[i] = None


EVALS_FILE = "evals.jsonl"
"""Per-goal evaluation outcomes of a run, in its output_dir: one JSON line per (evaluation, split, goal)."""


def _trim_outcomes(cfg: RLConfig, run: _Run) -> None:
    """At the start of a run, keep in `<output_dir>/evals.jsonl` only the evaluations of the checkpoint resumed
    from (none for a fresh run): lines a killed run wrote after its checkpoint, or torn by the kill, are dropped,
    and the resumed run writes those evaluations again."""
    path = Path(cfg.output_dir) / EVALS_FILE
    if not path.is_file():
        return
    last = run.step if run.history else -1
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= last:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):  # a line torn by a kill mid-write
            continue
    if len(kept) < len(lines):
        atomic_write(path, "".join(kept))


def _write_outcomes(cfg: RLConfig, step: int, outcomes: dict[str, list]) -> None:
    """Append the evaluation's per-goal outcomes to `<output_dir>/evals.jsonl`; with a `samples_dir` (a sweep
    trial's, which reaches MLflow as artifacts) the file is mirrored there, so the paired per-goal lift of any run
    can be computed from the tracking server."""
    path = Path(cfg.output_dir) / EVALS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for split, rows in outcomes.items():
            for task, seed, success, steps in rows:
                f.write(
                    json.dumps(
                        {
                            "step": step,
                            "split": split,
                            "task": task,
                            "seed": seed,
                            "success": success,
                            "steps": steps,
                        }
                    )
                    + "\n"
                )
    if cfg.samples_dir and Path(cfg.samples_dir).resolve() != Path(cfg.output_dir).resolve():
        mirror = Path(cfg.samples_dir) / EVALS_FILE
        mirror.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(mirror, path.read_text())


def _write_samples(cfg: RLConfig, groups, step: int) -> None:
    path = Path(cfg.samples_dir or cfg.output_dir) / "trajectories.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for row in groups:
            for t in row[:1]:
                f.write(json.dumps({"update": step, **json.loads(t.to_json())}) + "\n")
