"""The episode protocol: the one contract between `envs` and `trainers` (docs/architecture.md).

An env worker takes (task, seed, policy) and returns a `Trajectory`. A policy is anything with
`generate(prompts, *, temperature, max_new_tokens) -> list[Completion]`. Prompts carry both the chat
messages an LLM sees and a plain-data observation that scripted policies read; everything here is
picklable plain data so it crosses process boundaries (env worker pools, Ray).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Message",
    "Prompt",
    "Completion",
    "Policy",
    "Step",
    "Trajectory",
]

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


@dataclass(frozen=True)
class Prompt:
    """What a policy sees at one step of one episode."""

    messages: tuple[Message, ...]
    """Chat messages for an LLM (system + user); the trainer applies the student's chat template."""
    observation: dict[str, Any] = field(default_factory=dict)
    """Plain-data view of the page (goal, html/axtree text, url, task name, step index) for scripted policies."""
    task: str = ""
    """Task name, e.g. `miniwob.click-test` or `toy.keys-3`."""
    seed: int = 0
    """Task seed (the goal)."""


@dataclass(frozen=True)
class Completion:
    """One generated answer to one prompt."""

    text: str
    """The raw completion text (reasoning + action)."""
    num_prompt_tokens: int = 0
    """Prompt length in tokens as the generating model counted it (0 when not a token model)."""
    num_completion_tokens: int = 0
    """Completion length in tokens (0 when not a token model)."""
    token_ids: tuple[int, ...] | None = None
    """Completion token ids, when the backend exposes them."""
    logprobs: tuple[float, ...] | None = None
    """Per-token log-probabilities of `token_ids` under the sampling policy, when available."""


@runtime_checkable
class Policy(Protocol):
    """Anything that turns a batch of prompts into a batch of completions (same order, same length)."""

    def generate(
        self, prompts: Sequence[Prompt], *, temperature: float, max_new_tokens: int
    ) -> list[Completion]: ...


@dataclass
class Step:
    """One agent step: the prompt, what the policy said, what was parsed and what happened."""

    prompt: Prompt
    completion: Completion
    action: str | None
    """The parsed, canonical action (e.g. `click("12")`); None when the completion did not parse."""
    action_error: str = ""
    """Parse error or the environment's error for this action; empty when the action went through."""
    reward: float = 0.0
    """Raw environment reward after this step."""
    gen_s: float = 0.0
    """Seconds spent generating the completion."""
    env_s: float = 0.0
    """Seconds the environment spent executing the action and observing."""


@dataclass
class Trajectory:
    """One episode of one (task, seed)."""

    task: str
    seed: int
    goal: str
    steps: list[Step] = field(default_factory=list)
    success: bool = False
    """True when the environment reported success (reward > 0 at termination); the RL return (success, steps and
    a discount) is the trainers' to compute."""
    env_error: str = ""
    """Infrastructure failure (browser crash, timeout under load); such episodes are not agent failures."""
    wall_s: float = 0.0
    attempts: int = 1
    """How many times the episode was (re)started because of env errors."""

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def to_json(self) -> str:
        """One JSONL line (observations included; secrets are never part of a trajectory)."""
        d = asdict(self)
        d["num_steps"] = self.num_steps
        return json.dumps(d, default=str)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        steps = []
        for s in d.get("steps", []):
            p, c = s["prompt"], s["completion"]
            prompt = Prompt(
                messages=tuple(p["messages"]),
                observation=p.get("observation", {}),
                task=p.get("task", ""),
                seed=p.get("seed", 0),
            )
            completion = Completion(
                text=c["text"],
                num_prompt_tokens=c.get("num_prompt_tokens", 0),
                num_completion_tokens=c.get("num_completion_tokens", 0),
                token_ids=tuple(c["token_ids"]) if c.get("token_ids") is not None else None,
                logprobs=tuple(c["logprobs"]) if c.get("logprobs") is not None else None,
            )
            rest = {k: v for k, v in s.items() if k not in ("prompt", "completion")}
            steps.append(Step(prompt=prompt, completion=completion, **rest))
        fields = {k: v for k, v in d.items() if k not in ("steps", "num_steps", "episode_return")}
        return cls(steps=steps, **fields)  # episode_return: in files written before envs stopped computing it
