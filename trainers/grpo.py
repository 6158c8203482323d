"""The numerical core of multi-turn GRPO: advantages, zero-advantage filtering, the policy loss, the curriculum.
Pure functions, data in, numbers out; the loop in `trainers.rl` joins them (checkpoint selection is the study's
rule in `analysis.selection`, the warm-up `trainers.common.warmup_lr`).

Shapes: G = group_size (rollouts per goal), N = number of goals in a batch, T = tokens of one sequence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from trainers.common import check_choice

__all__ = [
    "LossAggregation",
    "advantages",
    "kept_episodes",
    "policy_loss",
    "CurriculumState",
    "curriculum_weights",
]

LossAggregation = Literal["token", "sequence"]
"""How `policy_loss` averages: over all tokens of the batch (the study) or per completion, then over completions."""

ZERO_ADV_TOL = 1e-8
"""|advantage| at or below this counts as zero for zero-advantage filtering."""


def advantages(returns: np.ndarray, *, grouped: bool, std_normalize: bool, eps: float = 1e-4) -> np.ndarray:
    """Per-episode advantages from episode returns.

    Args:
        returns: (N, G) episode returns, one row per goal (a group of G rollouts); NaN marks an episode lost to
            an env error: it is left out of its group's statistics and gets a NaN advantage (never trained on).
        grouped: subtract each group's mean return (group-relative advantage); off: the raw return.
        std_normalize: divide by each group's return std (population std, ddof=0) plus `eps`.
        eps: added to the std so that constant groups do not divide by zero.

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
):
    """Policy-gradient loss (to minimise) over the given tokens.

    aggregation `token` (the study's): summed over the tokens, divided by `num_tokens`: every token weighs the
    same, so a long completion pulls harder than a short one. `sequence` (the original GRPO's): each sequence's
    token mean, summed and divided by `num_sequences`: every completion weighs the same whatever its length.

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
        aggregation: `token` or `sequence` (above).
        num_sequences: the `sequence` denominator: sequences in the whole batch with at least one loss token.

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
            raise ValueError("aggregation='sequence' needs num_sequences (sequences in the whole batch)")
        per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        loss = per_seq.sum() / max(float(num_sequences), 1.0)
    return loss, {"clip_frac": clip_frac, "ratio_mean": ratio_mean}


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
