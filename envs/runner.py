"""The episode runner: batched, lockstep episodes over a pool of persistent env workers.

`open_runner(family, workers=N)` starts N workers; for the browser families each is a process that keeps one
chromium alive across episodes (one browser context per live episode), and the policy runs in the calling
process. `run_episodes(policy, goals, ...)` keeps up to `workers * episodes_per_worker` episodes live, and per
round of steps makes ONE batched `policy.generate` call over all live episodes, parses each completion
(`envs.actions.parse_action`: a parse error is a step with an error and no env call), sends the actions to the
workers in parallel and collects the observations. Each new episode goes to the least loaded worker that has
an idle page of its task (started there in place instead of loaded; workers report their idle pages with every
answer), else to the least loaded one; the same episodes start in each round whatever the routing, so results and
batches do not depend on it. Episodes end on the env's done signal or at `max_steps`; a
trajectory carries success, steps and per-step records (the RL return is the trainers' to compute).

Infrastructure failures (a worker or browser that died, a page that did not load, a reset or observation that
raised) are env errors: the episode is restarted from scratch on a healthy worker up to `max_attempts` times,
and only then returned with `env_error` set (never as an agent failure). A dead worker process is restarted.
The toy family runs in-process (its steps take microseconds). Hosts and their options come from the family's
registry entry (`envs.registry.FAMILY_SPECS`), workers and their messages from `envs.worker`/`envs.messages`.

Timings per step: `gen_s` is the batched generate call's wall time divided by the batch size and `env_s` the
workers' round trip divided by the number of actions sent (both amortised: episodes share the calls).
Worker processes are started with `spawn` (safe with torch/CUDA in the caller): scripts that open a browser
runner need the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from envs.actions import ParseError, parse_action
from envs.choices import Family
from envs.hosts import worker_options
from envs.jsonl import append_jsonl
from envs.messages import Act, Batch, Close, EnvFailed, Observed, Op, Reset, Result, Started
from envs.prompts import build_prompt
from envs.protocol import Completion, Policy, Prompt, Step, Trajectory
from envs.registry import check_tasks
from envs.settings import RunnerConfig, split_options
from envs.worker import LocalWorker, ProcessWorker

__all__ = ["EpisodeRunner", "RunnerConfig", "open_runner"]

logger = logging.getLogger(__name__)

_DIED = "env worker died or timed out"


@dataclass
class _Live:
    """One live episode."""

    index: int
    eid: int
    worker: int
    traj: Trajectory
    obs: dict[str, Any]
    started_s: float
    history: list[str] = field(default_factory=list)
    last_error: str = ""


@dataclass
class _Play:
    """The state of one `run_episodes` call: goals, finished trajectories, attempts, the queue, live episodes."""

    goals: list[tuple[str, int]]
    load: list[int]
    """Live episodes per worker."""
    results: list[Trajectory | None] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    pending: deque[int] = field(default_factory=deque)
    live: dict[int, _Live] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.goals)
        self.attempts = [0] * len(self.goals)
        self.pending = deque(range(len(self.goals)))

    def drop(self, i: int) -> _Live:
        """Take episode `i` off the live set (and its worker's load)."""
        ep = self.live.pop(i)
        self.load[ep.worker] -= 1
        return ep


class EpisodeRunner:
    """Runs batches of episodes in lockstep over persistent workers; a context manager (closes the workers)."""

    def __init__(self, config: RunnerConfig, host_options: dict[str, Any] | None = None) -> None:
        self.config = config
        spec = config.spec
        self._workers: list[LocalWorker | ProcessWorker] = []
        try:
            for k in range(config.workers):  # processes start in parallel; their browsers launch concurrently
                opts = worker_options(
                    spec, host_options or {}, observation=config.observation_kind, worker_index=k
                )
                if spec.in_process:
                    self._workers.append(LocalWorker(spec, opts))
                else:
                    self._workers.append(ProcessWorker(spec, opts, config.worker_timeout_s))
            for w in self._workers:
                w.wait_ready()
        except Exception:
            self.close()
            raise
        self._next_eid = 0
        self._pending_close: dict[int, list[Op]] = {w: [] for w in range(config.workers)}
        self._closing: dict[int, list[str]] = {w: [] for w in range(config.workers)}
        """The tasks of the pending closes (their pages become idle before the worker's next resets)."""
        self._idle_tasks: dict[int, tuple[str, ...]] = {w: () for w in range(config.workers)}
        """Each worker's idle pages by task as it last reported them (`EnvHost.idle_tasks`)."""
        self._down: dict[int, str] = {}
        """Workers that could not be restarted -> why; the others carry their load until they come back."""
        self.num_env_errors = 0
        """Env errors seen (each costs one episode attempt)."""
        self.dispatch_s = 0.0
        """Wall seconds spent waiting for the workers' answers (send to last answer, all batches)."""
        self.worker_busy_s = 0.0
        """Seconds the workers spent executing those batches, summed over workers (the rest is messaging)."""

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
        return [w.pid for w in self._workers]

    def run_episodes(
        self,
        policy: Policy,
        goals: Sequence[tuple[str, int]] | Iterable[Any],
        *,
        temperature: float,
        max_new_tokens: int,
        error_log: bool,
    ) -> list[Trajectory]:
        """Play one episode per goal; returns the trajectories in the order of `goals`.

        Args:
            policy: generates completions for a batch of prompts (called once per round of steps).
            goals: (task, seed) pairs (or objects with `.task` and `.seed`).
            temperature, max_new_tokens: passed to `policy.generate`.
            error_log: show the last action's error in the next prompt.
        """
        if not self._workers:
            raise RuntimeError("this runner is closed; open a new one with envs.runner.open_runner(...)")
        pairs = [g if isinstance(g, tuple) else (g.task, g.seed) for g in goals]
        play = _Play([(str(t), int(s)) for t, s in pairs], load=[0] * len(self._workers))
        check_tasks(self.config.family, {t for t, _ in play.goals})
        if self._down:
            self._revive()
        while play.pending or play.live:
            self._start_episodes(play)
            if not play.live:
                continue
            order = sorted(play.live)
            prompts = [self._prompt(play.live[i], error_log) for i in order]
            t0 = time.monotonic()
            completions = policy.generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens)
            gen_s = (time.monotonic() - t0) / max(1, len(order))
            if len(completions) != len(prompts):
                raise ValueError(
                    f"policy.generate returned {len(completions)} completions for {len(prompts)} prompts"
                )
            self._step_all(play, order, prompts, completions, gen_s)
        self._flush_closes()
        return [t for t in play.results if t is not None]

    @property
    def idle_tasks(self) -> dict[int, tuple[str, ...]]:
        """Worker -> its idle pages' tasks as it last reported them (`EnvHost.idle_tasks`, least recently used
        first; "" for a page no reset starts in place); what the next call routes by."""
        return dict(self._idle_tasks)

    # ---------------------------------------------------------------- scheduling
    def _start_episodes(self, play: _Play) -> None:
        """Reset pending episodes, in queue order, on healthy workers below `episodes_per_worker`: each on the
        least loaded worker with an idle page of its task, else on the least loaded one (`_route`).

        Which episodes start in a round does not depend on the routing, and an episode's result does not depend
        on its worker, so the trajectories are the same whatever the workers held before."""
        starts: dict[int, list[Op]] = {}
        meta: dict[int, list[int]] = {}
        up = [k for k in range(len(play.load)) if k not in self._down]
        # each worker's idle pages once its pending closes are done, least recently used first
        idle = {k: [*self._idle_tasks[k], *self._closing[k]] for k in up}
        while play.pending:
            i = play.pending[0]
            w = _route(play.goals[i][0], up, play.load, idle, capacity=self.config.episodes_per_worker)
            if w is None:
                break
            play.pending.popleft()
            play.load[w] += 1
            play.attempts[i] += 1
            starts.setdefault(w, []).append(Reset(self._next_eid, *play.goals[i]))
            meta.setdefault(w, []).append(i)
            self._next_eid += 1
        if not starts:
            return
        t0 = time.monotonic()
        results, dead = self._dispatch(starts)
        self._drop_dead(play, dead)
        for w, res in results.items():
            for i, op, r in zip(meta[w], starts[w], res, strict=True):
                if not isinstance(r, Started):
                    play.load[w] -= 1
                    self._fail(play, i, _message(r))
                    continue
                task, seed = play.goals[i]
                goal = str(r.observation.get("goal", ""))
                traj = Trajectory(task=task, seed=seed, goal=goal, attempts=play.attempts[i])
                play.live[i] = _Live(i, op.eid, w, traj, dict(r.observation, seed=seed), started_s=t0)

    def _step_all(
        self,
        play: _Play,
        order: list[int],
        prompts: list[Prompt],
        completions: list[Completion],
        gen_s: float,
    ) -> None:
        """Parse every completion, send the actions to the workers, record the steps and end finished episodes."""
        ops: dict[int, list[Op]] = {}
        sent: dict[int, list[tuple[int, Prompt, Completion, Act]]] = {}
        for i, prompt, comp in zip(order, prompts, completions, strict=True):
            ep = play.live[i]
            try:
                act = Act(ep.eid, parse_action(comp.text))
            except ParseError as e:
                step = Step(
                    prompt=prompt, completion=comp, action=None, action_error=f"parse error: {e}", gen_s=gen_s
                )
                ep.traj.steps.append(step)
                ep.history.append("(unparsable answer)")
                ep.last_error = step.action_error
                self._maybe_end(play, ep, done=False, reward=0.0)
                continue
            ops.setdefault(ep.worker, []).append(act)
            sent.setdefault(ep.worker, []).append((i, prompt, comp, act))
        if not ops:
            return
        t0 = time.monotonic()
        res, dead = self._dispatch(ops)
        env_s = (time.monotonic() - t0) / max(1, sum(len(v) for v in ops.values()))
        for w, items in res.items():
            if w in dead:
                continue
            for (i, prompt, comp, act), r in zip(sent[w], items, strict=True):
                if not isinstance(r, Observed):
                    self._queue_close(play.drop(i))
                    self._fail(play, i, _message(r))
                    continue
                ep = play.live[i]
                action = str(act.action)
                step = Step(
                    prompt=prompt,
                    completion=comp,
                    action=action,
                    action_error=r.action_error,
                    reward=r.reward,
                    gen_s=gen_s,
                    env_s=env_s,
                )
                ep.traj.steps.append(step)
                ep.obs = dict(r.observation, seed=ep.traj.seed)
                ep.history.append(action)
                ep.last_error = r.action_error
                self._maybe_end(play, ep, done=r.done, reward=r.reward)
        self._drop_dead(play, dead)

    def _maybe_end(self, play: _Play, ep: _Live, *, done: bool, reward: float) -> None:
        """End the episode on the env's done signal (success: reward > 0) or at `max_steps`."""
        if not done and ep.traj.num_steps < self.config.max_steps:
            return
        self._queue_close(play.drop(ep.index))
        ep.traj.success = done and reward > 0
        ep.traj.wall_s = time.monotonic() - ep.started_s
        self._finish(play, ep.index, ep.traj)

    def _queue_close(self, ep: _Live) -> None:
        """Close `ep` with its worker's next batch (before that batch's resets)."""
        self._pending_close[ep.worker].append(Close(ep.eid))
        self._closing[ep.worker].append(ep.traj.task)

    def _fail(self, play: _Play, i: int, message: str) -> None:
        """An env error cost episode `i` an attempt: queue it again, or return it with `env_error` set."""
        self.num_env_errors += 1
        if play.attempts[i] < self.config.max_attempts:
            play.pending.appendleft(i)
            return
        task, seed = play.goals[i]
        self._finish(
            play, i, Trajectory(task=task, seed=seed, goal="", env_error=message, attempts=play.attempts[i])
        )

    def _finish(self, play: _Play, i: int, traj: Trajectory) -> None:
        play.results[i] = traj
        if self.config.log_path:
            append_jsonl(traj, self.config.log_path)

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

    # ---------------------------------------------------------------- workers
    def _flush_closes(self) -> None:
        """Close the last episodes of a call now (one small batch per worker), so that their pages are idle and
        reported as such when the next call routes its resets."""
        flush = {w: [] for w, closes in self._pending_close.items() if closes and w not in self._down}
        if flush:
            _, dead = self._dispatch(flush)
            for w in dead:
                self._pending_close[w], self._closing[w], self._idle_tasks[w] = [], [], ()

    def _dispatch(self, ops: dict[int, list[Op]]) -> tuple[dict[int, tuple[Result, ...]], set[int]]:
        """Send each worker its ops (after its pending closes), collect all results; returns (results, dead)."""
        num_closes: dict[int, int] = {}
        t0 = time.monotonic()
        for w, batch in ops.items():
            closes, self._pending_close[w], self._closing[w] = self._pending_close[w], [], []
            num_closes[w] = len(closes)
            self._workers[w].send(Batch(tuple(closes + batch)))
        results: dict[int, tuple[Result, ...]] = {}
        dead: set[int] = set()
        deadline = t0 + self.config.worker_timeout_s
        for w in ops:
            res = self._workers[w].recv(max(0.0, deadline - time.monotonic()))
            self._idle_tasks[w] = () if res is None else res.idle_tasks
            if res is None:
                try:
                    self._workers[w].restart()
                except Exception as e:  # noqa: BLE001 - degrade to the remaining workers, fail only when none is left
                    self._mark_down(w, e)
                dead.add(w)
                results[w] = (EnvFailed(_DIED),) * len(ops[w])
            else:
                results[w] = res.items[num_closes[w] :]
                self.worker_busy_s += res.busy_s
        self.dispatch_s += time.monotonic() - t0
        return results, dead

    def _drop_dead(self, play: _Play, dead: set[int]) -> None:
        """Episodes on workers that died are env errors (their contexts died with the worker)."""
        for i in [i for i, ep in play.live.items() if ep.worker in dead]:
            play.drop(i)
            self._fail(play, i, _DIED)
        for w in dead:
            self._pending_close[w], self._closing[w], self._idle_tasks[w] = [], [], ()

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
            self._pending_close[w], self._closing[w], self._idle_tasks[w] = [], [], ()


def _route(
    task: str, up: Sequence[int], load: Sequence[int], idle: dict[int, list[str]], *, capacity: int
) -> int | None:
    """The worker for a reset of `task`, or None when every healthy worker holds `capacity` live episodes.

    Among the workers in `up` below `capacity`: the least loaded one with an idle page of `task` (started in place
    there instead of loaded), else the least loaded one; ties go to the lower index. `idle` (worker -> its idle
    pages' tasks, least recently used first, "" for a page no reset starts in place) is updated as the host uses
    its pages (`MiniWobHost._take_slot`): the most recently used page of `task`, else the most recently used page.
    """
    open_ = [k for k in up if load[k] < capacity]
    if not open_:
        return None
    hot = [k for k in open_ if task in idle[k]]
    w = min(hot or open_, key=lambda k: load[k])
    pages = idle[w]
    if task in pages:
        del pages[len(pages) - 1 - pages[::-1].index(task)]
    elif pages:
        del pages[-1]
    return w


def _message(result: Result) -> str:
    return (
        result.message
        if isinstance(result, EnvFailed)
        else f"unexpected worker result {type(result).__name__}"
    )


def open_runner(family: Family, *, workers: int = 1, max_steps: int = 10, **options: Any) -> EpisodeRunner:
    """Open an episode runner (a context manager) over `workers` persistent env workers.

    Args:
        family: `toy`, `miniwob` or `workarena` (`envs.choices.FAMILIES`).
        workers: worker processes, each with one browser (toy: in-process hosts).
        max_steps: agent steps per episode.
        **options: `RunnerConfig` fields (observation, max_obs_tokens, episodes_per_worker, max_attempts,
            worker_timeout_s, log_path) and the family's host options (its registry entry's settings dataclass:
            `envs.toy.ToySettings`, `envs.browser.MiniWobSettings`, `envs.workarena.WorkArenaSettings`).

    Returns:
        An `EpisodeRunner`.
    """
    config, host_options = split_options(family, workers=workers, max_steps=max_steps, **options)
    return EpisodeRunner(config, host_options)
