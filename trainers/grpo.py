"""The numerical core of multi-turn GRPO: advantages, zero-advantage filtering, the loss's batch, the policy loss
and the update it drives, the curriculum. Functions, data in, numbers out (`update` steps the model it is given);
the loop in `trainers.rl` joins them (checkpoint selection is the study's rule in `analysis.selection`, the
warm-up `trainers.common.warmup_lr`).

Shapes: G = group_size (rollouts per goal), N = number of goals in a batch, T = tokens of one sequence.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trainers.common import (
    Encoded,
    check_choice,
    clip_and_step,
    collate,
    encode_example,
    set_learning_rate,
    token_logprobs,
    warmup_lr,
)

if TYPE_CHECKING:  # config imports LossAggregation from here
    from envs.protocol import Trajectory
    from trainers.config import RLConfig
    from trainers.flops import FlopsCounter

__all__ = [
    "LossAggregation",
    "advantages",
    "kept_episodes",
    "policy_loss",
    "build_batch",
    "training_batch",
    "update",
    "CurriculumState",
    "curriculum_weights",
]

LossAggregation = Literal["token", "sequence", "episode"]
"""How `policy_loss` averages: over all tokens of the batch (the study), per completion then over completions, or
per completion then over each episode's completions then over episodes (every episode weighs the same)."""

ZERO_ADV_TOL = 1e-8
"""|advantage| at or below this counts as zero for zero-advantage filtering."""


def advantages(
    returns: np.ndarray,
    *,
    grouped: bool,
    std_normalize: bool,
    eps: float = 1e-4,
    negative_weight: float = 1.0,
) -> np.ndarray:
    """Per-episode advantages from episode returns.

    Args:
        returns: (N, G) episode returns, one row per goal (a group of G rollouts); NaN marks an episode lost to
            an env error: it is left out of its group's statistics and gets a NaN advantage (never trained on).
        grouped: subtract each group's mean return (group-relative advantage); off: the raw return.
        std_normalize: divide by each group's return std (population std, ddof=0) plus `eps`.
        eps: added to the std so that constant groups do not divide by zero.
        negative_weight: negative advantages are multiplied by this (1: the study's update; 0: only episodes above
            their group's mean are reinforced, and zero-advantage filtering drops the others).

    Returns:
        (N, G) advantages (float64).
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"returns must be (num_goals, group_size), got shape {r.shape}")
    valid = ~np.isnan(r)
    n = valid.sum(axis=1, keepdims=True)
    mean = np.where(valid, r, 0.0).sum(axis=1, keepdims=True) / np.maximum(n, 1)
    adv = r - mean if grouped else r.copy()
    if std_normalize:
        var = np.where(valid, (r - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / np.maximum(n, 1)
        adv = adv / (np.sqrt(var) + eps)
    if negative_weight != 1.0:
        adv = np.where(adv < 0, adv * negative_weight, adv)  # NaN (env error) stays NaN
    return adv


def kept_episodes(adv: np.ndarray, *, zero_adv_filter: bool) -> np.ndarray:
    """Which episodes enter the loss: every episode with an advantage (zero ones included) when filtering is off,
    only those with a non-zero advantage when it is on; never an env-error episode (NaN advantage).

    Filtering changes the token-level mean's denominator: the surviving tokens carry the whole batch's weight.

    Returns:
        (N, G) bool, True where the episode is trained on.
    """
    adv = np.asarray(adv, dtype=np.float64)
    if not zero_adv_filter:
        return ~np.isnan(adv)
    return np.abs(adv) > ZERO_ADV_TOL  # NaN compares False: env-error episodes are dropped too


def policy_loss(
    logprobs,
    old_logprobs,
    adv,
    mask,
    *,
    importance_ratio: bool,
    clip_eps: float,
    num_tokens: float,
    aggregation: LossAggregation = "token",
    num_sequences: float | None = None,
    seq_weights=None,
):
    """Policy-gradient loss (to minimise) over the given tokens.

    aggregation `token` (the study's): summed over the tokens, divided by `num_tokens`: every token weighs the
    same, so a long completion pulls harder than a short one. `sequence` (the original GRPO's): each sequence's
    token mean, summed and divided by `num_sequences`: every completion weighs the same whatever its length.
    `episode`: each sequence's token mean times its `seq_weights` entry (1 / the steps of its episode), summed and
    divided by `num_sequences` (then the number of episodes): every episode weighs the same whatever its number
    of steps. Under `token` and `sequence` a failed episode that ran to the step limit pushes its advantage
    through many more completions than a one-step success, so the batch's step-weighted advantages sum below 0
    and the update mostly pushes sampled actions down (measured on MiniWoB++: benchmarks/RESULTS.md).

    ratio on (PPO clip): -min(eta * A, clip(eta, 1 - eps, 1 + eps) * A), eta = exp(logprobs - old_logprobs);
    ratio off (REINFORCE with the group baseline): -A * logprobs. No KL term. At eta = 1 both give the same
    gradient; they part once the policy moves away from the one that sampled (ppo_epochs > 1, stale rollouts).

    Args:
        logprobs: (B, T) torch tensor, log-probabilities of the sampled tokens under the current policy.
        old_logprobs: (B, T) log-probabilities under the sampling policy (detached; unused when ratio is off).
        adv: (B,) or (B, T) advantages (one per sequence is broadcast over its tokens).
        mask: (B, T) 1 for completion tokens that enter the loss, 0 for prompt, padding and filtered tokens.
        importance_ratio: use the clipped importance ratio.
        clip_eps: PPO epsilon.
        num_tokens: the denominator: tokens in the whole batch that enter the loss (across gradient accumulation
            micro-batches), so that micro-batch losses sum to the batch's token mean.
        aggregation: `token`, `sequence` or `episode` (above).
        num_sequences: the `sequence` denominator: sequences in the whole batch with at least one loss token
            (`episode`: episodes in the whole batch).
        seq_weights: (B,) `episode` only: each sequence's weight, 1 / the number of steps of its episode.

    Returns:
        (loss, stats): a scalar tensor and a dict of floats (`clip_frac`: share of tokens whose ratio was clipped
        into the objective, `ratio_mean`).
    """
    import torch

    check_choice("aggregation", aggregation, LossAggregation)
    mask = mask.to(logprobs.dtype)
    a = adv if adv.dim() == 2 else adv[:, None]
    a = a.to(logprobs.dtype)
    if importance_ratio:
        ratio = torch.exp(logprobs - old_logprobs.detach())
        unclipped = ratio * a
        clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * a
        per_token = -torch.minimum(unclipped, clipped)
        with torch.no_grad():
            n = mask.sum().clamp(min=1.0)
            clip_frac = float(((clipped < unclipped).to(mask.dtype) * mask).sum() / n)
            ratio_mean = float((ratio * mask).sum() / n)
    else:
        per_token = -a * logprobs
        clip_frac, ratio_mean = 0.0, 1.0
    if aggregation == "token":
        loss = (per_token * mask).sum() / max(float(num_tokens), 1.0)
    else:
        if num_sequences is None:
            raise ValueError(
                f"aggregation={aggregation!r} needs num_sequences (sequences or episodes in the batch)"
            )
        per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        if aggregation == "episode":
            if seq_weights is None:
                raise ValueError(
                    "aggregation='episode' needs seq_weights (1 / the steps of each one's episode)"
                )
            per_seq = per_seq * seq_weights.to(per_seq.dtype)
        loss = per_seq.sum() / max(float(num_sequences), 1.0)
    return loss, {"clip_frac": clip_frac, "ratio_mean": ratio_mean}


def build_batch(
    groups: Sequence[Sequence[Trajectory]],
    adv: np.ndarray,
    keep: np.ndarray,
    tokenizer,
    *,
    max_seq_len: int,
    credit_failed_steps: bool = True,
) -> tuple[list[Encoded], list[float], list[int]]:
    """Tokenised agent steps of the kept episodes, each with its episode's advantage.

    Completions are encoded from the sampler's token ids when the backend gave them (exactly what was
    sampled), else from the text plus eos. With `credit_failed_steps` off, a step whose action failed (it did
    not parse, or the environment refused it: `action_error`) gets min(advantage, 0): a successful episode that
    passed through junk does not reinforce the junk, a failed one still pushes it down; such a step with a zero
    advantage is left out.

    Returns:
        (examples, advantages, episodes): one entry per agent step with at least one completion token;
        `episodes` numbers each step's episode (i * G + j for goal i, rollout j).
    """
    examples, advs, episodes = [], [], []
    for i, row in enumerate(groups):
        for j, traj in enumerate(row):
            if not keep[i, j]:
                continue
            a = float(adv[i, j])
            for step in traj.steps:
                if not credit_failed_steps and (step.action is None or step.action_error) and a > 0:
                    continue  # min(a, 0) = 0: nothing to learn from this step
                ids = step.completion.token_ids
                completion = ids if ids is not None else step.completion.text
                enc = encode_example(
                    tokenizer, step.prompt.messages, completion, max_seq_len=max_seq_len, add_eos=ids is None
                )
                if enc.num_completion_tokens:
                    examples.append(enc)
                    advs.append(a)
                    episodes.append(i * len(row) + j)
    return examples, advs, episodes


def training_batch(
    groups: Sequence[Sequence[Trajectory]], returns: np.ndarray, tokenizer, cfg: RLConfig
) -> tuple[np.ndarray, list[Encoded], list[float], list[int]]:
    """One update's batch as `cfg` asks for it: `advantages` (grouped, std-normalised, negatives weighted),
    `kept_episodes` (zero-advantage filtering), `build_batch` (failed steps credited or not).

    Returns:
        (keep, examples, advantages, episodes): the (N, G) kept mask and `build_batch`'s three lists.
    """
    adv = advantages(
        returns,
        grouped=cfg.grouped_advantage,
        std_normalize=cfg.std_normalize,
        eps=cfg.adv_eps,
        negative_weight=cfg.negative_advantage_weight,
    )
    keep = kept_episodes(adv, zero_adv_filter=cfg.zero_adv_filter)
    examples, advs, episodes = build_batch(
        groups, adv, keep, tokenizer, max_seq_len=cfg.max_seq_len, credit_failed_steps=cfg.credit_failed_steps
    )
    return keep, examples, advs, episodes


def update(
    model,
    optimizer,
    examples: Sequence[Encoded],
    advs: Sequence[float],
    cfg: RLConfig,
    *,
    pad_id: int,
    counter: FlopsCounter,
    step: int = 0,
    episodes: Sequence[int] | None = None,
) -> dict[str, float]:
    """One optimiser update per PPO epoch over the whole batch (gradient accumulation over micro-batches);
    `step` (updates done before this one) sets the warm-up learning rate; `episodes` (`build_batch`'s) groups
    the steps into episodes for `loss_aggregation: episode`."""
    import torch

    lr = warmup_lr(cfg.learning_rate, step, cfg.warmup_updates)
    if not examples:
        return {
            "loss": 0.0,
            "clip_frac": 0.0,
            "ratio_mean": 1.0,
            "grad_norm": 0.0,
            "num_tokens": 0.0,
            "lr": lr,
        }
    set_learning_rate(optimizer, lr)
    device = next(model.parameters()).device
    num_tokens = sum(e.num_completion_tokens for e in examples)
    mb = cfg.micro_batch_size
    if cfg.loss_aggregation == "episode":
        if episodes is None or len(episodes) != len(examples):
            raise ValueError(
                "loss_aggregation='episode' needs each example's episode (build_batch's third value)"
            )
        steps_of = Counter(episodes)
        weights = [1.0 / steps_of[e] for e in episodes]
        num_sequences = len(steps_of)
    else:
        weights, num_sequences = [1.0] * len(examples), len(examples)
    chunks = [
        (
            examples[k : k + mb],
            torch.tensor(advs[k : k + mb], device=device),
            torch.tensor(weights[k : k + mb], device=device),
        )
        for k in range(0, len(examples), mb)
    ]
    old: list[Any] = [None] * len(chunks)
    if cfg.importance_ratio:  # pi_old: the policy that sampled, before this update's steps
        with torch.no_grad():
            for c, (micro, _, _) in enumerate(chunks):
                old[c] = token_logprobs(
                    model, *collate(micro, pad_id, device=device)[:2], temperature=cfg.temperature
                )
                counter.add_sequences([len(e.input_ids) for e in micro], trained=False)
    stats = {"loss": 0.0, "clip_frac": 0.0, "ratio_mean": 0.0, "grad_norm": 0.0}
    for _ in range(cfg.ppo_epochs):
        for c, (micro, a, w) in enumerate(chunks):
            ids, attn, comp = collate(micro, pad_id, device=device)
            lp = token_logprobs(model, ids, attn, temperature=cfg.temperature)
            loss, st = policy_loss(
                lp,
                old[c] if old[c] is not None else lp.detach(),
                a,
                comp,
                importance_ratio=cfg.importance_ratio,
                clip_eps=cfg.clip_eps,
                num_tokens=num_tokens,
                aggregation=cfg.loss_aggregation,
                num_sequences=num_sequences,
                seq_weights=w,
            )
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


@dataclass
class CurriculumState:
    """Running per-task return statistics for the curriculum (exponential moving averages)."""

    alpha: float = 0.3
    """EMA weight of each new batch of returns."""
    mean: dict[str, float] = field(default_factory=dict)
    """Per task: EMA of the episode return."""
    sq: dict[str, float] = field(default_factory=dict)
    """Per task: EMA of the squared return."""

    def update(self, task_returns: Mapping[str, Sequence[float]]) -> None:
        """Fold one batch of returns (per task) into the averages."""
        for task, rs in task_returns.items():
            if not len(rs):
                continue
            m, s = float(np.mean(rs)), float(np.mean(np.square(rs)))
            if task in self.mean:
                self.mean[task] = (1 - self.alpha) * self.mean[task] + self.alpha * m
                self.sq[task] = (1 - self.alpha) * self.sq[task] + self.alpha * s
            else:
                self.mean[task], self.sq[task] = m, s

    def std(self, task: str) -> float:
        return math.sqrt(max(0.0, self.sq[task] - self.mean[task] ** 2))

    def state_dict(self) -> dict:
        return {"alpha": self.alpha, "mean": dict(self.mean), "sq": dict(self.sq)}

    @classmethod
    def from_state_dict(cls, d: Mapping) -> CurriculumState:
        return cls(alpha=float(d["alpha"]), mean=dict(d["mean"]), sq=dict(d["sq"]))


def curriculum_weights(
    tasks: Sequence[str], state: CurriculumState, *, target_return: float, temperature: float
) -> np.ndarray:
    """Variance-aware Boltzmann sampling probabilities over tasks.

    p_k = softmax_k( (sigma_k - |mu_k - R*|) / tau )

    with mu_k and sigma_k the task's running mean and std of the episode return (EMA over batches), R* the
    target return and tau the curriculum temperature. Tasks whose return sits near the target and that still
    vary (the groups GRPO learns from) are drawn most; solved (mu = +1, sigma = 0) and hopeless (mu = -1,
    sigma = 0) tasks least. An unseen task is scored optimistically (mu = R*, sigma = 1), so every task is
    tried early.

    Args:
        tasks: (K,) task names.
        state: running statistics.
        target_return: R* in [-1, 1].
        temperature: tau > 0; small tau concentrates on the best-scored tasks.

    Returns:
        (K,) probabilities summing to 1.
    """
    if temperature <= 0:
        raise ValueError(f"curriculum temperature={temperature} must be > 0")
    scores = np.array(
        [(state.std(t) - abs(state.mean[t] - target_return)) if t in state.mean else 1.0 for t in tasks],
        dtype=np.float64,
    )
    z = scores / temperature
    z -= z.max()
    w = np.exp(z)
    return w / w.sum()
