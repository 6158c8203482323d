"""MiniWoB++ speed, in one run: BrowserGym's default usage vs the worker pool, the floor, errors and memory.

Same tasks, seeds and scripted policy everywhere. Printed, with the load average of every phase:
1. BrowserGym's default usage ("default"): what its docs show, per episode `gym.make("browsergym/miniwob.<task>")`,
   `reset(seed=...)`, a `step` loop, `close()`; N such loops in N processes. Episodes per minute.
2. The pool (`envs.runner.open_runner("miniwob", workers=N)`) with the compact and with the study's HTML
   observation: episodes per minute (worker start included) and the ratio to the default.
3. The floor: each primitive timed alone on one page of one chromium (load a task page, start an episode with a
   seed in place, one click, one fill, each observation kind, the reward/done check), median of `--floor-reps`.
4. The pool's time per episode and worker against the sum of the primitives its episodes need (counted from
   their actions), for 1 worker (alone on the box, as the primitives were timed) and for `--workers` (sharing the
   CPUs); the pool's split (worker busy, messaging, runner) and the host's own time split into the floor's parts
   (one in-process host, same goals).
5. Task affinity: 4 live episodes per worker on goals task after task and interleaved (consecutive goals change
   task), and 1 per worker on the interleaved goals.
6. Env-error rates of the pool at `--error-workers` (oversubscribed on a small box) and PSS memory per worker.

    .venv/bin/python benchmarks/bench_envs.py                # about 6 minutes on a quiet 2-core box
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path

TASKS = ("click-test", "click-button", "click-link", "enter-text", "focus-text")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _default_episodes(goals: list[tuple[str, int]], max_steps: int) -> list[tuple[bool, str]]:
    """BrowserGym default usage: a fresh env (browser + chat window) per episode."""
    import browsergym.miniwob  # noqa: F401 - registers the tasks
    import gymnasium as gym

    from envs._miniwob_page import ELEMENTS_JS
    from envs.browser import miniwob_url, setup_chromium
    from envs.scripted import ScriptedPolicy

    setup_chromium()
    miniwob_url()
    policy, out = ScriptedPolicy(), []
    for task, seed in goals:
        env = gym.make(f"browsergym/{task}")
        try:
            obs, _ = env.reset(seed=seed)
            history, success = [], False
            for _ in range(max_steps):
                elements = env.unwrapped.page.evaluate(ELEMENTS_JS)  # bids as BrowserGym marked them
                _, action = policy.act(
                    {"task": task, "goal": obs["goal"], "elements": elements, "history": history}
                )
                obs, reward, terminated, truncated, _ = env.step(action)
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
    load0, t0 = _loadavg(), time.monotonic()
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
        "loadavg": [load0, _loadavg()],
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
    goals: list[tuple[str, int]], workers: int, max_steps: int, *, observation: str, episodes_per_worker: int
) -> dict:
    from envs.runner import open_runner
    from envs.scripted import ScriptedPolicy

    load0, t0 = _loadavg(), time.monotonic()
    with open_runner(
        "miniwob",
        workers=workers,
        max_steps=max_steps,
        observation=observation,
        episodes_per_worker=episodes_per_worker,
    ) as runner:
        t1 = time.monotonic()
        trajs = runner.run_episodes(
            ScriptedPolicy(), goals, temperature=0.0, max_new_tokens=64, error_log=True
        )
        t2 = time.monotonic()
        pss = [_pss_mib(pid) for pid in runner.worker_pids if pid is not None]
        retried = runner.num_env_errors
        dispatch_s, busy_s = runner.dispatch_s, runner.worker_busy_s
    actions = collections.Counter(s.action.split("(")[0] for t in trajs for s in t.steps if s.action)
    return {
        "workers": workers,
        "episodes_per_worker": episodes_per_worker,
        "observation": observation,
        "episodes": len(trajs),
        "wall_s": round(t2 - t0, 1),
        "start_s": round(t1 - t0, 1),
        "episodes_per_min": round(60 * len(trajs) / (t2 - t0), 1),
        "episodes_per_min_after_start": round(60 * len(trajs) / (t2 - t1), 1),
        "s_per_episode_per_worker": round(workers * (t2 - t1) / len(trajs), 4),
        "success": round(sum(t.success for t in trajs) / len(trajs), 3),
        "env_error_rate": round(sum(bool(t.env_error) for t in trajs) / len(trajs), 4),
        "env_errors_retried": retried,
        "pss_mib_per_worker": round(sum(pss) / max(1, len(pss)), 1),
        "actions_per_episode": {k: round(v / len(trajs), 3) for k, v in actions.items()},
        # per episode: the workers executing batches (summed over workers), the runner waiting on them beyond
        # that (messaging; with N workers also the wait for the slowest), and the runner's own python
        "split_ms_per_episode": {
            "worker busy": round(1000 * busy_s / len(trajs), 1),
            "dispatch minus busy/worker": round(1000 * (dispatch_s - busy_s / workers) / len(trajs), 1),
            "runner (prompts, policy, parsing)": round(1000 * (t2 - t1 - dispatch_s) / len(trajs), 1),
        },
        "loadavg": [load0, _loadavg()],
    }


def _median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def floor_table(reps: int) -> dict[str, float]:
    """Median ms of each primitive alone, on one page of one chromium (enter-text: it has a field and a button)."""
    from browsergym.core.action import functions
    from browsergym.core.observation import _post_extract, _pre_extract, extract_merged_axtree
    from browsergym.miniwob import ALL_MINIWOB_TASKS
    from browsergym.utils.obs import flatten_axtree_to_str

    from envs._miniwob_page import html_of_raw, observe_js, reinit_js
    from envs.browser import PersistentBrowser, miniwob_url

    cls = next(c for c in ALL_MINIWOB_TASKS if c.subdomain == "enter-text")
    base = miniwob_url()
    browser = PersistentBrowser()
    try:
        context = browser.ensure().new_context(viewport={"width": 332, "height": 214})
        page = context.new_page()
        task = cls(seed=0, base_url=base)
        out = {"load task page (goto + BrowserGym setup)": _median_ms(lambda: task.setup(page), reps)}
        out["start episode with a seed (in place)"] = _median_ms(
            lambda: page.evaluate(reinit_js, [1, 1000000, 15000]), reps
        )
        page.evaluate(observe_js, [False])
        functions.page, functions.demo_mode, functions.retry_with_force = page, "off", False
        field = page.evaluate("() => document.querySelector('#tt').getAttribute('bid')")
        button = page.evaluate("() => document.querySelector('#subbtn').getAttribute('bid')")
        out["fill"] = _median_ms(lambda: functions.fill(field, "abc"), reps)
        page.evaluate(
            "() => { window.__end = core.endEpisode; core.endEpisode = () => {}; }"
        )  # keep it running
        out["click"] = _median_ms(lambda: functions.click(button), reps)
        page.evaluate("() => { core.endEpisode = window.__end; }")
        out["observation: compact"] = _median_ms(lambda: page.evaluate(observe_js, [False]), reps)
        out["observation: html"] = _median_ms(
            lambda: html_of_raw(page.evaluate(observe_js, [True])["raw_html"]), reps
        )

        def axtree() -> None:
            _pre_extract(page, tags_to_mark="standard_html", lenient=True)
            try:
                flatten_axtree_to_str(extract_merged_axtree(page))
            finally:
                _post_extract(page)

        out["observation: axtree"] = _median_ms(axtree, reps)
        out["reward/done check"] = _median_ms(
            lambda: page.evaluate("() => [WOB_RAW_REWARD_GLOBAL, WOB_DONE_GLOBAL]"), reps
        )
        out["new context + page"] = _median_ms(
            lambda: browser.ensure().new_context(viewport={"width": 332, "height": 214}).new_page(),
            max(3, reps // 4),
        )
        return out
    finally:
        browser.shutdown()


def host_split(goals: list[tuple[str, int]], max_steps: int, *, observation: str) -> dict:
    """The host's seconds per episode by part, one in-process host playing `goals` one episode at a time."""
    from envs.actions import parse_action
    from envs.browser import MiniWobHost
    from envs.scripted import ScriptedPolicy

    host = MiniWobHost(observation=observation)
    host.start()
    policy, t0 = ScriptedPolicy(), time.perf_counter()
    try:
        for eid, (task, seed) in enumerate(goals):
            obs, history = host.reset(eid, task, seed), []
            for _ in range(max_steps):
                action = parse_action(policy.act(dict(obs, history=history))[1])
                obs, _, done, _ = host.step(eid, action)
                history.append(str(action))
                if done:
                    break
            host.close(eid)
        wall_s = time.perf_counter() - t0
    finally:
        host.shutdown()
    n = len(goals)
    split = {part: round(1000 * s / n, 2) for part, s in sorted(host.spent.items())}
    split["other (policy, parsing, python)"] = round(1000 * (wall_s - sum(host.spent.values())) / n, 2)
    return {
        "ms_per_episode": round(1000 * wall_s / n, 2),
        "split_ms": split,
        "counts_per_episode": {part: round(c / n, 2) for part, c in sorted(host.counts.items())},
    }


def floor_needed_ms(floor: dict[str, float], pool: dict) -> float:
    """What one average episode of `pool` needs at the floor: a start, its actions, an observation and a
    reward/done check after the start and after every action."""
    actions = pool["actions_per_episode"]
    steps = sum(actions.values())
    return (
        floor["start episode with a seed (in place)"]
        + sum(floor.get(name, floor["click"]) * k for name, k in actions.items())
        + (steps + 1) * (floor[f"observation: {pool['observation']}"] + floor["reward/done check"])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per task")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument(
        "--error-workers", type=int, nargs="*", default=[4, 8], help="pool sizes of the error runs"
    )
    parser.add_argument("--error-seeds", type=int, default=20, help="seeds per task in each error run")
    parser.add_argument("--floor-reps", type=int, default=20)
    parser.add_argument(
        "--episodes-per-worker",
        type=int,
        default=1,
        help="live episodes per worker (1: a worker's next episode of the same task restarts its page in place)",
    )
    args = parser.parse_args()
    goals = [(f"miniwob.{t}", s) for t in TASKS for s in range(args.seeds)]
    report: dict = {"tasks": TASKS, "seeds": args.seeds, "workers": args.workers, "loadavg_start": _loadavg()}

    def show(name: str, value) -> None:
        report[name] = value
        print(f"{name}: {json.dumps(value)}", flush=True)

    show("default", run_default(goals, args.workers, args.max_steps))
    # one worker: nothing competes with its chromium, driver and python for the CPUs (as the floor is timed)
    show(
        "pool_1_worker_compact",
        run_pool(goals, 1, args.max_steps, observation="compact", episodes_per_worker=1),
    )
    for kind in ("compact", "html"):
        pool = run_pool(
            goals,
            args.workers,
            args.max_steps,
            observation=kind,
            episodes_per_worker=args.episodes_per_worker,
        )
        show(f"pool_{kind}", pool)
        show(f"speedup_{kind}_x", round(pool["episodes_per_min"] / report["default"]["episodes_per_min"], 2))
    load0 = _loadavg()
    floor = floor_table(args.floor_reps)
    show("floor_ms", dict(floor, loadavg=[load0, _loadavg()]))
    for kind in ("compact", "html"):
        load0 = _loadavg()
        show(
            f"host_split_{kind}",
            dict(host_split(goals, args.max_steps, observation=kind), loadavg=[load0, _loadavg()]),
        )
    for name, kind in (
        ("pool_1_worker_compact", "compact"),
        ("pool_compact", "compact"),
        ("pool_html", "html"),
    ):
        pool, counts = report[name], report[f"host_split_{kind}"]["counts_per_episode"]
        need = floor_needed_ms(floor, pool)
        # the page loads and new pages the same goals cost one host playing them in order (exact for 1 worker;
        # a lower bound for N workers, each of which sees more task changes)
        pages = (
            counts.get("load", 0) * floor["load task page (goto + BrowserGym setup)"]
            + counts.get("new_page", 0) * floor["new context + page"]
        )
        ms = 1000 * pool["s_per_episode_per_worker"]
        show(
            f"{name}_vs_floor",
            {
                "workers": pool["workers"],
                "pool_ms_per_episode_per_worker": round(ms, 1),
                "floor_sum_in_place_ms": round(need, 1),
                "ratio_in_place": round(ms / need, 2),
                "floor_sum_with_page_loads_ms": round(need + pages, 1),
                "ratio_with_page_loads": round(ms / (need + pages), 2),
            },
        )
    # task affinity: 4 live episodes per worker, goals task after task and interleaved (consecutive goals
    # change task), against 1 per worker on the same interleaved goals
    interleaved = [(f"miniwob.{t}", s) for s in range(args.seeds) for t in TASKS]
    for name, order, epw in (
        ("pool_epw4_task_major", goals, 4),
        ("pool_epw4_interleaved", interleaved, 4),
        ("pool_epw1_interleaved", interleaved, 1),
    ):
        show(
            name,
            run_pool(order, args.workers, args.max_steps, observation="compact", episodes_per_worker=epw),
        )
    error_goals = [(f"miniwob.{t}", s) for t in TASKS for s in range(args.error_seeds)]
    for w in args.error_workers:
        show(
            f"pool_{w}_workers",
            run_pool(
                error_goals,
                w,
                args.max_steps,
                observation="compact",
                episodes_per_worker=args.episodes_per_worker,
            ),
        )
    report["loadavg_end"] = _loadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
