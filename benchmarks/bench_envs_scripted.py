"""Scripted teacher success per MiniWoB++ task through the worker pool (the SFT demo's offline teacher).

    .venv/bin/python benchmarks/bench_envs_scripted.py --split miniwob.train --workers 2

Plays every goal of the split whose task has a scripted solver and prints success per task, the env-error count
and episodes per minute; for a failed task, the first failed episode's steps.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path


def main() -> None:
    from envs.registry import goals
    from envs.runner import open_runner
    from envs.scripted import ScriptedPolicy, scripted_tasks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="miniwob.train")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--observation", choices=["compact", "html"], default="compact")
    args = parser.parse_args()
    family = args.split.split(".")[0]
    split_tasks = {t for t, _ in goals(args.split)}
    tasks = [t for t in scripted_tasks(family) if t in split_tasks]
    goal_list = goals(args.split, tasks=tasks)
    load0, t0 = Path("/proc/loadavg").read_text().split()[:3], time.monotonic()
    with open_runner(family, workers=args.workers, observation=args.observation) as runner:
        trajs = runner.run_episodes(
            ScriptedPolicy(), goal_list, temperature=0.0, max_new_tokens=64, error_log=True
        )
        retried = runner.num_env_errors
    wall_s = time.monotonic() - t0
    print(
        f"{len(trajs)} episodes of {len(tasks)} tasks in {wall_s:.1f} s = {60 * len(trajs) / wall_s:.1f}/min; "
        f"env errors retried {retried}, left {sum(bool(t.env_error) for t in trajs)}; load average "
        f"{' '.join(load0)} -> {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
    )
    by_task = collections.defaultdict(list)
    for t in trajs:
        by_task[t.task].append(t)
    for task, ts in by_task.items():
        rate = sum(t.success for t in ts) / len(ts)
        line = f"{task}: {rate:.2f} ({len(ts)} episodes)"
        if rate < 1:
            bad = next(t for t in ts if not t.success)
            line += " | " + (
                bad.env_error or " || ".join(f"{s.action} {s.action_error[:80]}" for s in bad.steps)
            )
        print(line)
    print(f"overall: {sum(t.success for t in trajs) / len(trajs):.3f}")


if __name__ == "__main__":
    main()
