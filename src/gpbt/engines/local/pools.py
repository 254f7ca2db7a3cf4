"""The local engine's executors: `_ProcessPool` (real worker processes, timeouts, replacement of
dead workers) and `_SimulatedPool` (the deterministic mode's virtual workers on a simulated
clock). Both hand the engine the same `_Event`s, so the engine does not know which it drives.
"""

from __future__ import annotations

import heapq
import multiprocessing as mp
import os
import pickle
import sys
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import wait as _mp_wait
from typing import Any

from gpbt.engines.children import check_child_exit
from gpbt.engines.local.worker import _Runner, _worker_main
from gpbt.engines.trainable import TrainableError, trainable_name


@dataclass
class _Event:
    kind: str  # result | error | timeout | died
    worker: int
    member: int
    payload: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Proc:
    process: Any
    conn: Any
    ready: bool = False
    task: dict[str, Any] | None = None
    deadline: float | None = None


class _ProcessPool:
    """Worker processes (spawned, so torch/JAX threads in the parent cannot deadlock them)."""

    def __init__(
        self,
        n: int,
        trainable: type | str,
        *,
        threads: int,
        cache_size: int,
        step_timeout: float | None,
    ):
        try:
            self.blob = pickle.dumps(trainable)
        except Exception as e:
            raise ValueError(
                f"trainable {trainable_name(trainable)!r} cannot be sent to worker processes "
                f"({e}); define the class at the top level of an importable module"
            ) from e
        self.n, self.threads, self.cache_size = n, threads, cache_size
        self.step_timeout = step_timeout
        self.ctx = mp.get_context("spawn")
        self.workers: list[_Proc | None] = [None] * n
        self.last_worker: dict[int, int] = {}
        self.startup_deaths = 0
        for i in range(n):
            self._start(i)

    def _start(self, i: int) -> None:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(
            target=_worker_main,
            args=(child, self.blob, list(sys.path), self.threads, self.cache_size),
            name=f"gpbt-worker-{i}",
        )
        saved = {k: os.environ.get(k) for k in _THREAD_VARS}
        os.environ.update({k: str(self.threads) for k in _THREAD_VARS})
        try:
            process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.workers[i] = _Proc(process, parent)

    def now(self) -> float:
        return _time.monotonic()

    def idle(self) -> list[int]:
        return [i for i, w in enumerate(self.workers) if w and w.ready and w.task is None]

    def busy(self) -> int:
        return sum(1 for w in self.workers if w and w.task is not None)

    def submit(self, i: int, task: dict[str, Any]) -> None:
        w = self.workers[i]
        w.conn.send(("run", task))
        w.task = task
        w.deadline = None if self.step_timeout is None else _time.monotonic() + self.step_timeout
        self.last_worker[task["member"]] = i

    def drop(self, member: int) -> None:
        i = self.last_worker.pop(member, None)
        w = None if i is None else self.workers[i]
        if w is not None and w.ready:
            try:
                w.conn.send(("drop", member))
            except OSError:
                pass

    def wait(self) -> list[_Event]:
        now = _time.monotonic()
        deadlines = [w.deadline for w in self.workers if w and w.deadline is not None]
        # Wake at least once a second so Ctrl-C and hung steps are noticed promptly.
        timeout = 1.0 if not deadlines else max(0.0, min(min(deadlines) - now, 1.0))
        conns = {w.conn: i for i, w in enumerate(self.workers) if w}
        sentinels = {w.process.sentinel: i for i, w in enumerate(self.workers) if w}
        ready = _mp_wait(list(conns) + list(sentinels), timeout)
        events: list[_Event] = []
        lost: set[int] = set()
        for i in sorted({conns[o] for o in ready if o in conns}):
            events.extend(self._receive(i, lost))
        for i in sorted({sentinels[o] for o in ready if o in sentinels}):
            if i in lost:
                continue
            w = self.workers[i]
            while w.conn.poll():  # a last message sent just before exiting
                events.extend(self._receive(i, lost))
                if i in lost:
                    break
            if i not in lost:
                lost.add(i)
                code = w.process.exitcode
                events.extend(self._lost(i, "died", f"the worker process exited (code {code})"))
        now = _time.monotonic()
        for i, w in enumerate(self.workers):
            if i not in lost and w and w.deadline is not None and now >= w.deadline:
                events.extend(
                    self._lost(i, "timeout", f"the step took longer than {self.step_timeout} s")
                )
        return events

    def _receive(self, i: int, lost: set[int]) -> list[_Event]:
        w = self.workers[i]
        try:
            kind, payload = w.conn.recv()
        except (EOFError, OSError):
            lost.add(i)
            return self._lost(i, "died", "the worker process exited")
        if kind == "ready":
            w.ready = True
            self.startup_deaths = 0
            return []
        if kind == "fatal":
            raise TrainableError(
                f"a worker could not load the trainable: {payload['error']}\n{payload['traceback']}"
            )
        task, w.task, w.deadline = w.task, None, None
        return [_Event(kind, i, payload["member"], payload, task or {})]

    def _lost(self, i: int, kind: str, message: str) -> list[_Event]:
        """Kill worker i, start a replacement; the member it was running (if any) faulted."""
        w = self.workers[i]
        task = w.task
        if not w.ready:
            # no replacement can help a script without a main guard: let the exit code show
            w.process.join(timeout=5)
            check_child_exit(w.process.exitcode)
        _kill(w.process)
        w.conn.close()
        if not w.ready:
            # A worker that dies before it could even load the trainable would be replaced
            # forever; a few in a row means the environment is broken, not a member.
            self.startup_deaths += 1
            if self.startup_deaths >= 3:
                raise RuntimeError(
                    f"worker processes keep dying while starting ({message}); check that "
                    "the trainable's module imports cleanly in a fresh Python process"
                )
        for m, j in list(self.last_worker.items()):
            if j == i:
                del self.last_worker[m]
        self._start(i)
        if task is None:
            return []
        return [_Event(kind, i, task["member"], {"error": message}, task)]

    def close(self, abort: bool = False) -> None:
        for w in self.workers:
            if w is None:
                continue
            if not abort and w.process.is_alive():
                try:
                    w.conn.send(("close",))
                except OSError:
                    pass
        deadline = _time.monotonic() + (0 if abort else 10)
        for w in self.workers:
            if w is None:
                continue
            w.process.join(max(0.0, deadline - _time.monotonic()))
            _kill(w.process)
            w.conn.close()
        self.workers = [None] * self.n


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _kill(process) -> None:
    if process.is_alive():
        process.kill()
    process.join(5)


class _SimulatedPool:
    """The deterministic mode: N virtual workers in this process and a simulated clock.

    A task runs to completion when submitted, but its result is delivered at
    `now + duration`, in the order of simulated finishing time (ties: submission order); a
    duration above `step_timeout` is a hang: the virtual worker "dies", losing its live
    trainables as a real one would. Event order therefore depends only on seeds and durations.
    """

    def __init__(
        self,
        n: int,
        trainable: type,
        *,
        cache_size: int,
        step_timeout: float | None,
        duration: Callable[[dict[str, Any], dict[str, Any]], float],
    ):
        self.n = n
        self.cls = trainable
        self.cache_size = cache_size
        self.step_timeout = step_timeout
        self.duration = duration
        self.runners = [_Runner(trainable, cache_size) for _ in range(n)]
        self.clock = 0.0
        self.heap: list[tuple[float, int, _Event]] = []
        self.busy_workers: set[int] = set()
        self.seq = 0
        self.last_worker: dict[int, int] = {}

    def now(self) -> float:
        return self.clock

    def idle(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.busy_workers]

    def busy(self) -> int:
        return len(self.busy_workers)

    def submit(self, i: int, task: dict[str, Any]) -> None:
        event, d = self._run(i, task)
        self.seq += 1
        self._push(self.clock + max(d, 0.0), self.seq, event)

    def _run(self, i: int, task: dict[str, Any]) -> tuple[_Event, float]:
        kind, payload = self.runners[i].run(task)
        if kind == "result":
            d = float(self.duration(task, payload["metrics"]))
        else:
            d = 0.0
        event = _Event(kind, i, task["member"], payload, task)
        if self.step_timeout is not None and d > self.step_timeout:
            d = self.step_timeout
            event = _Event(
                "timeout",
                i,
                task["member"],
                {"error": f"the step took longer than {self.step_timeout} s (simulated)"},
                task,
            )
            self.runners[i].close()
            self.runners[i] = _Runner(self.cls, self.cache_size)
        return event, d

    def _push(self, finish: float, seq: int, event: _Event) -> None:
        heapq.heappush(self.heap, (finish, seq, event))
        self.busy_workers.add(event.worker)
        self.last_worker[event.task["member"]] = event.worker

    def snapshot(self) -> dict[str, Any]:
        """What a resume needs to go on exactly where this pool is: the clock, the steps in
        flight (their tasks, virtual workers and finishing times) and who ran where."""
        return {
            "workers": self.n,
            "clock": self.clock,
            "seq": self.seq,
            "in_flight": [[t, seq, ev.worker, ev.task] for t, seq, ev in sorted(self.heap)],
            "last_worker": {str(m): w for m, w in self.last_worker.items()},
        }

    def restore(self, snapshot: Mapping[str, Any]) -> dict[int, int]:
        """Continue from `snapshot`: each step that was in flight runs again (from the same
        checkpoint and config, so with the same result) and finishes at its recorded simulated
        time. Returns member -> virtual worker of the steps in flight."""
        self.clock, self.seq = float(snapshot["clock"]), int(snapshot["seq"])
        self.last_worker = {int(m): int(w) for m, w in snapshot["last_worker"].items()}
        running = {}
        for finish, seq, worker, task in snapshot["in_flight"]:
            event, _ = self._run(int(worker), task)
            self._push(float(finish), int(seq), event)
            running[int(task["member"])] = int(worker)
        return running

    def drop(self, member: int) -> None:
        i = self.last_worker.pop(member, None)
        if i is not None:
            self.runners[i].drop(member)

    def wait(self) -> list[_Event]:
        if not self.heap:
            return []
        t, _, event = heapq.heappop(self.heap)
        self.clock = t
        self.busy_workers.discard(event.worker)
        return [event]

    def close(self, abort: bool = False) -> None:
        for r in self.runners:
            r.close()
