"""What runs inside a local-engine worker process: the loop that receives a member's step,
runs it on a (cached) trainable, checkpoints it and sends the metrics back.

The main process starts workers with `_worker_main` (`gpbt.engines.local.worker._worker_main`);
the deterministic mode runs the same `_Runner` in-process. Every worker process imports this
module, so it imports only what a worker uses: never the store, pandas or the scheduler core.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import sys
import time as _time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gpbt.engines.children import die_with_parent
from gpbt.engines.trainable import TrainableError, clean_metrics, load_trainable

# The engine's logger name, kept so logging configured for "gpbt.local" still applies here.
log = logging.getLogger("gpbt.local")


@dataclass
class _Live:
    obj: Any
    epoch: int
    steps: int


class _Runner:
    """Runs members' steps inside one worker, keeping recently run trainables alive so that a
    member that stays on its worker (the usual case) never goes through its checkpoint."""

    def __init__(self, cls: type, cache_size: int):
        self.cls = cls
        self.cache_size = max(1, int(cache_size))
        self.cache: OrderedDict[int, _Live] = OrderedDict()

    def run(self, task: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        member = task["member"]
        t_recv = _time.monotonic()
        phase = "setup/restore"
        live = self.cache.pop(member, None)
        obj = None if live is None else live.obj
        try:
            how = "cached"
            if live is None or (live.epoch, live.steps) != (task["epoch"], task["steps"]):
                obj, how, phase = self._prepare(live, task)
            t_start = _time.monotonic()
            c_start = _time.process_time()
            phase = "step"
            raw = obj.step()
            t_end = _time.monotonic()
            metrics, dropped = clean_metrics(raw, member)
            phase = "save"
            target = task["save_to"]
            tmp = target + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            obj.save(tmp)
            os.replace(tmp, target)
            t_saved = _time.monotonic()
            cpu = _time.process_time() - c_start
            nbytes = _folder_bytes(target)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            if obj is not None:
                _quiet_cleanup(obj)
            return "error", {
                "member": member,
                "phase": phase,
                "error": f"{type(e).__name__}: {e}",
                # a broken API contract names the member and the fix itself: sent as it is
                "message": str(e) if isinstance(e, TrainableError) else None,
                # lets the engine tell a full or read-only disk (no retry helps) from a fault
                "errno": e.errno if isinstance(e, OSError) else None,
                "filename": getattr(e, "filename", None),
                "traceback": traceback.format_exc(),
                "fatal": isinstance(e, TrainableError),
            }
        self.cache[member] = _Live(obj, task["epoch"], task["steps"] + 1)
        while len(self.cache) > self.cache_size:
            _, old = self.cache.popitem(last=False)
            _quiet_cleanup(old.obj)
        return "result", {
            "member": member,
            "metrics": metrics,
            "dropped": dropped,
            "how": how,
            "t_recv": t_recv,
            "t_start": t_start,
            "t_end": t_end,
            "prepare_s": t_start - t_recv,
            "step_s": t_end - t_start,
            "save_s": t_saved - t_end,
            "cpu_s": cpu,  # step + save, this worker process's CPU time
            "bytes": nbytes,
        }

    def _prepare(self, live: _Live | None, task: dict[str, Any]) -> tuple[Any, str, str]:
        """Bring the member's state into a live trainable: (object, how, phase done last)."""
        ckpt, config = task["ckpt"], task["config"]
        if live is not None and ckpt is not None:
            obj = live.obj
            if live.epoch == task["epoch"]:
                # Same hyperparameters, an older state of this member: load its latest.
                obj.restore(ckpt)
                return obj, "restored", "restore"
            # Weights first, hyperparameters second, so the new values are the ones that stay.
            obj.restore(ckpt)
            if obj.reset_config(config):
                obj.config = config
                return obj, "reset", "reset_config"
            _quiet_cleanup(obj)
        elif live is not None:
            _quiet_cleanup(live.obj)
        obj = self.cls()
        obj.config = config
        obj.member = task["member"]
        obj.seed = task["seed"]
        obj.setup(config)
        if ckpt is None:
            return obj, "setup", "setup"
        obj.restore(ckpt)
        return obj, "rebuilt", "restore"

    def drop(self, member: int) -> None:
        live = self.cache.pop(member, None)
        if live is not None:
            _quiet_cleanup(live.obj)

    def close(self) -> None:
        while self.cache:
            _, live = self.cache.popitem()
            _quiet_cleanup(live.obj)


def _quiet_cleanup(obj: Any) -> None:
    try:
        cleanup = getattr(obj, "cleanup", None)
        if callable(cleanup):
            cleanup()
    except Exception:  # a broken cleanup must not take the worker down with it
        log.debug("cleanup() raised", exc_info=True)


def _folder_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def _worker_main(conn, blob: bytes, sys_path: list[str], threads: int, cache_size: int) -> None:
    # A worker orphaned by a killed runner would otherwise finish its step and write into the
    # experiment folder while the resumed run is using it.
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    for p in reversed(sys_path):
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        spec = pickle.loads(blob)
        cls = load_trainable(spec)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    except BaseException as e:
        conn.send(
            ("fatal", {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        )
        return
    runner = _Runner(cls, cache_size)
    conn.send(("ready", {"pid": os.getpid()}))
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "run":
                conn.send(runner.run(msg[1]))
            elif msg[0] == "drop":
                runner.drop(msg[1])
            elif msg[0] == "close":
                break
    finally:
        runner.close()
