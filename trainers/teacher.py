"""Teacher traces: episodes of a teacher (scripted, local HF, or an OpenAI-compatible endpoint) -> SFT examples.

Only successful episodes become examples, one per step (prompt messages -> the teacher's reasoning + action);
every teacher token, failed episodes included, counts in the teacher FLOPs at the teacher's size. The
dataset is saved with its provenance: `examples.jsonl`, `trajectories.jsonl`, `provenance.json`.

Collection is resumable task by task: each task's episodes are kept in `<output_dir>/parts/<task>.jsonl` (written
atomically, stamped with the config and the goals they played) as soon as they are played, so a killed run
played again with the same config plays only the tasks it had not finished, and saves the same dataset.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs.protocol import Trajectory
from trainers.common import atomic_write
from trainers.config import TeacherConfig
from trainers.envio import Runner, goal_key, open_env_runner, play_episodes, scripted_policy, split_goals
from trainers.flops import FlopsCounter

__all__ = ["SFTExample", "TraceSet", "collect_teacher_traces", "examples_from_trajectories"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTExample:
    """One supervised step: the chat messages the agent saw and what the teacher answered."""

    messages: tuple[dict[str, str], ...]
    completion: str
    task: str
    seed: int
    step: int


@dataclass
class TraceSet:
    """An SFT dataset with its provenance and the FLOPs it cost to generate."""

    examples: list[SFTExample]
    provenance: dict[str, Any] = field(default_factory=dict)
    teacher_flops: float = 0.0
    path: str | None = None

    def save(self, path: str | Path, trajectories: Sequence[Trajectory] = ()) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with (path / "examples.jsonl").open("w") as f:
            for ex in self.examples:
                f.write(json.dumps(dataclasses.asdict(ex)) + "\n")
        if trajectories:
            with (path / "trajectories.jsonl").open("w") as f:
                for t in trajectories:
                    f.write(t.to_json() + "\n")
        prov = {**self.provenance, "teacher_flops": self.teacher_flops, "num_examples": len(self.examples)}
        (path / "provenance.json").write_text(json.dumps(prov, indent=1, default=str))
        self.path = str(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TraceSet:
        path = Path(path)
        if not (path / "examples.jsonl").is_file():
            raise ValueError(
                f"{path} holds no examples.jsonl: pass a directory written by collect_teacher_traces"
            )
        examples = []
        for line in (path / "examples.jsonl").read_text().splitlines():
            d = json.loads(line)
            examples.append(SFTExample(**{**d, "messages": tuple(d["messages"])}))
        prov = (
            json.loads((path / "provenance.json").read_text()) if (path / "provenance.json").is_file() else {}
        )
        return cls(examples, prov, float(prov.get("teacher_flops", 0.0)), str(path))


def examples_from_trajectories(trajectories: Sequence[Trajectory]) -> list[SFTExample]:
    """One example per step of each successful episode (episodes with an env error are skipped)."""
    out = []
    for t in trajectories:
        if not t.success or t.env_error:
            continue
        for i, s in enumerate(t.steps):
            out.append(SFTExample(tuple(s.prompt.messages), s.completion.text, t.task, t.seed, i))
    return out


def _teacher_policy(cfg: TeacherConfig, counter: FlopsCounter | None):
    if cfg.teacher == "scripted":
        return scripted_policy(cfg.env)
    if cfg.teacher == "openai":
        from trainers.backends import OpenAIPolicy

        return OpenAIPolicy(
            cfg.base_url,
            cfg.model,
            api_key_env=cfg.api_key_env,
            allow_key_over_http=cfg.allow_key_over_http,
            concurrency=cfg.concurrency,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            seed=cfg.seed,
            counter=counter,
        )
    from trainers.backends import HFPolicy
    from trainers.models import load_student, resolve_device

    model, tok = load_student(cfg.model, device=resolve_device("auto"))
    return HFPolicy(model, tok, counter=counter)


class _Counted:
    """Counts a policy's reported prompt + completion tokens at the teacher's size."""

    def __init__(self, policy: Any, counter: FlopsCounter) -> None:
        self.policy, self.counter = policy, counter

    def generate(self, prompts, *, temperature: float, max_new_tokens: int):
        outs = self.policy.generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens)
        for o in outs:
            n = o.num_prompt_tokens + o.num_completion_tokens
            self.counter.add(n, n, trained=False)
        return outs


def collect_teacher_traces(
    cfg: TeacherConfig,
    report: Callable[..., None] | None = None,
    *,
    runner: Runner | None = None,
    goals: Sequence[Any] | None = None,
    policy: Any = None,
) -> TraceSet:
    """Play the teacher on the split's goals and keep the successful episodes' steps as SFT examples.

    Args:
        cfg: the teacher configuration.
        report: optional `report(metrics)` called once at the end with `teacher_success`, `teacher_flops`,
            `num_examples`, `num_episodes`.
        runner: an episode runner (default: `envs.runner.open_runner(cfg.env, ...)`, closed at the end).
        goals: goals to play (default: the split's goals, capped at `cfg.max_goals`).
        policy: a teacher policy to use instead of the one `cfg.teacher` names (its tokens are counted only if
            it fills `Completion.num_*_tokens` and `cfg.flops_model` is set).

    Returns:
        The TraceSet, saved under `cfg.output_dir`. The scripted teacher has no model and costs 0 FLOPs.
    """
    import numpy as np

    flops_model = cfg.flops_model or (cfg.model if cfg.teacher != "scripted" else None)
    counter = FlopsCounter(flops_model) if flops_model else None
    goals = list(goals) if goals is not None else split_goals(cfg.env, cfg.split, cfg.tasks)
    if cfg.max_goals is not None:
        goals = _round_robin(goals)[: cfg.max_goals]
    played = [g for g in goals for _ in range(cfg.episodes_per_goal)]
    own_runner = runner is None
    runner = runner or open_env_runner(
        cfg.env, workers=cfg.workers, max_steps=cfg.max_steps, options=cfg.env_options
    )
    t0 = time.perf_counter()
    parts = Path(cfg.output_dir) / "parts"
    stamp = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)
    if policy is not None and counter is not None:
        policy = _Counted(policy, counter)
    played_by_task: dict[str, list[Trajectory]] = {}
    try:
        for task, task_goals in _by_task(played).items():
            part = parts / f"{task}.jsonl"
            done = _load_part(part, stamp, task_goals)
            if done is not None:
                played_by_task[task], tokens, flops = done
                if counter is not None:
                    counter.tokens += tokens
                    counter.flops += flops
                logger.info("teacher: %s already played (%s), %d episodes", task, part, len(task_goals))
                continue
            if policy is None:  # made only when a task is left to play (a model may be loaded)
                policy = _teacher_policy(cfg, counter)
            before = counter.state_dict() if counter else {"tokens": 0, "flops": 0.0}
            played_by_task[task] = play_episodes(runner, policy, task_goals, cfg)
            after = counter.state_dict() if counter else {"tokens": 0, "flops": 0.0}
            header = {
                "config": stamp,
                "goals": [list(goal_key(g)) for g in task_goals],
                "teacher_tokens": after["tokens"] - before["tokens"],
                "teacher_flops": after["flops"] - before["flops"],
            }
            parts.mkdir(parents=True, exist_ok=True)
            body = "".join(t.to_json() + "\n" for t in played_by_task[task])
            atomic_write(part, json.dumps(header) + "\n" + body)
    finally:
        if own_runner:
            runner.close()
    queues = {task: iter(trajs) for task, trajs in played_by_task.items()}
    trajs = [next(queues[goal_key(g)[0]]) for g in played]  # the order of `played`, as one call would give
    examples = examples_from_trajectories(trajs)
    success = float(np.mean([t.success for t in trajs])) if trajs else 0.0
    tasks = sorted({goal_key(g)[0] for g in goals})
    provenance = {
        "config": dataclasses.asdict(cfg),
        "num_episodes": len(trajs),
        "num_successful": sum(t.success for t in trajs),
        "num_env_errors": sum(bool(t.env_error) for t in trajs),
        "teacher_success": success,
        "tasks": tasks,
        "teacher_tokens": counter.tokens if counter else 0,
        "flops_model": flops_model,
        "wall_s": time.perf_counter() - t0,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
    }
    traces = TraceSet(examples, provenance, counter.flops if counter else 0.0)
    traces.save(cfg.output_dir, trajs)
    shutil.rmtree(parts, ignore_errors=True)  # the dataset holds every episode now
    logger.info(
        "teacher: %d/%d episodes succeeded -> %d SFT examples in %s",
        provenance["num_successful"],
        len(trajs),
        len(examples),
        cfg.output_dir,
    )
    if report is not None:
        report(
            {
                "teacher_success": success,
                "teacher_flops": traces.teacher_flops,
                "num_examples": len(examples),
                "num_episodes": len(trajs),
            }
        )
    return traces


def _load_part(part: Path, stamp: str, goals: Sequence[Any]) -> tuple[list[Trajectory], int, float] | None:
    """A finished task's (trajectories, teacher tokens, teacher FLOPs) when `part` was written by the same config
    for the same goals; None when it is missing, torn or stale (the task is then played again)."""
    if not part.is_file():
        return None
    try:
        lines = part.read_text().splitlines()
        header = json.loads(lines[0])
        if header["config"] != stamp or header["goals"] != [list(goal_key(g)) for g in goals]:
            logger.warning(
                "teacher: %s was written by another config or goal list; playing the task again", part
            )
            return None
        trajs = [Trajectory.from_dict(json.loads(line)) for line in lines[1:]]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        logger.warning("teacher: %s is unreadable (%s); playing the task again", part, exc)
        return None
    if len(trajs) != len(goals):
        return None
    return trajs, int(header["teacher_tokens"]), float(header["teacher_flops"])


def _by_task(goals: Sequence[Any]) -> dict[str, list[Any]]:
    """Goals grouped by task, tasks in order of first appearance, each task's own order kept."""
    by_task: dict[str, list[Any]] = {}
    for g in goals:
        by_task.setdefault(goal_key(g)[0], []).append(g)
    return by_task


def _round_robin(goals: Sequence[Any]) -> list[Any]:
    """Goals reordered task by task in turn (each task's own order kept), so a cap keeps every task."""
    queues = list(_by_task(goals).values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
