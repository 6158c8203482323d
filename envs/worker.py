"""Env workers: a host in a process of its own (browsers) or in the calling process (toy), spoken to in messages.

`execute` runs one `Batch` on a host: closes and resets one by one, then every action of the batch in one
`step_many` (a browser host waits its settle time once per batch, not once per episode); whatever the host raises
becomes that operation's `EnvFailed`; the answer also carries the host's idle pages by task (for the runner's
routing) and the seconds the batch took. `ProcessWorker` keeps one host (one chromium) in a `spawn`ed process across
episodes and is restarted when it dies or hangs; `LocalWorker` has the same interface in-process.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import time
import traceback
from typing import TYPE_CHECKING, Any

from envs.hosts import EnvHost, make_host
from envs.messages import (
    Act,
    Batch,
    Closed,
    EnvFailed,
    Observed,
    Ready,
    Reset,
    Result,
    Results,
    Started,
    StartFailed,
    Stop,
)

if TYPE_CHECKING:
    from envs.registry import FamilySpec

__all__ = ["execute", "LocalWorker", "ProcessWorker"]

logger = logging.getLogger(__name__)


def execute(host: EnvHost, batch: Batch) -> Results:
    """One result per operation of `batch`, in order (closes and resets first, then all actions together), with
    the host's idle tasks after it and the seconds it took."""
    t0 = time.perf_counter()
    out: list[Result | None] = [None] * len(batch.ops)
    acts = [k for k, op in enumerate(batch.ops) if isinstance(op, Act)]
    for k, op in enumerate(batch.ops):
        try:
            if isinstance(op, Reset):
                out[k] = Started(host.reset(op.eid, op.task, op.seed))
            elif not isinstance(op, Act):
                host.close(op.eid)
                out[k] = Closed()
        except Exception as e:  # noqa: BLE001 - any host failure is an env error, reported as data
            out[k] = env_failed(type(op).__name__, e)
    if acts:
        items = [(op.eid, op.action) for op in (batch.ops[k] for k in acts) if isinstance(op, Act)]
        for k, r in zip(acts, host.step_many(items), strict=True):
            out[k] = (
                env_failed("Act", r)
                if isinstance(r, Exception)
                else Observed(r[0], float(r[1]), bool(r[2]), r[3])
            )
    items = tuple(r for r in out if r is not None)
    return Results(items, idle_tasks=tuple(host.idle_tasks()), busy_s=time.perf_counter() - t0)


def env_failed(what: str, e: BaseException) -> EnvFailed:
    """The env error of a failed operation (`TypeName: message`, cut at 500 characters); the traceback is logged."""
    logger.debug("env error in %s: %s", what, "".join(traceback.format_exception(e)))
    return EnvFailed(f"{type(e).__name__}: {str(e)[:500]}")


def _worker_main(conn: Any, spec: FamilySpec, options: dict[str, Any]) -> None:
    try:
        host = make_host(spec, options)
        host.start()
    except Exception as e:  # noqa: BLE001 - reported to the calling process, which raises it
        conn.send(StartFailed(f"{type(e).__name__}: {e}"))
        conn.close()
        return
    conn.send(Ready())
    try:
        while True:
            msg = conn.recv()
            if isinstance(msg, Stop):
                break
            conn.send(execute(host, msg))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        try:
            host.shutdown()
        finally:
            conn.close()


class LocalWorker:
    """A host in the calling process (the toy env: its steps take microseconds)."""

    pid: int | None = None

    def __init__(self, spec: FamilySpec, options: dict[str, Any]) -> None:
        self.host = make_host(spec, options)
        self.host.start()
        self._results = Results(())

    def wait_ready(self) -> None:
        pass

    def send(self, batch: Batch) -> None:
        self._results = execute(self.host, batch)

    def recv(self, timeout_s: float) -> Results | None:
        return self._results

    def restart(self) -> None:
        pass

    def close(self) -> None:
        self.host.shutdown()


class ProcessWorker:
    """A worker process holding one env host (one browser) across episodes."""

    def __init__(self, spec: FamilySpec, options: dict[str, Any], timeout_s: float) -> None:
        self.spec, self.options, self.timeout_s = spec, options, timeout_s
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that may hold torch threads or CUDA
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.spec, self.options), daemon=True)
        self.proc.start()
        child.close()
        self._ready = False

    def wait_ready(self) -> None:
        """Block until the worker's host is up (browser launched); raise its start-up error in this process."""
        if self._ready:
            return
        msg = self._poll(self.timeout_s)
        if msg is None:
            raise RuntimeError(
                f"env worker (pid {self.pid}) did not start within {self.timeout_s:.0f} s; "
                "raise worker_timeout_s on a loaded machine"
            )
        if isinstance(msg, StartFailed):
            raise RuntimeError(f"env worker failed to start: {msg.message}")
        self._ready = True

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def send(self, batch: Batch) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):  # recv reports a dead worker
            self.conn.send(batch)

    def recv(self, timeout_s: float) -> Results | None:
        """The batch's results, or None when the worker died or timed out."""
        msg = self._poll(timeout_s)
        return msg if isinstance(msg, Results) else None

    def _poll(self, timeout_s: float) -> Any:
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
            self.conn.send(Stop())
        self.proc.join(10)
        self._kill()
