"""The supervisor, written once for `gpbt run` (the vector engine) and `gpbt bench`: train in a
child process, relay its events, and stop it when it dies or stops making progress.

Why a child at all: a rare hang inside XLA (all threads idle, 0% CPU, seen on small CPU
machines) cannot be interrupted from inside the process that hangs. The parent watches the
child's events instead: a child that sends nothing for longer than the watchdog allows is
killed, and the caller restarts it from its last checkpoint (the vector engine's resume, the
bench's cell resume), which the deterministic engines turn into the same result.

The watchdog's limit follows the child through three phases, because what is normal differs:
starting (importing JAX and building the population: seconds, and where the hang strikes),
compiling (until the first generation: minutes on a loaded machine), and training (each
generation within the run's `watchdog_seconds`). A step that is none of these (the final
evaluation) announces the silence it may need with its event's "watchdog_s".

Ctrl-C stops the child gracefully: it gets SIGTERM (and, from a terminal, SIGINT with the rest
of the process group), finishes and records the checkpoint it is writing, and exits; only a
child still running after `GRACEFUL_STOP_S` is killed.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpbt.engines.children import check_child_exit

# Seconds for a training process to import JAX and build (or load) its population. The rare
# all-threads-idle hang seen on small CPU machines (XLA/MLIR, inside the first lowering) strikes
# there; that step takes seconds, so a stuck start is restarted after this, not after the
# compile allowance.
INIT_WATCHDOG_S = 240.0
# Extra seconds allowed for the generation that compiles the training program.
STARTUP_ALLOWANCE_S = 600.0
# Seconds an interrupted child gets to finish the checkpoint it is writing before it is killed.
GRACEFUL_STOP_S = 60.0


class Watchdog:
    """How long the child may stay silent, from the events it has sent so far.

    `observe(event)` moves it on: "initialised" (the population exists; compiling next) and
    "generation" (training) relax it; "cell_start" (the bench's next cell) starts over, with
    that cell's own `progress_s`.
    """

    def __init__(self, progress_s: float) -> None:
        self.progress_s = float(progress_s)
        self.limit = INIT_WATCHDOG_S
        self.last = time.monotonic()

    def restart(self, progress_s: float | None = None) -> None:
        if progress_s is not None:
            self.progress_s = float(progress_s)
        self.limit = INIT_WATCHDOG_S
        self.last = time.monotonic()

    def observe(self, event: dict) -> None:
        self.last = time.monotonic()
        if "watchdog_s" in event:  # a step that says how long it may stay silent
            self.limit = float(event["watchdog_s"])
        elif event["type"] == "initialised":
            self.limit = self.progress_s + STARTUP_ALLOWANCE_S
        elif event["type"] == "generation":
            self.limit = self.progress_s

    def expired(self) -> bool:
        return time.monotonic() - self.last > self.limit


@dataclass
class ChildExit:
    """How a watched child ended: with a final event it sent (`final`), or stopped by the
    supervisor because it died or went silent (`problem` says which, for the restart log)."""

    final: dict | None = None
    problem: str | None = None


def watch_child(
    target: Callable[..., None],
    args: tuple,
    *,
    watchdog: Watchdog,
    on_event: Callable[[dict], None],
    final: tuple[str, ...],
    what: str = "training process",
) -> ChildExit:
    """Run `target(*args, events)` in a spawned child; pass each event to `on_event` until one
    whose type is in `final` arrives (returned as `ChildExit.final`, the child then joined), or
    the child dies or the watchdog expires (`ChildExit.problem`, the child killed). On
    KeyboardInterrupt the child is stopped (`stop_child`) before the interrupt goes on up."""
    ctx = mp.get_context("spawn")  # never fork a process that may have initialised JAX
    events = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, events), daemon=True)
    proc.start()
    watchdog.restart()
    try:
        while True:
            try:
                event: dict[str, Any] = events.get(timeout=1.0)
            except queue.Empty:
                if not proc.is_alive():
                    problem = f"the {what} died (exit code {proc.exitcode})"
                    break
                if watchdog.expired():
                    problem = f"no progress for {watchdog.limit:.0f} s"
                    break
                continue
            watchdog.observe(event)
            if event["type"] in final:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                return ChildExit(final=event)
            on_event(event)
    except BaseException:
        stop_child(proc, events)
        raise
    proc.kill()
    proc.join()
    check_child_exit(proc.exitcode)  # no restart can help a script without a main guard
    return ChildExit(problem=problem)


def stop_child(proc, events, grace: float = GRACEFUL_STOP_S) -> None:
    """Ask `proc` to stop (SIGTERM) and give it `grace` seconds to finish what it is writing,
    reading (and dropping) its events meanwhile so that it never blocks on a full pipe; then
    kill it. A second Ctrl-C while it finishes kills it at once."""
    try:
        if proc.is_alive():
            proc.terminate()
        deadline = time.monotonic() + grace
        while proc.is_alive() and time.monotonic() < deadline:
            try:
                events.get(timeout=0.2)
            except queue.Empty:
                pass
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()


def stop_gracefully_on_signals() -> None:
    """In a training child: turn the first SIGINT or SIGTERM into KeyboardInterrupt, so the
    child winds down (finishing the checkpoint it is writing), and ignore any later one, which
    would otherwise break off that very clean-up. Ctrl-C reaches the child twice: from the
    terminal (the whole process group) and as the supervisor's SIGTERM."""
    import signal

    def stop(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
