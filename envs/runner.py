"""The episode runner: batched, lockstep episodes over a pool of persistent env workers.

`open_runner(family, workers=N)` starts N workers; for the browser families each is a process that keeps one
chromium alive across episodes (one browser context per live episode), and the policy runs in the calling
process. `run_episodes(policy, goals, ...)` keeps up to `workers * episodes_per_worker` episodes live, and per
round of steps makes ONE batched `policy.generate` call over all live episodes, parses each completion
(`envs.actions.parse_action`: a parse error is a step with an error and no env call), sends the actions to the
workers in parallel and collects the observations. Episodes end on the env's done signal or at `max_steps`.

Infrastructure failures (a worker or browser that died, a page that did not load, a reset or observation that
raised) are env errors: the episode is restarted from scratch on a healthy worker up to `max_attempts` times,
and only then returned with `env_error` set (never as an agent failure). A dead worker process is restarted.
The toy family runs in-process (its steps take microseconds).

Timings per step: `gen_s` is the batched generate call's wall time divided by the batch size and `env_s` the
workers' round trip divided by the number of actions sent (both amortised: episodes share the calls).
Worker processes are started with `spawn` (safe with torch/CUDA in the caller): scripts that open a browser
runner need the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import time
import traceback
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from envs.actions import Action, ParseError, parse_action
from envs.prompts import ObservationKind, build_prompt
from envs.protocol import Completion, Policy, Prompt, Step, Trajectory, episode_return

__all__ = ["EpisodeRunner", "RunnerConfig", "open_runner", "write_jsonl", "read_jsonl"]

logger = logging.getLogger(__name__)

Family = Literal["toy", "miniwob", "workarena"]


@dataclass(frozen=True)
class RunnerConfig:
    """Runner settings shared by all families (the rest of `open_runner`'s options go to the env host)."""

    family: Family
    workers: int = 1
    """Worker processes (browsers) for miniwob/workarena; in-process hosts for toy."""
    max_steps: int = 10
    """Agent steps per episode (each parsed or unparsed completion counts as one)."""
    episodes_per_worker: int = 4
    """Live episodes per worker (browser contexts per browser)."""
    observation: ObservationKind | None = None
    """Page view in prompts: html (MiniWoB++ default), axtree (WorkArena default) or compact (element list)."""
    max_obs_tokens: int = 2000
    """Token budget of the page text in a prompt (cut stated in the prompt)."""
    max_attempts: int = 3
    """Starts per episode when env errors occur (1 = no retry)."""
    worker_timeout_s: float = 120.0
    """A worker that does not answer a batch within this time is killed and restarted (its episodes retried)."""
    log_path: str | None = None
    """Append every finished trajectory to this JSONL file."""

    def __post_init__(self) -> None:
        if self.family not in ("toy", "miniwob", "workarena"):
            raise ValueError(f"family={self.family!r}: choose toy, miniwob or workarena")
        for name in ("workers", "max_steps", "episodes_per_worker", "max_attempts", "max_obs_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.observation not in (None, "html", "axtree", "compact"):
            raise ValueError(f"observation={self.observation!r}: choose html, axtree or compact")

    @property
    def observation_kind(self) -> ObservationKind:
        if self.observation is not None:
            return self.observation
        return {"toy": "compact", "miniwob": "html", "workarena": "axtree"}[self.family]  # type: ignore[return-value]


# ---------------------------------------------------------------- hosts (where env sessions live)
def make_host(family: str, options: dict[str, Any]) -> Any:
    """The env host of a family: `reset(eid, task, seed)`, `step(eid, action)`, `close(eid)`, `shutdown()`.

    A host raises only for infrastructure failures; action errors come back as strings from `step`.
    """
    if family == "toy":
        from envs.toy import ToyHost

        return ToyHost(**options)
    if family == "miniwob":
        from envs.browser import MiniWobHost

        return MiniWobHost(**options)
    if family == "workarena":
        from envs.workarena import WorkArenaHost

        return WorkArenaHost(**options)
    raise ValueError(f"unknown env family {family!r}")


def _execute(host: Any, ops: list[tuple]) -> list[tuple[str, Any]]:
    """Run a worker's batch: closes and resets one by one, then all steps together (`step_many` when the host
    has it, so a browser host waits its settle time once per batch, not once per episode)."""
    out: list[tuple[str, Any] | None] = [None] * len(ops)
    steps = [k for k, op in enumerate(ops) if op[0] == "step"]
    for k, op in enumerate(ops):
        if op[0] == "step":
            continue
        try:
            if op[0] == "reset":
                out[k] = ("ok", host.reset(op[1], op[2], op[3]))
            else:
                host.close(op[1])
                out[k] = ("ok", None)
        except Exception as e:  # noqa: BLE001 - any host failure is an env error, reported as data
            out[k] = _env_error(op[0], e)
    if steps:
        if hasattr(host, "step_many"):
            results = host.step_many([(ops[k][1], ops[k][2]) for k in steps])
        else:
            results = []
            for k in steps:
                try:
                    results.append(host.step(ops[k][1], ops[k][2]))
                except Exception as e:  # noqa: BLE001 - as above
                    results.append(e)
        for k, r in zip(steps, results, strict=True):
            out[k] = _env_error("step", r) if isinstance(r, Exception) else ("ok", r)
    return out  # type: ignore[return-value]


def _env_error(what: str, e: BaseException) -> tuple[str, str]:
    logger.debug("env error in %s: %s", what, "".join(traceback.format_exception(e)))
    return ("env_error", f"{type(e).__name__}: {str(e)[:500]}")


def _worker_main(conn: Any, family: str, options: dict[str, Any]) -> None:
    try:
        host = make_host(family, options)
        if hasattr(host, "start"):
            host.start()
    except Exception as e:  # noqa: BLE001 - reported to the calling process, which raises it
        conn.send(("init_error", f"{type(e).__name__}: {e}"))
        conn.close()
        return
    conn.send(("ready", None))
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                break
            conn.send(_execute(host, msg))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        try:
            host.shutdown()
        finally:
            conn.close()


class _LocalWorker:
    def __init__(self, family: str, options: dict[str, Any]) -> None:
        self.host = make_host(family, options)
        self._result: list[tuple[str, Any]] = []

    def wait_ready(self) -> None:
        pass

    def send(self, ops: list[tuple]) -> None:
        self._result = _execute(self.host, ops)

    def recv(self, timeout_s: float) -> list[tuple[str, Any]]:
        return self._result

    def restart(self) -> None:
        pass

    def close(self) -> None:
        self.host.shutdown()


class _ProcessWorker:
    """A worker process holding one env host (one browser) across episodes."""

    def __init__(self, family: str, options: dict[str, Any], timeout_s: float) -> None:
        self.family, self.options, self.timeout_s = family, options, timeout_s
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that may hold torch threads or CUDA
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.family, self.options), daemon=True)
        self.proc.start()
        child.close()
        self._ready = False

    def wait_ready(self) -> None:
        """Block until the worker's host is up (browser launched); raise its start-up error in this process."""
        if self._ready:
            return
        msg = self.recv(self.timeout_s)
        if msg is None:
            raise RuntimeError(
                f"env worker (pid {self.pid}) did not start within {self.timeout_s:.0f} s; "
                "raise worker_timeout_s on a loaded machine"
            )
        if msg[0] == "init_error":
            raise RuntimeError(f"env worker failed to start: {msg[1]}")
        self._ready = True

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def send(self, ops: list[tuple]) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):  # recv reports a dead worker
            self.conn.send(ops)

    def recv(self, timeout_s: float) -> list[tuple[str, Any]] | None:
        """The batch's results, or None when the worker died or timed out."""
        try:
            if self.conn.poll(timeout_s):
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def restart(self) -> None:
        self.restarts += 1
        logger.warning("env worker pid %s died or hung; restarting it (restart %d)", self.pid, self.restarts)
        self._kill()
        self._start()
        self.wait_ready()

    def _kill(self) -> None:
        try:
            self.conn.close()
        finally:
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.proc.join(10)
        self._kill()


# ---------------------------------------------------------------- the runner
@dataclass
class _Live:
    index: int
    eid: int
    worker: int
    traj: Trajectory
    obs: dict[str, Any]
    history: list[str] = field(default_factory=list)
    last_error: str = ""
    started_s: float = 0.0


class EpisodeRunner:
    """Runs batches of episodes in lockstep over persistent workers; a context manager (closes the workers)."""

    def __init__(self, config: RunnerConfig, host_options: dict[str, Any] | None = None) -> None:
        self.config = config
        self.host_options = dict(host_options or {})
        if config.family != "toy":
            self.host_options.setdefault("observation", config.observation_kind)
        if config.family == "toy":
            self._workers: list[Any] = [_LocalWorker("toy", self.host_options) for _ in range(config.workers)]
        else:
            self._workers = [
                _ProcessWorker(config.family, self._options_of(k), config.worker_timeout_s)
                for k in range(config.workers)
            ]
        try:
            for w in self._workers:  # started in parallel above; their browsers launch concurrently
                w.wait_ready()
        except Exception:
            self.close()
            raise
        self._next_eid = 0
        self._pending_close: dict[int, list[tuple]] = {w: [] for w in range(config.workers)}
        self._down: dict[int, str] = {}
        """Workers that could not be restarted -> why; the others carry their load until they come back."""
        self.num_env_errors = 0
        """Env errors seen (each costs one episode attempt)."""

    def _options_of(self, worker_index: int) -> dict[str, Any]:
        if self.config.family == "workarena":  # picks the worker's instance from a pool file
            return dict(self.host_options, worker_index=worker_index)
        return self.host_options

    def __enter__(self) -> EpisodeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (and their browsers)."""
        for w in self._workers:
            try:
                w.close()
            except Exception:  # noqa: BLE001 - closing must not raise over another error
                logger.debug("closing a worker failed", exc_info=True)
        self._workers = []

    @property
    def worker_pids(self) -> list[int | None]:
        return [getattr(w, "pid", None) for w in self._workers]

    def _dispatch(self, ops: dict[int, list[tuple]]) -> tuple[dict[int, list[tuple[str, Any]]], set[int]]:
        """Send each worker its ops (plus pending closes), collect all results; returns (results, dead workers)."""
        sent: dict[int, int] = {}
        for w, batch in ops.items():
            closes = self._pending_close[w]
            self._pending_close[w] = []
            sent[w] = len(closes)
            self._workers[w].send(closes + batch)
        results, dead = {}, set()
        deadline = time.monotonic() + self.config.worker_timeout_s
        for w in ops:
            res = self._workers[w].recv(max(0.0, deadline - time.monotonic()))
            if res is None:
                try:
                    self._workers[w].restart()
                except Exception as e:  # noqa: BLE001 - degrade to the remaining workers, fail only when none is left
                    self._mark_down(w, e)
                dead.add(w)
                results[w] = [("env_error", "env worker died or timed out")] * len(ops[w])
            else:
                results[w] = res[sent[w] :]
        return results, dead

    def run_episodes(
        self,
        policy: Policy,
        goals: Sequence[tuple[str, int]] | Iterable[Any],
        *,
        temperature: float,
        max_new_tokens: int,
        gamma: float,
        error_log: bool,
    ) -> list[Trajectory]:
        """Play one episode per goal; returns the trajectories in the order of `goals`.

        Args:
            policy: generates completions for a batch of prompts (called once per round of steps).
            goals: (task, seed) pairs (or objects with `.task` and `.seed`).
            temperature, max_new_tokens: passed to `policy.generate`.
            gamma: discount of the episode return (see `protocol.episode_return`).
            error_log: show the last action's error in the next prompt.
        """
        if not self._workers:
            raise RuntimeError("this runner is closed; open a new one with envs.runner.open_runner(...)")
        episode_return(True, 0, gamma)  # validates gamma before any work
        pairs = [g if isinstance(g, tuple) else (g.task, g.seed) for g in goals]
        pairs = [(str(t), int(s)) for t, s in pairs]
        _check_tasks(self.config.family, {t for t, _ in pairs})
        results: list[Trajectory | None] = [None] * len(pairs)
        attempts = [0] * len(pairs)
        last_env_error = [""] * len(pairs)
        pending = deque(range(len(pairs)))
        live: dict[int, _Live] = {}
        load = [0] * len(self._workers)
        if self._down:
            self._revive()

        def fail(i: int, message: str) -> None:
            self.num_env_errors += 1
            last_env_error[i] = message
            if attempts[i] < self.config.max_attempts:
                pending.appendleft(i)
            else:
                task, seed = pairs[i]
                traj = Trajectory(task=task, seed=seed, goal="", env_error=message, attempts=attempts[i])
                traj.episode_return = 0.0
                self._finish(results, i, traj)

        while pending or live:
            self._start_episodes(pairs, pending, live, load, attempts, fail)
            if not live:
                continue
            order = sorted(live)
            prompts = [self._prompt(live[i], error_log) for i in order]
            t0 = time.monotonic()
            completions = policy.generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens)
            gen_s = (time.monotonic() - t0) / max(1, len(order))
            if len(completions) != len(prompts):
                raise ValueError(
                    f"policy.generate returned {len(completions)} completions for {len(prompts)} prompts"
                )
            self._step_all(order, prompts, completions, gen_s, live, load, results, gamma, fail)
        return [t for t in results if t is not None]

    def _start_episodes(self, pairs, pending, live, load, attempts, fail) -> None:
        starts: dict[int, list[tuple]] = {}
        meta: dict[int, list[tuple[int, int]]] = {}
        up = [k for k in range(len(load)) if k not in self._down]
        capacity = len(up) * self.config.episodes_per_worker
        while pending and len(live) + sum(len(v) for v in starts.values()) < capacity:
            i = pending.popleft()
            w = min(up, key=lambda k: load[k])
            load[w] += 1
            attempts[i] += 1
            eid = self._next_eid
            self._next_eid += 1
            starts.setdefault(w, []).append(("reset", eid, *pairs[i]))
            meta.setdefault(w, []).append((i, eid))
        if not starts:
            return
        t0 = time.monotonic()
        results, dead = self._dispatch(starts)
        self._drop_dead(dead, live, load, fail)
        for w, res in results.items():
            for (i, eid), (status, payload) in zip(meta[w], res, strict=True):
                if status != "ok":
                    load[w] -= 1
                    fail(i, payload)
                    continue
                task, seed = pairs[i]
                traj = Trajectory(
                    task=task, seed=seed, goal=str(payload.get("goal", "")), attempts=attempts[i]
                )
                live[i] = _Live(i, eid, w, traj, dict(payload, seed=seed), started_s=t0)

    def _mark_down(self, w: int, error: BaseException) -> None:
        self._down[w] = f"{type(error).__name__}: {error}"
        up = len(self._workers) - len(self._down)
        logger.error(
            "env worker %d could not be restarted (%s); going on with %d worker(s)", w, self._down[w], up
        )
        if up == 0:
            raise RuntimeError(
                f"all {len(self._workers)} env workers are down and could not be restarted (last: {self._down[w]}); "
                "check the browser install (/usr/lib/chromium/chromium) and memory, then open a new runner"
            ) from error

    def _revive(self) -> None:
        """Try once to restart the workers that are down (a browser that failed may start again later)."""
        for w in sorted(self._down):
            try:
                self._workers[w].restart()
            except Exception as e:  # noqa: BLE001 - it stays down
                logger.warning("env worker %d is still down: %s", w, e)
                continue
            del self._down[w]
            self._pending_close[w] = []

    def _drop_dead(self, dead: set[int], live: dict[int, _Live], load: list[int], fail) -> None:
        for i in [i for i, ep in live.items() if ep.worker in dead]:
            ep = live.pop(i)
            load[ep.worker] -= 1
            fail(i, "env worker died or timed out")
        for w in dead:
            self._pending_close[w] = []

    def _prompt(self, ep: _Live, error_log: bool) -> Prompt:
        return build_prompt(
            ep.obs,
            family=self.config.family,
            history=ep.history,
            last_error=ep.last_error,
            error_log=error_log,
            observation=self.config.observation_kind,
            max_obs_tokens=self.config.max_obs_tokens,
        )

    def _step_all(self, order, prompts, completions, gen_s, live, load, results, gamma, fail) -> None:
        ops: dict[int, list[tuple]] = {}
        sent: dict[int, list[tuple[int, Prompt, Completion, Action]]] = {}
        for i, prompt, comp in zip(order, prompts, completions, strict=True):
            ep = live[i]
            try:
                action = parse_action(comp.text)
            except ParseError as e:
                step = Step(
                    prompt=prompt, completion=comp, action=None, action_error=f"parse error: {e}", gen_s=gen_s
                )
                ep.traj.steps.append(step)
                ep.history.append("(unparsable answer)")
                ep.last_error = step.action_error
                self._maybe_end(ep, False, live, load, results, gamma)
                continue
            ops.setdefault(ep.worker, []).append(("step", ep.eid, action))
            sent.setdefault(ep.worker, []).append((i, prompt, comp, action))
        if not ops:
            return
        t0 = time.monotonic()
        res, dead = self._dispatch(ops)
        env_s = (time.monotonic() - t0) / max(1, sum(len(v) for v in ops.values()))
        for w, items in res.items():
            if w in dead:
                continue
            for (i, prompt, comp, action), (status, payload) in zip(sent[w], items, strict=True):
                ep = live[i]
                if status != "ok":
                    live.pop(i)
                    load[ep.worker] -= 1
                    self._pending_close[ep.worker].append(("close", ep.eid))
                    fail(i, payload)
                    continue
                obs, reward, done, error = payload
                ep.traj.steps.append(
                    Step(
                        prompt=prompt,
                        completion=comp,
                        action=str(action),
                        action_error=error,
                        reward=float(reward),
                        gen_s=gen_s,
                        env_s=env_s,
                    )
                )
                ep.obs = dict(obs, seed=ep.traj.seed)
                ep.history.append(str(action))
                ep.last_error = error
                self._maybe_end(ep, bool(done), live, load, results, gamma, reward=float(reward))
        self._drop_dead(dead, live, load, fail)

    def _maybe_end(self, ep: _Live, done: bool, live, load, results, gamma, reward: float = 0.0) -> None:
        if not done and ep.traj.num_steps < self.config.max_steps:
            return
        live.pop(ep.index)
        load[ep.worker] -= 1
        self._pending_close[ep.worker].append(("close", ep.eid))
        ep.traj.success = bool(done and reward > 0)
        ep.traj.episode_return = episode_return(ep.traj.success, ep.traj.num_steps, gamma)
        ep.traj.wall_s = time.monotonic() - ep.started_s
        self._finish(results, ep.index, ep.traj)

    def _finish(self, results: list[Trajectory | None], i: int, traj: Trajectory) -> None:
        results[i] = traj
        if self.config.log_path:
            with open(self.config.log_path, "a", encoding="utf-8") as f:
                f.write(traj.to_json() + "\n")


def open_runner(
    family: Family,
    *,
    workers: int = 1,
    max_steps: int = 10,
    **options: Any,
) -> EpisodeRunner:
    """Open an episode runner (a context manager) over `workers` persistent env workers.

    Args:
        family: `toy`, `miniwob` or `workarena`.
        workers: worker processes, each with one browser (toy: in-process hosts).
        max_steps: agent steps per episode.
        **options: `RunnerConfig` fields (observation, max_obs_tokens, episodes_per_worker, max_attempts,
            worker_timeout_s, log_path) and the family's host options (toy: num_distractors, num_steps;
            miniwob: see `envs.browser.MiniWobHost`; workarena: see `envs.workarena.WorkArenaHost`).

    Returns:
        An `EpisodeRunner`.
    """
    runner_fields = set(RunnerConfig.__dataclass_fields__) - {"family", "workers", "max_steps"}
    cfg = RunnerConfig(
        family=family,
        workers=workers,
        max_steps=max_steps,
        **{k: v for k, v in options.items() if k in runner_fields},
    )
    host_options = {k: v for k, v in options.items() if k not in runner_fields}
    _check_host_options(family, host_options)
    return EpisodeRunner(cfg, host_options)


def _check_host_options(family: str, options: dict[str, Any]) -> None:
    """Fail in the calling process (not in a worker) on bad options or missing credentials."""
    if family == "toy":
        from envs.toy import ToyHost

        ToyHost(**options)
    elif family == "miniwob":
        from envs.browser import MiniWobSettings

        MiniWobSettings(**options)
    elif family == "workarena":
        import importlib.util

        from envs.workarena import WorkArenaSettings

        WorkArenaSettings.from_env(**options)
        if importlib.util.find_spec("browsergym.workarena") is None:
            raise RuntimeError("WorkArena needs `pip install browsergym-workarena` (the `web` extra)")
    else:
        raise ValueError(f"family={family!r}: choose toy, miniwob or workarena")


def _check_tasks(family: str, tasks: set[str]) -> None:
    from envs.registry import all_tasks

    known = set(all_tasks(family))
    unknown = sorted(tasks - known)
    if unknown:
        raise ValueError(f"unknown {family} task(s) {unknown[:5]}; `agentsweep envs list` shows the tasks")


def write_jsonl(trajectories: Iterable[Trajectory], path: str | Path) -> Path:
    """Write trajectories as JSONL (one episode a line); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(t.to_json() + "\n")
    return path


def read_jsonl(path: str | Path) -> list[Trajectory]:
    """Read trajectories written by `write_jsonl`."""
    import json

    with Path(path).open(encoding="utf-8") as f:
        return [Trajectory.from_dict(json.loads(line)) for line in f if line.strip()]
