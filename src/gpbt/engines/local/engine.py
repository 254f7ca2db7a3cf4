"""The asynchronous local engine as the main process runs it: scheduling, the store,
checkpoints and the summary (any Python trainable, N worker processes, crash-safe resume).

How a run proceeds
    Every member trains in steps. After each `step()` its worker saves a checkpoint and sends the
    metrics to the main process, which feeds them to the asynchronous driver (the one the Ray
    adapter uses, `gpbt.engines.asynchronous`: a decision only when the member reached its
    perturbation interval), applies the decision and hands the member, or the member furthest
    behind if others wait, the worker again. Only the reporting member changes:
    an exploit points the loser at the donor's latest checkpoint and gives it the new config; the
    next worker to run the loser restores that checkpoint and calls `reset_config`.
    Synchronous schedulers (`pairing = "sync"`, PBT/PB2 with `synch = true`) make members wait
    at each boundary until the whole population arrived, then decide for all of them at once.

Member time
    Each member keeps its own clock of `time_attr`: the sum of the increments its trainable
    reported. After an exploit the loser continues from its own time, not the donor's, so every
    member trains exactly `total_steps` and its reports never go back in time; the raw value the
    trainable reported stays in the report's metrics.

Durability
    After each event (a report and its decision, a fault, a barrier) the main process commits
    one state blob to the experiment store (scheduler `state_dict`, every member's checkpoint,
    config and retry count, and the report/decision rows of the event), and only then writes
    those rows to the report and decision tables. A run killed at any instant resumes from the
    last commit: rows already in the store were committed, so none is re-run or duplicated;
    rows of a commit whose table writes were cut off are re-added from the blob; steps that
    were in flight are simply run again from their member's checkpoint. In deterministic mode
    the blob also holds the simulated clock and the steps in flight with their finishing
    times, so a resumed run delivers its events in the uninterrupted run's order.

Checkpoints
    `FOLDER/checkpoints/m<member>-<serial>-<token>`: a fresh folder per step, renamed into
    place when complete. A checkpoint lives while some member's current state is that
    checkpoint (its own latest, or a donor's it was told to clone and has not yet trained on);
    then it is deleted. Disk use is therefore at most one checkpoint per member plus those in
    flight, and a checkpoint that an exploit may still clone is never deleted.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import secrets
import shutil
import statistics
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpbt.core.schedulers import PopulationScheduler
from gpbt.core.space import Space
from gpbt.engines.asynchronous import AsyncDriver, Step
from gpbt.engines.children import refuse_while_bootstrapping
from gpbt.engines.local.pools import _Event, _ProcessPool, _SimulatedPool
from gpbt.engines.protocol import Engine, Summary, population_mean
from gpbt.engines.runner import run_with
from gpbt.engines.trainable import TrainableError, load_trainable, trainable_name
from gpbt.errors import GpbtError
from gpbt.live_log import LiveLog
from gpbt.options import Option
from gpbt.spec import RunSpec
from gpbt.store import ExperimentStore
from gpbt.store.faults import storage_fault

# The local engine's own config keys (gpbt.spec collects them; docs: docs/local-engine.md).
OPTIONS: dict[str, Option] = {
    "trainable": Option(
        str, help="'module:ClassName', importable from the working directory", nonempty=True
    ),
    "workers": Option(int, 0, "worker processes; 0 = one per core", at_least=0),
    "step_timeout": Option(
        (int, float), 600, "seconds before a step counts as hung; 0 = none", at_least=0
    ),
    "max_failures": Option(int, 2, "restarts of a failing member before it is dropped", at_least=0),
    "trainable_options": Option(dict, {}, "fixed settings passed to every member"),
    "deterministic": Option(bool, False, "one process, simulated clock: bit-identical reruns"),
    "threads_per_worker": Option(
        int, 0, "torch/BLAS threads per worker; 0 = the engine picks", at_least=0
    ),
}
DEFAULTS = {"metric": "episode_reward_mean", "time_attr": "timesteps_total"}

log = logging.getLogger("gpbt.local")

# What a full, over-quota or read-only disk raises: no restart of the member can help.
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)

STATE_KEY = "local_engine"
CHECKPOINTS = "checkpoints"
_STATE_VERSION = 1
# Keys of the config that may differ on resume (another machine, a longer timeout after a
# hang): `gpbt resume FOLDER step_timeout=1200`. The store keeps the first run's values.
RESUME_KEYS = ("workers", "step_timeout", "max_failures", "threads_per_worker")


class AllMembersFailed(GpbtError, RuntimeError):
    """Every member of a local-engine run faulted more than `max_failures` times."""


# =========================================================================== member state


@dataclass
class _Member:
    config: dict[str, Any]  # flat, as the scheduler speaks it
    time: float = 0  # the member's own clock (see the module docstring)
    trainable_time: float | None = None  # time_attr of the trainable state `ckpt` holds
    ckpt: str | None = None  # current state, relative to the folder; None = fresh setup
    epoch: int = 0  # bumped whenever the main process replaces the state (exploit, restart)
    steps: int = 0  # steps since the epoch began; (epoch, steps) names a live state
    status: str = "active"  # active | done | failed
    failures: int = 0
    last_error: str | None = None
    score: float | None = None  # last reported raw score
    exploits: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# =========================================================================== the engine


class LocalEngine:
    """Run a population of trainables under a scheduler, asynchronously, on this machine.

    `trainable`: a class (see `gpbt.engines.trainable.Trainable`) or `"module:ClassName"`.
    `scheduler`: any `PopulationScheduler` (build one with `gpbt.core.methods.make_scheduler`;
    give it `max_time=total_steps` so that it records each member's stop).
    `workers`: worker processes (default: the number of cores, at most the population).
    `step_timeout`: seconds one task (restore/setup + step + save) may take before its worker is
    killed. `max_failures`: restarts from the last checkpoint a member gets; one more fault
    marks it failed. `trainable_options`: fixed settings merged under every member's
    hyperparameters. `deterministic=True` runs everything in this process on a simulated clock;
    `sim_duration(member, metrics)` then gives a step's simulated seconds (default: the step's
    increment of `time_attr`, so a member with a bigger batch is slower). `progress(event)` is
    called with a dict for every report, decision and fault (its `type` says which).
    `live_log` (see `gpbt.live_log`) gets every report and decision row as it is written to
    the store.
    """

    def __init__(
        self,
        trainable: type | str,
        scheduler: PopulationScheduler,
        folder: str | os.PathLike,
        *,
        population: int,
        total_steps: float | None = None,
        time_attr: str = "timesteps_total",
        metric: str = "episode_reward_mean",
        workers: int | None = None,
        step_timeout: float | None = None,
        max_failures: int = 2,
        trainable_options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        deterministic: bool = False,
        sim_duration: Callable[[int, dict[str, Any]], float] | None = None,
        threads_per_worker: int | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        store_config: Mapping[str, Any] | None = None,
        live_log: LiveLog | None = None,
    ):
        # a worker re-running its parent's unguarded script lands here before any folder check
        refuse_while_bootstrapping()
        self.trainable_spec = trainable
        self.trainable_cls = load_trainable(trainable)
        self.scheduler = scheduler
        self.folder = Path(folder)
        if int(population) < 1:
            raise ValueError(f"population = {population}: need at least 1 member")
        self.population = int(population)
        if total_steps is None:
            total_steps = scheduler.max_time
        if total_steps is None or not total_steps > 0:
            raise ValueError(
                f"total_steps = {total_steps}: give each member's budget in units of "
                f"time_attr ({time_attr!r}), e.g. total_steps = 1_000_000"
            )
        self.total_steps = total_steps
        self.time_attr, self.metric = str(time_attr), str(metric)
        cores = os.cpu_count() or 1
        workers = cores if workers is None else int(workers)
        if workers < 1:
            raise ValueError(f"workers = {workers}: need at least 1 worker process")
        self.workers = min(workers, self.population)
        if step_timeout is not None and not step_timeout > 0:
            raise ValueError(f"step_timeout = {step_timeout}: must be > 0 seconds (or unset)")
        self.step_timeout = None if step_timeout is None else float(step_timeout)
        if int(max_failures) < 0:
            raise ValueError(f"max_failures = {max_failures}: must be >= 0")
        self.max_failures = int(max_failures)
        self.trainable_options = dict(trainable_options or {})
        self.seed = scheduler.seed if seed is None else int(seed)
        self.deterministic = bool(deterministic)
        self.sim_duration = sim_duration
        self.threads = threads_per_worker or max(1, cores // self.workers)
        self.progress = progress
        self.live_log = live_log
        self.store_config = dict(store_config) if store_config is not None else None
        self.sync = bool(scheduler.synchronous)
        # when a result reaches the scheduler and who waits for a generation: decided there
        self.driver = AsyncDriver(scheduler)

        self.members: dict[int, _Member] = {}
        self.ckpts: dict[str, dict[str, Any]] = {}  # live checkpoint -> its facts
        self.next_ckpt = 0
        self.exploits = 0
        self.failed: dict[int, str] = {}
        self.running: dict[int, int] = {}  # member -> worker
        self.token = secrets.token_hex(3)
        self.stats: dict[str, list[float]] = {
            k: []
            for k in (
                "report_to_step_s",
                "decide_s",
                "step_s",
                "step_cpu_s",
                "save_s",
                "save_bytes",
                "exploit_restore_s",
                "exploit_bytes",
            )
        }
        self._received: dict[int, float] = {}
        self._after_exploit: set[int] = set()
        self._warned: set[str] = set()
        self._after_commit: Callable[[], None] | None = None  # tests: simulate a kill here
        self.store: ExperimentStore | None = None
        self.pool: _ProcessPool | _SimulatedPool | None = None
        self._simulation: dict[str, Any] | None = None  # the simulated pool a resume continues

    # ------------------------------------------------------------------ lifecycle
    def run(self, resume: bool = False):
        """Run (or, with `resume=True`, continue) the experiment; return its `Summary`."""
        t0, c0 = _time.monotonic(), _time.process_time()
        self.store = ExperimentStore(self.folder)
        try:
            self._open(resume)
            if any(m.status == "active" for m in self.members.values()):
                self.pool = self._make_pool()
                try:
                    self._loop()
                except BaseException:
                    self.pool.close(abort=True)
                    raise
                self.pool.close()
            self._sweep()
            if self.failed and len(self.failed) == self.population:
                raise self._all_failed()
            summary = self.summary(wall_seconds=_time.monotonic() - t0)
            summary["main_cpu_seconds"] = _time.process_time() - c0
            return Summary.from_dict(summary)
        finally:
            self.store.close()

    def _all_failed(self) -> AllMembersFailed:
        first = min(self.failed)
        others = len(self.failed) - 1
        return AllMembersFailed(
            f"every member failed, so this run has no result: member {first}: "
            f"{self.failed[first]}"
            + (f" (and {others} more; each traceback is in the log above)" if others else "")
            + f"; fix the trainable and start a new run in another folder (the faults are "
            f"recorded in {self.folder})"
        )

    def _make_pool(self):
        cache = max(1, math.ceil(self.population / self.workers))
        if self.deterministic:
            pool = _SimulatedPool(
                self.workers,
                self.trainable_cls,
                cache_size=cache,
                step_timeout=self.step_timeout,
                duration=self._duration,
            )
            sim = self._simulation
            if sim is not None and sim.get("workers") == self.workers:
                # the clock and the steps in flight at the last commit: the resumed run's
                # events follow in the order the uninterrupted run's did (with other
                # `workers` there is no such order to follow: the steps are dispatched anew)
                self.running = pool.restore(self._with_tasks(sim, self._absolute))
            return pool
        return _ProcessPool(
            self.workers,
            self.trainable_spec,
            threads=self.threads,
            cache_size=cache,
            step_timeout=self.step_timeout,
        )

    def _duration(self, task: dict[str, Any], metrics: dict[str, Any]) -> float:
        if self.sim_duration is not None:
            return float(self.sim_duration(task["member"], metrics))
        t = metrics.get(self.time_attr)
        base = task.get("base_time") or 0
        if _is_number(t):
            return max(float(t) - float(base), 0.0)
        return 1.0

    def _open(self, resume: bool) -> None:
        store = self.store
        stored_config = store.read_config()
        state = store.get_state(STATE_KEY)
        if resume and stored_config is None and state is None:
            raise FileNotFoundError(
                f"nothing to resume in {self.folder}: it holds no gpbt run; start one with "
                "gpbt run CONFIG (or resume=False)"
            )
        if not resume and state is not None:
            raise FileExistsError(
                f"{self.folder} already holds a local-engine run; continue it with "
                f"`gpbt resume {self.folder}` (resume=True) or choose a new folder"
            )
        config = self.store_config if self.store_config is not None else self._describe()
        if stored_config is not None:
            config = dict(config)
            for k in RESUME_KEYS:
                if k in stored_config:
                    config[k] = stored_config[k]
                else:
                    config.pop(k, None)
        store.write_config(config)
        (self.folder / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        if state is None:
            configs = self.scheduler.initial_population(self.population)
            self.members = {i: _Member(config=c) for i, c in enumerate(configs)}
            self._commit([], [])
        else:
            self._load(state)
            pending = state.get("pending") or {}
            # the last commit's rows, in case the kill came before they reached their tables;
            # rows that did are left as they are (their wall time and commit order are facts)
            if pending.get("reports"):
                store.add_reports(pending["reports"], keep_existing=True)
            if pending.get("decisions"):
                store.add_decisions(pending["decisions"], keep_existing=True)
            log.info("resumed %s from its last commit", self.folder)
        self._sweep()

    def _describe(self) -> dict[str, Any]:
        return {
            "engine": "local",
            "trainable": trainable_name(self.trainable_spec),
            "population": self.population,
            "total_steps": self.total_steps,
            "time_attr": self.time_attr,
            "metric": self.metric,
            "seed": self.seed,
            "trainable_options": self.trainable_options,
            "scheduler": self.scheduler.describe(),
        }

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"{self.folder}: local-engine state version {state.get('version')} is not "
                f"{_STATE_VERSION}; resume it with the gpbt version that wrote it"
            )
        if int(state["population"]) != self.population:
            raise ValueError(
                f"{self.folder} holds a population of {state['population']}, not "
                f"{self.population}; resume with the original config"
            )
        self.scheduler.load_state_dict(state["scheduler"])
        self.members = {}
        for k, v in state["members"].items():
            v = dict(v)
            st = self.members[int(k)] = _Member(**{f: x for f, x in v.items() if f != "waiting"})
            if v.get("waiting"):  # at a synchronous barrier when the state was committed
                self.driver.arrivals[int(k)] = (st.time, st.score)
        self.ckpts = dict(state["ckpts"])
        self.next_ckpt = int(state["next_ckpt"])
        self.exploits = int(state["exploits"])
        self.failed = {int(k): v for k, v in state["failed"].items()}
        self._simulation = state.get("simulation")

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        pool = self.pool
        while True:
            self._dispatch()
            if pool.busy() == 0:
                if self.sync and self._barrier():
                    continue
                if not self._runnable():
                    break
            for event in pool.wait():
                if event.kind == "result":
                    self._on_result(event)
                else:
                    self._on_fault(event)

    def _runnable(self) -> list[int]:
        return [
            m
            for m, st in self.members.items()
            if st.status == "active" and m not in self.running and not self.driver.waiting(m)
        ]

    def _dispatch(self) -> None:
        for w in self.pool.idle():
            candidates = self._runnable()
            if not candidates:
                return
            last = self.pool.last_worker
            # The member furthest behind runs next; among equals, one this worker holds alive.
            m = min(candidates, key=lambda i: (self.members[i].time, last.get(i) != w, i))
            self._submit(w, m)

    def _submit(self, worker: int, m: int) -> None:
        st = self.members[m]
        name = f"m{m}-{self.next_ckpt:06d}-{self.token}"
        self.next_ckpt += 1
        task = {
            "member": m,
            "epoch": st.epoch,
            "steps": st.steps,
            "ckpt": None if st.ckpt is None else str(self.folder / st.ckpt),
            "config": self._member_config(st.config),
            "seed": _member_seed(self.seed, m),
            "save_to": str(self.folder / CHECKPOINTS / name),
            "base_time": st.trainable_time,
        }
        self.running[m] = worker
        self.pool.submit(worker, task)

    def _member_config(self, flat: dict[str, Any]) -> dict[str, Any]:
        return Space.nest(flat, into=self.trainable_options)

    # ------------------------------------------------------------------ events
    def _on_result(self, ev: _Event) -> None:
        t_recv = _time.monotonic()
        m, p = ev.member, ev.payload
        st = self.members[m]
        self.running.pop(m, None)
        metrics = p["metrics"]
        for key in p["dropped"]:
            if key not in self._warned:
                self._warned.add(key)
                log.warning("metric %r is not a number or string; it is not recorded", key)
        for key, what in ((self.metric, "metric"), (self.time_attr, "time_attr")):
            if key not in metrics:
                raise TrainableError(
                    f"member {m}: step() returned no {key!r} (the {what}); it returned "
                    f"{sorted(metrics)}. Return {key!r} from step(), or set {what} = "
                    "to one of those keys in the config"
                )
        raw_t = metrics[self.time_attr]
        if not _is_number(raw_t) or not math.isfinite(float(raw_t)):
            raise TrainableError(
                f"member {m}: {self.time_attr!r} = {raw_t!r} is not a finite number; "
                "time_attr must count progress, e.g. environment steps"
            )
        prev = st.trainable_time if st.trainable_time is not None else 0
        if not raw_t > prev:
            raise TrainableError(
                f"member {m}: {self.time_attr!r} went from {prev} to {raw_t}; it must grow "
                "with every step. Save and restore the counter with the checkpoint (after "
                "an exploit the loser continues from the donor's value)"
            )
        score = metrics[self.metric]
        if score is None:
            score = math.nan
        if not _is_number(score):
            raise TrainableError(
                f"member {m}: the metric {self.metric!r} = {score!r} is not a number"
            )
        score = float(score)
        st.time = st.time + (raw_t - prev)
        st.trainable_time = raw_t
        st.score = score
        st.steps += 1
        released = [st.ckpt]
        st.ckpt = os.path.relpath(ev.task["save_to"], self.folder)
        self.ckpts[st.ckpt] = {
            "member": m,
            "time": st.time,
            "trainable_time": raw_t,
            "bytes": p["bytes"],
        }
        report = {
            "member": m,
            "time": st.time,
            "score": score,
            "metrics": metrics,
            "config": dict(st.config),
        }
        events = [
            {
                "type": "report",
                "member": m,
                "time": st.time,
                "score": score,
                "config": dict(st.config),
                "metrics": metrics,
            }
        ]
        self._record_stats(m, p, t_recv)  # before _apply: it may flag m's *next* step
        records, more = self._apply(self.driver.on_result(m, st.time, score), released)
        events += more
        if st.status == "active" and st.time >= self.total_steps:
            # A scheduler built without max_time: the engine still enforces the budget.
            st.status = "done"
            self.driver.leave(m)
            self.pool.drop(m)
        self._commit([report], records)
        self._release(released)
        self.stats["decide_s"].append(_time.monotonic() - t_recv)
        if self.sync:
            self._barrier()
        self._emit(events)

    def _apply(
        self, step: Step, released: list[str | None]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        # a donor's state is its latest checkpoint (every step saves one)
        sources = step.snapshot(lambda donor: self.members[donor].ckpt)
        records, events = [], []
        for m, d in step.decisions.items():
            st = self.members[m]
            rec = None if d.record is None else d.record.to_dict()
            if d.kind == "exploit":
                src = sources[d.donor]
                if src is None:
                    raise RuntimeError(
                        f"member {d.donor} was chosen as donor for member {m} but has no "
                        "checkpoint yet (a scheduler bug: donors must have reported)"
                    )
                released.append(st.ckpt)
                st.ckpt = src
                st.trainable_time = self.ckpts[src]["trainable_time"]
                st.config = dict(d.config)
                st.epoch += 1
                st.steps = 0
                if d.donor != m:  # a member copying itself: a fixed schedule's config change
                    st.exploits += 1
                    self.exploits += 1
                self._after_exploit.add(m)
                self.stats["exploit_bytes"].append(self.ckpts[src]["bytes"])
                if rec is not None:
                    rec["checkpoint"] = src
            elif d.kind == "stop":
                st.status = "done"
                self.pool.drop(m)
            if rec is not None:
                records.append(rec)
                events.append(
                    {
                        "type": d.kind,
                        "member": m,
                        "time": rec["time"],
                        "score": st.score,
                        "config": dict(st.config),
                        "donor": rec.get("donor"),
                        "partner": rec.get("partner"),
                    }
                )
        return records, events

    def _barrier(self) -> bool:
        """Synchronous schedulers: decide for the generation once every active member waits."""
        step = self.driver.generation(m for m, st in self.members.items() if st.status == "active")
        if step is None:
            return False
        released: list[str | None] = []
        records, events = self._apply(step, released)
        self._commit([], records)
        self._release(released)
        self._emit(events)
        return True

    def _on_fault(self, ev: _Event) -> None:
        m = ev.member
        st = self.members[m]
        self.running.pop(m, None)
        for path in (ev.task.get("save_to"),):
            if path:
                shutil.rmtree(path, ignore_errors=True)
                shutil.rmtree(path + ".tmp", ignore_errors=True)
        error = ev.payload.get("error", ev.kind)
        if ev.payload.get("fatal"):
            # the message names the member and the fix; the traceback would point into gpbt
            raise TrainableError(ev.payload.get("message") or f"member {m}: {error}")
        where = ev.payload.get("phase")
        disk = self._disk_fault(m, ev.payload)
        if disk is not None:
            raise disk
        detail = ev.payload.get("traceback") or ""
        st.failures += 1
        st.last_error = f"{ev.kind}{' in ' + where if where else ''}: {error}"
        released: list[str | None] = []
        if st.failures > self.max_failures:
            st.status = "failed"
            self.driver.leave(m)
            self.failed[m] = st.last_error
            self.scheduler.mark_failed(m)
            released.append(st.ckpt)
            st.ckpt = None
            kind = "failed"
            log.error(
                "member %d failed %d times and is given up (last: %s)\n%s",
                m,
                st.failures,
                st.last_error,
                detail,
            )
        else:
            st.epoch += 1  # restart from its checkpoint: no live object is trusted any more
            st.steps = 0
            kind = "restart"
            log.warning(
                "member %d: %s; restarting it from its last checkpoint (fault %d of %d allowed)"
                "\n%s",
                m,
                st.last_error,
                st.failures,
                self.max_failures,
                detail,
            )
        self.pool.drop(m)
        self._commit([], [])
        self._release(released)
        if self.sync:
            self._barrier()
        self._emit(
            [
                {
                    "type": kind,
                    "member": m,
                    "time": st.time,
                    "score": st.score,
                    "config": dict(st.config),
                    "error": st.last_error,
                    "cause": ev.kind,
                }
            ]
        )

    def _disk_fault(self, m: int, payload: dict[str, Any]) -> Exception | None:
        """A step that failed because the disk is full or read-only fails every member the
        same way: the run stops with one line instead of failing members one by one."""
        code = payload.get("errno")
        if code not in _DISK_ERRNOS and not (
            payload.get("phase") == "save" and code in (errno.EACCES, errno.EPERM)
        ):
            return None
        err = OSError(code, os.strerror(code), payload.get("filename"))
        phase = payload.get("phase") or "step"
        doing = f"saving member {m}'s checkpoint" if phase == "save" else f"member {m}'s {phase}"
        return storage_fault(err, self.folder, doing)

    # ------------------------------------------------------------------ persistence
    def _commit(self, reports: list[dict], decisions: list[dict]) -> None:
        state = {
            "version": _STATE_VERSION,
            "population": self.population,
            "scheduler": self.scheduler.state_dict(),
            "members": {
                str(m): {**st.to_dict(), "waiting": self.driver.waiting(m)}
                for m, st in self.members.items()
            },
            "ckpts": self.ckpts,
            "next_ckpt": self.next_ckpt,
            "exploits": self.exploits,
            "failed": {str(k): v for k, v in self.failed.items()},
            "finished": not any(st.status == "active" for st in self.members.values()),
            "pending": {"reports": reports, "decisions": decisions},
            "simulation": (
                self._with_tasks(self.pool.snapshot(), self._relative)
                if isinstance(self.pool, _SimulatedPool)
                else None
            ),
        }
        self.store.set_state(STATE_KEY, state)
        if self._after_commit is not None:
            self._after_commit()
        if reports:
            self.store.add_reports(reports)
        if decisions:
            self.store.add_decisions(decisions)
        if self.live_log is not None:
            self.live_log.log_reports(reports)
            self.live_log.log_decisions(decisions)

    def _relative(self, path: str | None) -> str | None:
        return None if path is None else os.path.relpath(path, self.folder)

    def _absolute(self, path: str | None) -> str | None:
        return None if path is None else str(self.folder / path)

    @staticmethod
    def _with_tasks(simulation: dict[str, Any], where: Callable) -> dict[str, Any]:
        """`simulation` with its tasks' paths passed through `where`: stored relative to the
        folder, so a moved folder resumes in its new place."""
        in_flight = [
            [
                t,
                seq,
                worker,
                {**task, "ckpt": where(task["ckpt"]), "save_to": where(task["save_to"])},
            ]
            for t, seq, worker, task in simulation["in_flight"]
        ]
        return {**simulation, "in_flight": in_flight}

    def _referenced(self) -> set[str]:
        return {st.ckpt for st in self.members.values() if st.ckpt is not None}

    def _release(self, paths: list[str | None]) -> None:
        """Delete checkpoints no member's state points at any more (after the commit that
        stopped pointing at them, so a crash never leaves a reference to a deleted folder)."""
        live = self._referenced()
        for path in paths:
            if path is None or path in live:
                continue
            self.ckpts.pop(path, None)
            shutil.rmtree(self.folder / path, ignore_errors=True)

    def _sweep(self) -> None:
        """Remove checkpoint folders no committed state refers to (left by a killed run)."""
        root = self.folder / CHECKPOINTS
        if not root.is_dir():
            return
        live = self._referenced()
        for child in root.iterdir():  # runs only while no worker is running
            if os.path.relpath(child, self.folder) not in live:
                shutil.rmtree(child, ignore_errors=True)
        self.ckpts = {k: v for k, v in self.ckpts.items() if k in live}

    # ------------------------------------------------------------------ reporting
    def _emit(self, events: list[dict[str, Any]]) -> None:
        if self.progress is None:
            return
        clock = self.pool.now() if self.pool is not None else 0.0
        for e in events:
            e["clock"] = clock
            self.progress(e)

    def _record_stats(self, m: int, p: dict[str, Any], t_recv: float) -> None:
        s = self.stats
        if m in self._received and not self.deterministic:
            s["report_to_step_s"].append(p["t_start"] - self._received[m])
        self._received[m] = t_recv
        s["step_s"].append(p["step_s"])
        s["step_cpu_s"].append(p["cpu_s"])
        s["save_s"].append(p["save_s"])
        s["save_bytes"].append(p["bytes"])
        if m in self._after_exploit:
            self._after_exploit.discard(m)
            s["exploit_restore_s"].append(p["prepare_s"])

    def summary(self, wall_seconds: float | None = None) -> dict[str, Any]:
        """Best member, its score, exploits and failures, and each member's final state."""
        sign = 1 if self.scheduler.mode == "max" else -1
        best, best_score = None, None
        for m, st in sorted(self.members.items()):
            if st.status == "failed" or st.score is None or not math.isfinite(st.score):
                continue
            if best_score is None or sign * st.score > sign * best_score:
                best, best_score = m, st.score
        stats = {}
        for k, v in self.stats.items():
            if v:
                stats[k] = {
                    "n": len(v),
                    "mean": statistics.fmean(v),
                    "median": statistics.median(v),
                    "max": max(v),
                }
        return {
            "engine": "local",
            "folder": str(self.folder),
            "method": self.scheduler.method,
            "best_member": best,
            "best_score": best_score,
            "score_basis": f"last reported {self.metric}",
            "population_mean": population_mean(
                {m: st.score for m, st in self.members.items() if st.status != "failed"}
            ),
            "best_config": None if best is None else dict(self.members[best].config),
            "final_configs": [dict(self.members[m].config) for m in sorted(self.members)],
            "exploits": self.exploits,
            "failed_members": sorted(self.failed),
            "failures": {m: e for m, e in sorted(self.failed.items())},
            "finished": not any(st.status == "active" for st in self.members.values()),
            "members": {
                m: {
                    "time": st.time,
                    "score": st.score,
                    "status": st.status,
                    "config": dict(st.config),
                    "checkpoint": st.ckpt,
                    "faults": st.failures,
                    "exploits": st.exploits,
                }
                for m, st in sorted(self.members.items())
            },
            "wall_seconds": wall_seconds,
            "stats": stats,
        }


# =========================================================================== helpers


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def _member_seed(seed: int, member: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(member)]).generate_state(1)[0] % (2**31))


# =========================================================================== the CLI hook


def run_local(
    spec,
    folder: str | os.PathLike,
    *,
    resume: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
):
    """Run (or resume) an experiment on the local engine and return its `Summary`
    (`run_engine` with this engine); the folder is locked while it runs. `spec` is a
    `RunSpec` (a plain config dict is validated into one): the shared keys plus `OPTIONS`
    above (`trainable = "module:ClassName"`, `workers`, `step_timeout`, `max_failures`,
    `trainable_options`, `deterministic`, `threads_per_worker`). `checkpoint_interval` is
    stored, not used: the local engine checkpoints after every step. `on_event`, if given,
    gets a dict per report."""
    return run_with(ENGINE, spec, folder, resume=resume, on_event=on_event)


def _prepare(spec: RunSpec, folder: Path, *, resume: bool, on_event, supervise: bool):
    """The engine, built (and its arguments checked) before the folder is locked; the run
    writes the live log through it."""
    engine_obj = LocalEngine(
        spec["trainable"],
        spec.scheduler(max_time=spec.total_steps),
        folder,
        population=spec.population,
        total_steps=spec.total_steps,
        time_attr=spec.time_attr,
        metric=spec.metric,
        workers=spec["workers"] or None,  # 0 (the default): all cores
        step_timeout=spec["step_timeout"] or None,
        max_failures=int(spec["max_failures"]),
        trainable_options=spec["trainable_options"],
        seed=spec.seed,
        deterministic=bool(spec["deterministic"]),
        threads_per_worker=spec["threads_per_worker"] or None,
        progress=on_event,
        store_config=spec.to_dict(),
    )

    def run(live_log: LiveLog | None):
        engine_obj.live_log = live_log.open() if live_log is not None else None
        return engine_obj.run(resume=resume)

    return run


ENGINE = Engine(
    "local",
    options=OPTIONS,
    defaults=DEFAULTS,
    prepare=_prepare,
    resume_keys=RESUME_KEYS,
    supports=("export", "retrain", "replay"),
    driver="asynchronous",
    weights="trainable",
)
