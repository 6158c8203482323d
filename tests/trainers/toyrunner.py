"""A tiny multi-turn text task for the trainers' tests: real episodes through the episode protocol.

Goal (task `letter-K`, seed s): answer with the letter `"abcd"[(K + s) % 4]`. A step succeeds when the
completion's first non-space character is that letter; otherwise the episode goes on (with the error shown
in the next prompt when error_log is on) until max_steps. Deterministic given the policy's samples.
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.protocol import Prompt, Step, Trajectory

LETTERS = "abcd"


def target(task: str, seed: int) -> str:
    return LETTERS[(int(task.rsplit("-", 1)[1]) + seed) % len(LETTERS)]


def goals(tasks: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    return [(t, s) for t in tasks for s in seeds]


class LetterRunner:
    def __init__(self, max_steps: int = 2) -> None:
        self.max_steps = max_steps
        self.calls = 0

    def close(self) -> None:
        pass

    def _prompt(self, task: str, seed: int, error: str, error_log: bool) -> Prompt:
        user = f"Goal: answer {target(task, seed)}."
        if error_log and error:
            user += f" Last action error: {error}"
        return Prompt(messages=({"role": "user", "content": user},), task=task, seed=seed)

    def run_episodes(self, policy, goals, *, temperature, max_new_tokens, error_log):
        self.calls += 1
        trajs = [Trajectory(task=t, seed=s, goal=f"answer {target(t, s)}") for t, s in goals]
        errors = ["" for _ in goals]
        live = list(range(len(goals)))
        for _ in range(self.max_steps):
            if not live:
                break
            prompts = [self._prompt(*goals[i], errors[i], error_log) for i in live]
            comps = policy.generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens)
            still = []
            for i, p, c in zip(live, prompts, comps, strict=True):
                ok = c.text.strip()[:1] == target(*goals[i])
                errors[i] = "" if ok else f"wrong answer {c.text.strip()[:5]!r}"
                trajs[i].steps.append(
                    Step(
                        prompt=p,
                        completion=c,
                        action=c.text.strip()[:1] or None,
                        action_error=errors[i],
                        reward=1.0 if ok else 0.0,
                    )
                )
                if ok:
                    trajs[i].success = True
                else:
                    still.append(i)
            live = still
        return trajs
