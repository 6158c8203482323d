"""The study's episode return, computed by the trainers from what envs report (success and the number of steps).

envs return success, steps and per-step records; the RL discount is a training hyperparameter (`RLConfig.gamma`)
and never crosses into envs.
"""

from __future__ import annotations

__all__ = ["episode_return"]


def episode_return(success: bool, num_steps: int, gamma: float) -> float:
    """The study's episode return: +1 on success, -1 on failure, discounted by gamma per step.

    Args:
        success: whether the episode succeeded.
        num_steps: agent steps taken (each parsed or unparsed completion counts as one).
        gamma: discount in (0, 1].

    Returns:
        (+1 if success else -1) * gamma**num_steps.

    With gamma < 1 a failure's return rises with its length (-gamma at one step, -gamma**max_steps at the step
    limit), so within a group a slow failure gets a higher advantage than a fast one: GRPO then teaches the policy
    to stall rather than commit (measured on MiniWoB++, benchmarks/RESULTS.md "Study recipe, fourth session");
    gamma = 1 (a value of the study's space) removes that incentive.
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma={gamma} must be in (0, 1]")
    return (1.0 if success else -1.0) * gamma**num_steps
