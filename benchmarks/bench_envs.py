"""Worker pool vs BrowserGym's default usage, side by side: same MiniWoB++ tasks and seeds, scripted policy.

Baseline ("default"): what BrowserGym's docs show, per episode `gym.make("browsergym/miniwob.<task>")`,
`reset(seed=...)`, a `step(action)` loop, `close()`; N such loops in N processes. Pool: `envs.runner.open_runner(
"miniwob", workers=N)` with the same policy, tasks and seeds. Both use the Debian chromium. Also reported: the
env-error rate of the pool at 4 workers and the memory (PSS) per worker, browser included.

    .venv/bin/python benchmarks/bench_envs.py --seeds 4 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import sys
import time

TASKS = ("click-test", "click-test-2", "enter-text", "click-link", "login-user")


def _elements(page) -> list[dict]:
    from envs.browser import _ELEMENTS_JS

    return page.evaluate(_ELEMENTS_JS)


def _default_episodes(goals: list[tuple[str, int]], max_steps: int) -> list[tuple[bool, str]]:
    """BrowserGym default usage: a fresh env (browser + chat window) per episode."""
    import browsergym.miniwob  # noqa: F401 - registers the tasks
    import gymnasium as gym

    from envs.browser import miniwob_url, setup_chromium
    from envs.scripted import ScriptedPolicy

    setup_chromium()
    miniwob_url()
    policy, out = ScriptedPolicy(), []
    for task, seed in goals:
        env = gym.make(f"browsergym/{task}")
        try:
            obs, _ = env.reset(seed=seed)
            page = env.unwrapped.page
            history, success = [], False
            for _ in range(max_steps):
                o = {"task": task, "goal": obs["goal"], "elements": _elements(page), "history": history}
                _, action = policy.act(o)
                obs, reward, terminated, truncated, _ = env.step(action)
                page = env.unwrapped.page
                history.append(action)
                if terminated or truncated:
                    success = reward > 0
                    break
            out.append((success, ""))
        except Exception as e:  # noqa: BLE001 - counted as an env error, as the pool does
            out.append((False, f"{type(e).__name__}: {e}"))
        finally:
            env.close()
    return out


def run_default(goals: list[tuple[str, int]], workers: int, max_steps: int) -> dict:
    chunks = [goals[k::workers] for k in range(workers)]
    t0 = time.monotonic()
    with mp.get_context("spawn").Pool(workers) as pool:
        results = [
            r for chunk in pool.starmap(_default_episodes, [(c, max_steps) for c in chunks]) for r in chunk
        ]
    wall_s = time.monotonic() - t0
    return {
        "episodes": len(results),
        "wall_s": round(wall_s, 1),
        "episodes_per_min": round(60 * len(results) / wall_s, 1),
        "success": round(sum(s for s, _ in results) / len(results), 3),
        "env_errors": sum(bool(e) for _, e in results),
    }


def _pss_mib(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_full_info().pss
    return total / 2**20


def run_pool(
    goals: list[tuple[str, int]],
    workers: int,
    max_steps: int,
    *,
    observation: str = "compact",
    include_start: bool = True,
) -> dict:
    from envs.runner import open_runner
    from envs.scripted import ScriptedPolicy

    t0 = time.monotonic()
    with open_runner("miniwob", workers=workers, max_steps=max_steps, observation=observation) as runner:
        t1 = time.monotonic()
        trajs = runner.run_episodes(
            ScriptedPolicy(), goals, temperature=0.0, max_new_tokens=64, error_log=True
        )
        t2 = time.monotonic()
        pss = [_pss_mib(pid) for pid in runner.worker_pids if pid is not None]
        retried = runner.num_env_errors
    wall_s = (t2 - t0) if include_start else (t2 - t1)
    return {
        "episodes": len(trajs),
        "wall_s": round(wall_s, 1),
        "start_s": round(t1 - t0, 1),
        "episodes_per_min": round(60 * len(trajs) / wall_s, 1),
        "success": round(sum(t.success for t in trajs) / len(trajs), 3),
        "env_error_rate": round(sum(bool(t.env_error) for t in trajs) / len(trajs), 4),
        "env_errors_retried": retried,
        "pss_mib_per_worker": round(sum(pss) / max(1, len(pss)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 per task")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument(
        "--error-workers", type=int, default=4, help="pool size of the env-error-rate run (0: skip)"
    )
    parser.add_argument("--error-seeds", type=int, default=10)
    parser.add_argument(
        "--observation",
        choices=["compact", "html", "axtree"],
        default="compact",
        help="the pool's page view (html = the study's pruned HTML via BrowserGym's DOM snapshot)",
    )
    args = parser.parse_args()
    goals = [(f"miniwob.{t}", s) for t in TASKS for s in range(args.seeds)]
    default = run_default(goals, args.workers, args.max_steps)
    print("default:", json.dumps(default), file=sys.stderr, flush=True)
    pool = run_pool(goals, args.workers, args.max_steps, observation=args.observation)
    print("pool:", json.dumps(pool), file=sys.stderr, flush=True)
    report = {
        "tasks": TASKS,
        "seeds": args.seeds,
        "workers": args.workers,
        "observation": args.observation,
        "default": default,
        "pool": pool,
        "speedup_x": round(pool["episodes_per_min"] / default["episodes_per_min"], 2),
    }
    if args.error_workers:
        error_goals = [(f"miniwob.{t}", s) for t in TASKS for s in range(args.error_seeds)]
        report[f"pool_{args.error_workers}_workers"] = run_pool(
            error_goals, args.error_workers, args.max_steps, observation=args.observation
        )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
