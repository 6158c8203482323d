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

from envs.protocol import Trajectory
from trainers.common import (
    Encoded,
    clip_and_step,
    collate,
    encode_example,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    seed_everything,
    token_logprobs,
)
from trainers.config import RLConfig
from trainers.envio import Runner, goal_key, open_env_runner, play_episodes, split_goals
from trainers.flops import FlopsCounter
from trainers.grpo import (
    CurriculumState,
    advantages,
    curriculum_weights,
    nonzero_mask,
    policy_loss,
    rolling_mean,
    warmup_lr,
)
from trainers.models import load_student, resolve_device

__all__ = [
    "RLResult",
    "train_rl",
    "rollout",
    "group_returns",
    "build_batch",
    "update",
    "sample_goals",
    "evaluate",
]

logger = logging.getLogger(__name__)


@dataclass
class RLResult:
    """What an RL run leaves: the chosen evaluation's raw scores and the whole evaluation history."""

    best_index: int
    """Index into `history` of the evaluation chosen by the rolling mean (window 3) of held-out-goal success."""
    scores: dict[str, float]
    """The chosen evaluation's raw metrics (heldout_goal_success, heldout_task_success, step, flops, ...)."""
    checkpoint: str | None
    """The chosen evaluation's checkpoint directory (None when it was not kept)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Every evaluation's metrics, in order."""


# --------------------------------------------------------------------------- the pieces of one update


def sample_goals(goals: Sequence[Any], num: int, rng: np.random.Generator, *, curriculum: CurriculumState | None,
                 target_return: float, temperature: float) -> list[Any]:  # fmt: skip
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


def rollout(runner: Runner, policy, goals: Sequence[Any], cfg: RLConfig) -> list[list[Trajectory]]:
    """Play each goal `group_size` times; returns (N, G) trajectories, one row per goal."""
    g = cfg.group_size
    played = [goal for goal in goals for _ in range(g)]
    trajs = play_episodes(runner, policy, played, cfg)
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


def build_batch(groups: Sequence[Sequence[Trajectory]], adv: np.ndarray, keep: np.ndarray, tokenizer, *,
                max_seq_len: int) -> tuple[list[Encoded], list[float]]:  # fmt: skip
    """Tokenised agent steps of the kept episodes, each with its episode's advantage.

    Completions are encoded from the sampler's token ids when the backend gave them (exactly what was
    sampled), else from the text plus eos.

    Returns:
        (examples, advantages): one entry per agent step with at least one completion token.
    """
    examples, advs = [], []
    for i, row in enumerate(groups):
        for j, traj in enumerate(row):
            if not keep[i, j]:
                continue
            for step in traj.steps:
                ids = step.completion.token_ids
                enc = encode_example(tokenizer, step.prompt.messages, ids if ids is not None else step.completion.text,
                                     max_seq_len=max_seq_len, add_eos=ids is None)  # fmt: skip
                if enc.num_completion_tokens:
                    examples.append(enc)
                    advs.append(float(adv[i, j]))
    return examples, advs


def update(model, optimizer, examples: Sequence[Encoded], advs: Sequence[float], cfg: RLConfig, *,
           pad_id: int, counter: FlopsCounter, step: int = 0) -> dict[str, float]:  # fmt: skip
    """One optimiser update per PPO epoch over the whole batch (gradient accumulation over micro-batches);
    `step` (updates done before this one) sets the warm-up learning rate."""
    import torch

    lr = warmup_lr(cfg.learning_rate, step, cfg.warmup_updates)
    if not examples:
        return {"loss": 0.0, "clip_frac": 0.0, "ratio_mean": 1.0, "grad_norm": 0.0, "num_tokens": 0.0,
                "lr": lr}  # fmt: skip
    for group in optimizer.param_groups:
        group["lr"] = lr
    device = next(model.parameters()).device
    num_tokens = sum(e.num_completion_tokens for e in examples)
    mb = cfg.micro_batch_size
    chunks = [
        (examples[k : k + mb], torch.tensor(advs[k : k + mb], device=device))
        for k in range(0, len(examples), mb)
    ]
    old: list[Any] = [None] * len(chunks)
    if cfg.importance_ratio:  # pi_old: the policy that sampled, before this update's steps
        with torch.no_grad():
            for c, (micro, _) in enumerate(chunks):
                old[c] = token_logprobs(
                    model, *collate(micro, pad_id, device=device)[:2], temperature=cfg.temperature
                )
                counter.add_sequences([len(e.input_ids) for e in micro], trained=False)
    stats = {"loss": 0.0, "clip_frac": 0.0, "ratio_mean": 0.0, "grad_norm": 0.0}
    for _ in range(cfg.ppo_epochs):
        for c, (micro, a) in enumerate(chunks):
            ids, attn, comp = collate(micro, pad_id, device=device)
            lp = token_logprobs(model, ids, attn, temperature=cfg.temperature)
            loss, st = policy_loss(lp, old[c] if old[c] is not None else lp.detach(), a, comp,
                                   importance_ratio=cfg.importance_ratio, clip_eps=cfg.clip_eps,
                                   num_tokens=num_tokens, aggregation=cfg.loss_aggregation,
                                   num_sequences=len(examples))  # fmt: skip
            loss.backward()
            counter.add_sequences([len(e.input_ids) for e in micro], trained=True)
            share = sum(e.num_completion_tokens for e in micro) / num_tokens / cfg.ppo_epochs
            stats["loss"] += float(loss.detach()) / cfg.ppo_epochs
            stats["clip_frac"] += st["clip_frac"] * share
            stats["ratio_mean"] += st["ratio_mean"] * share
        stats["grad_norm"] += (
            clip_and_step(model, optimizer, max_grad_norm=cfg.max_grad_norm) / cfg.ppo_epochs
        )
    stats["num_tokens"] = float(num_tokens)
    stats["lr"] = lr
    return stats


def evaluate(runner: Runner, policy, goals: Sequence[Any], cfg: RLConfig, *, seed: int) -> float:
    """Success rate on `goals` (one episode each) at the run's temperature; sampling seeded by `seed` and
    isolated from the training RNG stream. NaN when there are no goals; env-error episodes are left out."""
    import torch

    if not goals:
        return float("nan")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trajs = play_episodes(runner, policy, list(goals), cfg)
    ok = [t.success for t in trajs if not t.env_error]
    return float(np.mean(ok)) if ok else float("nan")


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


def train_rl(cfg: RLConfig, report: Callable[..., None] | None = None, *, runner: Runner | None = None,
             goal_splits: dict[str, Sequence[Any]] | None = None) -> RLResult:  # fmt: skip
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
    model, tok = load_student(cfg.resume_from or cfg.init_checkpoint or cfg.student, device=device)
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
    policy = _make_policy(cfg, model, tok, counter, cfg.resume_from or cfg.init_checkpoint or cfg.student)
    own_runner = runner is None
    runner = runner or open_env_runner(
        cfg.env, workers=cfg.workers, max_steps=cfg.max_steps, options=cfg.env_options
    )
    wall0 = t_start - run.wall_s  # wall-clock origin: time spent before a resume counts
    try:
        if run.step == 0 and not run.history:
            _evaluate_and_checkpoint(cfg, run, model, tok, optimizer, policy, runner, eval_goals, counter,
                                     eval_counter, rng, curriculum, wall0, report)  # fmt: skip
        while run.step < cfg.num_updates and not (
            cfg.rl_flops_budget and counter.flops >= cfg.rl_flops_budget
        ):
            goals = sample_goals(train_goals, cfg.goals_per_update, rng, curriculum=curriculum,
                                 target_return=cfg.curriculum_target_return, temperature=cfg.curriculum_temperature)  # fmt: skip
            groups = rollout(runner, policy, goals, cfg)
            returns = group_returns(groups, cfg.gamma)
            adv = advantages(
                returns, grouped=cfg.grouped_advantage, std_normalize=cfg.std_normalize, eps=cfg.adv_eps
            )
            keep = nonzero_mask(adv, zero_adv_filter=cfg.zero_adv_filter)
            if curriculum is not None:
                curriculum.update(_task_returns(groups, returns))
            examples, advs = build_batch(groups, adv, keep, tok, max_seq_len=cfg.max_seq_len)
            stats = update(model, optimizer, examples, advs, cfg, pad_id=tok.pad_token_id, counter=counter,
                           step=run.step)  # fmt: skip
            if hasattr(policy, "push_weights"):
                policy.push_weights(model)
            run.step += 1
            run.returns_since_eval.extend(float(r) for r in returns[~np.isnan(returns)])
            run.stats_since_eval.append({**stats, "kept_frac": float(keep.mean())})
            _write_samples(cfg, groups[:2], run.step)
            last = run.step >= cfg.num_updates or (
                cfg.rl_flops_budget and counter.flops >= cfg.rl_flops_budget
            )
            if run.step % cfg.eval_every == 0 or last:
                _evaluate_and_checkpoint(cfg, run, model, tok, optimizer, policy, runner, eval_goals, counter,
                                         eval_counter, rng, curriculum, wall0, report)  # fmt: skip
    finally:
        if own_runner:
            runner.close()
    best = _best(run.history)
    return RLResult(best, dict(run.history[best]), run.checkpoints[best], list(run.history))


def _registry_splits(cfg: RLConfig) -> dict[str, list[Any]]:
    return {
        "train": split_goals(cfg.env, cfg.train_split, cfg.tasks),
        "heldout_goals": split_goals(cfg.env, cfg.eval_goal_split, cfg.tasks) if cfg.eval_goal_split else [],
        "heldout_tasks": split_goals(cfg.env, cfg.eval_task_split, cfg.eval_tasks)
        if cfg.eval_task_split
        else [],
    }


def _best(history: Sequence[dict[str, float]]) -> int:
    """select_checkpoint over held-out-goal success; the last evaluation when there is no held-out goal."""
    means = rolling_mean([h["heldout_goal_success"] for h in history], 3)
    return len(history) - 1 if np.isnan(means).all() else int(np.nanargmax(means))


def _make_policy(cfg: RLConfig, model, tok, counter: FlopsCounter, model_dir: str):
    if cfg.backend == "vllm":
        from trainers.backends import VLLMPolicy
        from trainers.models import student_dir

        policy = VLLMPolicy(str(student_dir(model_dir)), tok, counter=counter, seed=cfg.seed)
        policy.push_weights(model)
        return policy
    from trainers.backends import HFPolicy

    return HFPolicy(model, tok, max_prompt_tokens=cfg.max_seq_len - cfg.max_new_tokens, counter=counter,
                    micro_batch_size=max(cfg.micro_batch_size, 32))  # fmt: skip


def _task_returns(groups, returns: np.ndarray) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for row, r in zip(groups, returns, strict=True):
        out.setdefault(row[0].task, []).extend(float(x) for x in r if not np.isnan(x))
    return out


def _evaluate_and_checkpoint(cfg, run: _Run, model, tok, optimizer, policy, runner, eval_goals, counter,
                             eval_counter, rng, curriculum, wall0, report) -> None:  # fmt: skip
    policy.counter = eval_counter  # evaluation tokens are counted apart from the RL FLOPs
    t0 = time.perf_counter()
    try:
        goal_sr = evaluate(
            runner, policy, eval_goals["heldout_goals"], cfg, seed=cfg.seed * 100_003 + run.step
        )
        task_sr = evaluate(
            runner, policy, eval_goals["heldout_tasks"], cfg, seed=cfg.seed * 100_019 + run.step
        )
    finally:
        policy.counter = counter
    s = run.stats_since_eval
    metrics = {
        "step": float(run.step),
        "flops": cfg.sft_flops + counter.flops,
        "rl_flops": counter.flops,
        "heldout_goal_success": goal_sr,
        "heldout_task_success": task_sr,
        "train_return": float(np.mean(run.returns_since_eval)) if run.returns_since_eval else float("nan"),
        "tokens": float(counter.tokens),
        "eval_flops": eval_counter.flops,
        "eval_s": time.perf_counter() - t0,
        "wall_s": time.perf_counter() - wall0,
    }
    for key in ("loss", "clip_frac", "ratio_mean", "grad_norm", "kept_frac", "lr"):
        metrics[key] = float(np.mean([x[key] for x in s])) if s else float("nan")
    metrics.update(_gpu_metrics(policy, counter, metrics["wall_s"]))
    run.history.append(metrics)
    run.returns_since_eval, run.stats_since_eval = [], []
    run.wall_s = metrics["wall_s"]
    path = Path(cfg.output_dir) / f"ckpt_{run.step:06d}"
    run.checkpoints.append(str(path))
    state = {"run": dataclasses.asdict(run), "rl_counter": counter.state_dict(),
             "eval_counter": eval_counter.state_dict(), "np_rng": rng.bit_generator.state,
             "curriculum": curriculum.state_dict() if curriculum else None, "config": dataclasses.asdict(cfg),
             "step": run.step, "flops": metrics["flops"]}  # fmt: skip
    save_checkpoint(path, model=model, tokenizer=tok, optimizer=optimizer, state=state)
    _prune(cfg, run)
    logger.info("update %d: held-out goals %.3f, tasks %.3f, train return %.3f, %.3g FLOPs", run.step, goal_sr,
                task_sr, metrics["train_return"], metrics["flops"])  # fmt: skip
    if report is not None:
        report(metrics, checkpoint=str(path))


def _prune(cfg: RLConfig, run: _Run) -> None:
    """Keep the last `keep_checkpoints` checkpoints and the current best by rolling mean; delete the rest."""
    best = _best(run.history)
    keep = set(range(max(0, len(run.checkpoints) - cfg.keep_checkpoints), len(run.checkpoints))) | {best}
    for i, p in enumerate(run.checkpoints):
        if p is not None and i not in keep:
            shutil.rmtree(p, ignore_errors=True)
            run.checkpoints[i] = None


def _gpu_metrics(policy, counter: FlopsCounter, wall_s: float) -> dict[str, float]:
    """Generation tokens/s and model FLOPs utilisation on GPU (empty on CPU)."""
    import torch

    if not torch.cuda.is_available() or wall_s <= 0:
        return {}
    peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense bf16 FLOP/s
    name = torch.cuda.get_device_name()
    out = {"mfu": next((counter.flops / wall_s / v for k, v in peak.items() if k in name), float("nan"))}
    if getattr(policy, "gen_s", 0) > 0:
        out["gen_tokens_per_s"] = policy.num_tokens / policy.gen_s
    return out


def _write_samples(cfg: RLConfig, groups, step: int) -> None:
    path = Path(cfg.samples_dir or cfg.output_dir) / "trajectories.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for row in groups:
            for t in row[:1]:
                f.write(json.dumps({"update": step, **json.loads(t.to_json())}) + "\n")
