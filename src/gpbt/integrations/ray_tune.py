"""GPBT-PL (and gpbt's PBT, PB2, random search) as a Ray Tune trial scheduler.

Ray is the distributed engine: Tune starts, pauses, checkpoints and restores trials; this
adapter only turns Tune's callbacks into the core's ask/tell calls and carries out what the
core decides. So the same seeded core decides on one laptop (local engine) and on a cluster.

    from ray import tune
    from gpbt.integrations.ray_tune import GPBTScheduler
    from gpbt.core.space import Float

    sched = GPBTScheduler("gpbt-pl", {"lr": Float(1e-4, 1e-1, log=True)},
                          time_attr="training_iteration", perturbation_interval=5,
                          max_time=50, store="runs/exp1")
    tune.Tuner(trainable, tune_config=tune.TuneConfig(
        scheduler=sched, metric="score", mode="max", num_samples=8)).fit()

Ray internals this module relies on (checked by `check_ray_internals()` when a scheduler is
built; a Ray release that drops one fails loudly there and in tests/test_ray_tune.py):

- `TuneController._schedule_trial_save(trial, result=)` returning a `_FutureTrainingResult`
  (`ray.train._internal.session`) whose `resolve()` blocks until the save is done,
- `TuneController.pause_trial(trial, should_checkpoint=False)`,
- `trial.run_metadata.checkpoint_manager._latest_checkpoint_result`, which Tune restores a
  trial from when it starts again (set to the donor's `_TrainingResult` on exploit),
- `trial.temporary_state.saving_to`, `trial.checkpoint`, `trial.set_config`,
  `TrialScheduler.NOOP`.
Ray's own PopulationBasedTraining uses the same ones (ray/tune/schedulers/pbt.py), so they
tend to move together with it.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import os
import re
import sys
import time as _time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import ray
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler
except ImportError as _err:  # pragma: no cover - exercised only without ray installed
    raise ImportError(
        "gpbt.integrations.ray_tune needs Ray Tune, which is an optional extra of gpbt: "
        "pip install 'gpbt[ray]' (or 'gpbt[rllib]' for the RLlib examples)"
    ) from _err

from gpbt.core.decisions import Decision, Exploit, Stop
from gpbt.core.methods import make_scheduler
from gpbt.core.schedulers import PopulationScheduler
from gpbt.core.space import Space, to_plain
from gpbt.engines.protocol import Summary, population_mean
from gpbt.imports import import_object
from gpbt.live_log import LiveLog, open_live_log
from gpbt.options import OPTIONAL, Option
from gpbt.spec import RunSpec
from gpbt.store import ExperimentStore

# The Ray engine's own config keys for `gpbt run` (gpbt.spec collects them; docs: docs/ray.md).
OPTIONS: dict[str, Option] = {
    "trainable": Option(str, help="'module:function', 'module:Class' or 'rllib:PPO'"),
    "address": Option(str, "", "an existing cluster; empty: gpbt starts Ray locally"),
    "env": Option(str, "", "the environment of an rllib:* trainable"),
    "param_space": Option(dict, {}, "fixed values every trial gets"),
    "rllib": Option(dict, {}, "AlgorithmConfig settings of an rllib:* trainable"),
    "num_cpus": Option(int, OPTIONAL, "CPUs of a locally started Ray"),
    "resources_per_trial": Option(dict, OPTIONAL, "e.g. { cpu = 1 }"),
    "num_to_keep": Option(int, OPTIONAL, "checkpoints kept per trial (default: all)"),
    "reuse_actors": Option(bool, OPTIONAL, "default: true for functions and reset_config"),
    "store_metrics": Option(list, OPTIONAL, "extra result keys kept in the experiment store"),
}
DEFAULTS = {"metric": "episode_reward_mean", "time_attr": "training_iteration"}


def check_config(cfg: dict[str, Any]) -> None:
    """What the Ray engine needs beyond the key types (called by RunSpec.from_config)."""
    from gpbt.errors import ConfigError

    if cfg["method"] == "default":
        # Tune samples every trial's config from param_space before a scheduler sees it, so
        # "no search" cannot be imposed from the scheduler side.
        raise ConfigError(
            "method = 'default' runs with the vector and local engines; with Ray Tune, train "
            "the untuned agent by leaving the hyperparameters out of param_space instead"
        )


__all__ = [
    "GPBTScheduler",
    "RayCompatibilityError",
    "TESTED_RAY",
    "check_ray_internals",
    "run_ray",
]

logger = logging.getLogger(__name__)

# The Ray releases the adapter was tested against (tests/test_ray_tune.py on real Ray). Any
# other release gets a warning, not a refusal: the internals check below is what really
# decides whether it can work.
TESTED_RAY = ("2.60",)


class RayCompatibilityError(RuntimeError):
    """This Ray release lacks an internal the adapter needs."""


_internals_ok = False


def check_ray_internals() -> None:
    """Fail loudly, naming the internal, when Ray changed something the adapter uses."""
    global _internals_ok
    if _internals_ok:
        return
    problems = []
    try:
        from ray.train._internal.session import _FutureTrainingResult, _TrainingResult

        if not callable(getattr(_FutureTrainingResult, "resolve", None)):
            problems.append("_FutureTrainingResult.resolve()")
        params = inspect.signature(_TrainingResult).parameters
        if not {"checkpoint", "metrics"} <= set(params):
            problems.append("_TrainingResult(checkpoint=, metrics=)")
    except ImportError:
        problems.append("ray.train._internal.session._TrainingResult/_FutureTrainingResult")
    try:
        from ray.tune.execution.tune_controller import TuneController

        for name in ("_schedule_trial_save", "pause_trial", "get_trials", "get_live_trials"):
            if not callable(getattr(TuneController, name, None)):
                problems.append(f"TuneController.{name}")
        if "should_checkpoint" not in inspect.signature(TuneController.pause_trial).parameters:
            problems.append("TuneController.pause_trial(should_checkpoint=)")
        wrapped = inspect.getsource(TuneController._wrapped)
        for name in ("_schedule_trial_save", "pause_trial"):
            if f'"{name}"' not in wrapped:
                problems.append(f"{name} on the scheduler's TuneController whitelist")
    except (ImportError, OSError, TypeError):
        problems.append("ray.tune.execution.tune_controller.TuneController")
    try:
        from ray.train._internal.checkpoint_manager import _CheckpointManager

        if "_latest_checkpoint_result" not in inspect.getsource(_CheckpointManager):
            problems.append("_CheckpointManager._latest_checkpoint_result")
    except (ImportError, OSError, TypeError):
        problems.append("ray.train._internal.checkpoint_manager._CheckpointManager")
    for name in ("set_config", "set_experiment_tag", "checkpoint", "temporary_state"):
        if not hasattr(Trial, name) and name != "temporary_state":
            problems.append(f"Trial.{name}")
    if "temporary_state" not in inspect.getsource(Trial.__init__):
        problems.append("Trial.temporary_state")
    if getattr(TrialScheduler, "NOOP", None) is None:
        problems.append("TrialScheduler.NOOP")
    if problems:
        raise RayCompatibilityError(
            f"gpbt's Ray Tune adapter cannot work with ray {ray.__version__}: missing "
            f"{', '.join(problems)}. It was tested with ray {', '.join(TESTED_RAY)}; install "
            f"a supported release (pip install 'gpbt[ray]') or report this so the adapter "
            "can follow Ray."
        )
    _internals_ok = True
    major_minor = ".".join(ray.__version__.split(".")[:2])
    if major_minor not in TESTED_RAY:
        warnings.warn(
            f"gpbt's Ray Tune adapter was tested with ray {', '.join(TESTED_RAY)}, this is "
            f"ray {ray.__version__}; its internals check passed, but run "
            "tests/test_ray_tune.py before trusting results",
            stacklevel=3,
        )


def _future_types():
    from ray.train._internal.session import _FutureTrainingResult, _TrainingResult

    return _FutureTrainingResult, _TrainingResult


@dataclass
class _Member:
    """What the adapter keeps per trial besides the core's view of it."""

    member: int
    trial: Any
    time: float | None = None  # last reported time_attr
    score: float | None = None  # last reported metric, as reported
    ready_result: dict | None = None  # flat result at the last checkpointed ready event
    # own state at the last ready event: a Checkpoint or a pending _FutureTrainingResult
    checkpoint: Any = None
    checkpoint_time: float | None = None
    offset: float = 0.0  # gpbt time = reported time_attr + offset (see _exploit)
    arrived: bool = False  # synchronous mode: reached the current boundary
    arrival: tuple[float, float] | None = None  # (time, score) at the boundary
    extra: dict = field(default_factory=dict)


def _get_nested(config: Mapping, name: str) -> tuple[bool, Any]:
    if name in config:
        return True, config[name]
    d: Any = config
    for p in name.split("."):
        if not isinstance(d, Mapping) or p not in d:
            return False, None
        d = d[p]
    return True, d


def _flat(result: Mapping) -> dict:
    from ray.tune.utils import flatten_dict

    return flatten_dict(dict(result))


def _number(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


class GPBTScheduler(TrialScheduler):
    """A Tune `TrialScheduler` whose every decision comes from a gpbt core scheduler.

    method: "gpbt-pl" | "pbt" | "pb2" | "random" (built with `make_scheduler`, options from
        `options`, e.g. {"pairing": "sync"}); or pass a ready core as `scheduler=`.
    space: the gpbt search space (dict of Float/Int/Choice or TOML-style tables). Values for
        these names are drawn by the core from `seed` when a trial is added, so every method
        starts from the same population; a value already in the trial's config is kept.
    time_attr, perturbation_interval, burn_in_period: as in Tune's PBT; `max_time` stops a
        trial once its time_attr reaches it.
    metric, mode: here or in `tune.TuneConfig`, not both.
    store: an experiment folder (or an `ExperimentStore`) that gets every report and decision,
        so `gpbt report` works on a Ray run; `store_metrics` names extra result keys to keep
        with each report. Writes are batched (at most every `flush_interval_s`).
    logging: a config's [logging] table, e.g. {"tensorboard": True, "wandb": {"project": "p"}}:
        the rows written to the store also go, live, to TensorBoard / W&B (`gpbt.live_log`).
        Needs `store`.
    """

    def __init__(
        self,
        method: str = "gpbt-pl",
        space: Space | Mapping | None = None,
        *,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        perturbation_interval: float = 10,
        burn_in_period: float = 0,
        max_time: float | None = None,
        seed: int = 0,
        options: Mapping[str, Any] | None = None,
        scheduler: PopulationScheduler | None = None,
        store: str | os.PathLike | ExperimentStore | None = None,
        experiment_config: Mapping[str, Any] | None = None,
        store_metrics: tuple[str, ...] | list[str] = (),
        flush_interval_s: float = 2.0,
        logging: Mapping[str, Any] | None = None,
    ):
        check_ray_internals()
        super().__init__()
        if scheduler is None and space is None:
            raise ValueError(
                "GPBTScheduler needs a search space (space={...}) or a built core scheduler "
                "(scheduler=gpbt.core.GPBT(...))"
            )
        if mode is not None and mode not in ("max", "min"):
            raise ValueError(f"mode={mode!r}: use 'max' (higher score is better) or 'min'")
        self._method = scheduler.method if scheduler is not None else method
        self._space_arg = space
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode if scheduler is None else scheduler.mode
        if scheduler is not None and mode is not None and mode != scheduler.mode:
            raise ValueError(
                f"mode={mode!r} but the core scheduler was built with {scheduler.mode!r}"
            )
        if scheduler is not None:
            # a ready core brings its own settings; the adapter's lockstep boundaries and
            # budget must be the core's
            perturbation_interval = scheduler.perturbation_interval
            burn_in_period, max_time = scheduler.burn_in_period, scheduler.max_time
            seed = scheduler.seed
        self._interval = float(perturbation_interval)
        self._burn_in = float(burn_in_period)
        self._max_time = max_time
        self._seed = int(seed)
        self._options = dict(options or {})
        self.core: PopulationScheduler | None = scheduler
        if scheduler is None:
            # Built now only to fail early on a bad method, space or option; rebuilt with the
            # final mode once Tune has told us (set_search_properties).
            self._build_core(mode or "max")
        self._store_arg = store
        if logging:
            from gpbt.live_log import check_logging

            if store is None:
                raise ValueError(
                    "GPBTScheduler(logging=...) needs store=<experiment folder>: the "
                    "TensorBoard folder and the W&B run id live there"
                )
            check_logging(dict(logging))
        self._logging = dict(logging or {})
        self._live_log: LiveLog | None = None
        self._store: ExperimentStore | None = store if isinstance(store, ExperimentStore) else None
        self._experiment_config = dict(experiment_config) if experiment_config else None
        self._flush_interval = float(flush_interval_s)
        self._store_metrics = tuple(store_metrics)
        self._core_frozen = scheduler is not None
        self._by_trial: dict[Any, _Member] = {}
        self._by_member: dict[int, _Member] = {}
        self._pending_reports: list[dict] = []
        self._pending_decisions: list[dict] = []
        self._last_flush = _time.monotonic()
        self._next_sync = self._clamp(max(self._interval, self._burn_in))
        self._config_written = False
        # statistics for the benchmark and the summary
        self.num_exploits = 0
        self.num_decisions = 0
        self.num_saves = 0
        self.decision_seconds = 0.0  # time spent in the core + exploit plumbing
        self.result_seconds = 0.0  # time spent in on_trial_result overall

    # ------------------------------------------------------------------ setup
    def _build_core(self, mode: str) -> None:
        self.core = make_scheduler(
            self._method,
            self._space_arg,
            perturbation_interval=self._interval,
            seed=self._seed,
            mode=mode,
            burn_in_period=self._burn_in,
            max_time=self._max_time,
            options=dict(self._options),
        )

    @property
    def metric(self):
        return self._metric

    @property
    def synchronous(self) -> bool:
        return bool(self.core.synchronous)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if (self._metric and metric) or (self._mode and mode and self._mode != mode):
            return False
        if metric:
            self._metric = metric
        if mode:
            if mode not in ("max", "min"):
                raise ValueError(f"mode={mode!r}: use 'max' or 'min'")
            self._mode = mode
        if not self._core_frozen and self._mode and self._mode != self.core.mode:
            self._build_core(self._mode)
        return True

    def _check_ready_to_run(self, tune_controller) -> None:
        if not self._metric or not self._mode:
            raise ValueError(
                f"GPBTScheduler has no metric ({self._metric!r}) or mode ({self._mode!r}); "
                "pass metric= and mode= to GPBTScheduler or to tune.TuneConfig"
            )
        from ray.tune.search import SearchGenerator

        search_alg = getattr(tune_controller, "search_alg", None)
        if isinstance(search_alg, SearchGenerator):
            raise ValueError(
                "GPBTScheduler draws the hyperparameters itself; remove the search algorithm "
                f"({search_alg}) and put fixed values only in param_space"
            )

    def _open_store(self) -> ExperimentStore | None:
        if self._store is None and self._store_arg is not None:
            self._store = ExperimentStore(self._store_arg)
        if self._store is not None and not self._config_written:
            self._store.write_config(self._describe())
            self._config_written = True
        return self._store

    def _describe(self) -> dict[str, Any]:
        base = (
            dict(self._experiment_config)
            if self._experiment_config
            else {
                "engine": "ray",
                "method": self._method,
                "time_attr": self._time_attr,
                "metric": self._metric,
                "mode": self._mode,
                "perturbation_interval": self._interval,
                "burn_in_period": self._burn_in,
                "seed": self._seed,
                "space": self.core.space.to_dict(),
                self._method: dict(self._options),
            }
        )
        base.setdefault("engine", "ray")
        base["scheduler"] = self.core.describe()
        return json.loads(json.dumps(base, default=_stable_text))

    # ------------------------------------------------------------------ trials
    def on_trial_add(self, tune_controller, trial):
        if trial in self._by_trial:
            # Tune re-adds a trial it retries after a failure: it may be a partner again.
            self.core.unmark_failed(self._by_trial[trial].member)
            return
        self._check_ready_to_run(tune_controller)
        self._open_store()
        member = len(self._by_member)
        # Always draw, even when the trial brings its own values, so that member k gets the
        # same draw under every method and whatever the user fixed.
        drawn = {k: to_plain(v) for k, v in self.core.space.sample(self.core.rng).items()}
        for name in self.core.space.names:
            found, value = _get_nested(trial.config, name)
            if found and not isinstance(value, Mapping):
                drawn[name] = to_plain(value)
        self.core.add_member(member, drawn)
        config = self.core.config(member)
        trial.set_config(Space.nest(config, into=trial.config))
        for name, value in config.items():
            trial.evaluated_params[name] = value
        state = _Member(member=member, trial=trial)
        self._by_trial[trial] = state
        self._by_member[member] = state

    def on_trial_error(self, tune_controller, trial):
        state = self._by_trial.get(trial)
        if state is not None:
            self.core.mark_failed(state.member)
            state.checkpoint = None
        self._flush(force=True)

    def on_trial_complete(self, tune_controller, trial, result):
        state = self._by_trial.get(trial)
        if state is not None and result:
            t, s = _number(result.get(self._time_attr)), result.get(self._metric)
            if (
                t is not None
                and s is not None
                and (t + state.offset, s) != (state.time, state.score)
            ):
                self._queue_report(state, t + state.offset, s, result)
                self.core.report(state.member, t + state.offset, s)
        self._flush(force=all(o.is_finished() or o is trial for o in self._by_trial))

    def on_trial_remove(self, tune_controller, trial):
        self._flush(force=all(o.is_finished() or o is trial for o in self._by_trial))

    def choose_trial_to_run(self, tune_controller):
        # Fair time-multiplexing: of the trials waiting for a slot, the one that has trained
        # least (in time_attr) goes first; in lockstep only those short of the boundary.
        candidates = self._candidates(tune_controller)
        if not candidates and self.synchronous and self._by_trial:
            if self._maybe_generation(tune_controller, current=None) is not None:
                candidates = self._candidates(tune_controller)
        if not candidates:
            return None
        return min(
            candidates,
            key=lambda t: (
                -math.inf if self._by_trial[t].time is None else self._by_trial[t].time,
                self._by_trial[t].member,
            ),
        )

    def _candidates(self, tune_controller) -> list:
        out = []
        for t in tune_controller.get_trials():
            if t.status not in (Trial.PENDING, Trial.PAUSED) or t not in self._by_trial:
                continue
            if self.synchronous and self._by_trial[t].arrived:
                continue
            out.append(t)
        return out

    # ------------------------------------------------------------------ results
    def on_trial_result(self, tune_controller, trial, result):
        start = _time.perf_counter()
        try:
            return self._on_result(tune_controller, trial, result)
        finally:
            self.result_seconds += _time.perf_counter() - start

    def _on_result(self, tune_controller, trial, result):
        state = self._by_trial[trial]
        if self._time_attr not in result or self._metric not in result:
            missing = [k for k in (self._time_attr, self._metric) if k not in result]
            shown = sorted(k for k in result if not k.startswith("config/"))[:40]
            raise RuntimeError(
                f"trial {trial.trial_id} reported no {missing}; gpbt needs time_attr="
                f"{self._time_attr!r} and metric={self._metric!r} in every result (report "
                f"them from the trainable or change time_attr/metric). It reported: {shown}"
            )
        t = _number(result[self._time_attr])
        if t is None:
            raise RuntimeError(
                f"trial {trial.trial_id}: time_attr {self._time_attr!r} = "
                f"{result[self._time_attr]!r} is not a number"
            )
        t += state.offset
        score = result[self._metric]
        self._queue_report(state, t, score, result)
        if self.synchronous:
            return self._on_result_sync(tune_controller, trial, state, t, score, result)
        dstart = _time.perf_counter()
        decision = self.core.on_report(state.member, t, score)
        if decision.record is None:
            self._flush()
            return TrialScheduler.CONTINUE
        try:
            return self._apply_async(tune_controller, trial, state, t, decision, result)
        finally:
            self.decision_seconds += _time.perf_counter() - dstart
            self._flush()

    def _apply_async(self, tune_controller, trial, state, t, decision: Decision, result):
        self.num_decisions += 1
        if isinstance(decision, Stop):
            self._queue_decision(decision, state)
            return TrialScheduler.STOP
        if isinstance(decision, Exploit):
            donor = self._by_member[decision.donor]
            ckpt, ckpt_result = self._donor_checkpoint(tune_controller, donor)
            self._queue_decision(decision, state, donor=donor, checkpoint=ckpt)
            self._exploit(tune_controller, trial, state, decision, donor, ckpt, ckpt_result)
            return TrialScheduler.NOOP
        # Continue at a ready event: checkpoint now, so this member can be a donor until its
        # next ready event, then yield the slot if someone is waiting for one.
        self._queue_decision(decision, state)
        self._save(tune_controller, trial, state, t, result)
        waiting = any(
            o.status in (Trial.PENDING, Trial.PAUSED) and o is not trial
            for o in tune_controller.get_trials()
        )
        return TrialScheduler.PAUSE if waiting else TrialScheduler.CONTINUE

    # ------------------------------------------------------------------ lockstep
    def _clamp(self, boundary: float) -> float:
        # the budget is a boundary too, so the last generation is the one that stops everyone
        return boundary if self._max_time is None else min(boundary, float(self._max_time))

    def _on_result_sync(self, tune_controller, trial, state, t, score, result):
        if t < self._next_sync:
            self.core.report(state.member, t, score)
            self._flush()
            return TrialScheduler.CONTINUE
        # At the boundary: wait for the rest of the population (the core hears this score
        # with the whole generation, at the boundary's time).
        state.arrived = True
        state.arrival = (t, score)
        state.ready_result = dict(result)
        dstart = _time.perf_counter()
        decisions = self._maybe_generation(tune_controller, current=trial)
        self.decision_seconds += _time.perf_counter() - dstart
        self._flush()
        if trial.status == Trial.PAUSED:
            return TrialScheduler.NOOP
        if decisions is None:
            return TrialScheduler.PAUSE  # wait for the rest of the population
        if isinstance(decisions.get(state.member), Stop):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _maybe_generation(self, tune_controller, current) -> dict[int, Decision] | None:
        live = [
            s
            for s in self._by_trial.values()
            if not s.trial.is_finished() and not self.core.members[s.member].failed
        ]
        if not live or not all(s.arrived for s in live):
            return None
        boundary = self._next_sync
        scores = {s.member: s.arrival[1] for s in live}
        decisions = self.core.on_generation(boundary, scores)
        self.num_decisions += len(decisions)
        # Every donor's state is taken before any exploit is applied: the core decided
        # against the population as it stood at the boundary.
        checkpoints: dict[int, tuple[Any, dict | None]] = {}
        for s in live:
            if not isinstance(decisions.get(s.member), Exploit) or any(
                isinstance(d, Exploit) and d.donor == s.member for d in decisions.values()
            ):
                checkpoints[s.member] = self._boundary_checkpoint(tune_controller, s, current)
        donors_needed = {d.donor for d in decisions.values() if isinstance(d, Exploit)}
        resolved = {m: self._resolve(checkpoints[m]) for m in donors_needed}
        for member, decision in sorted(decisions.items()):
            s = self._by_member[member]
            if isinstance(decision, Exploit):
                donor = self._by_member[decision.donor]
                ckpt, ckpt_result = resolved[decision.donor]
                self._queue_decision(decision, s, donor=donor, checkpoint=ckpt)
                self._exploit(tune_controller, s.trial, s, decision, donor, ckpt, ckpt_result)
            else:
                self._queue_decision(decision, s)
                if isinstance(decision, Stop) and s.trial is not current:
                    tune_controller.stop_trial(s.trial)
        for s in live:
            s.arrived = False
        self._next_sync = self._clamp(boundary + self._interval)
        return decisions

    def _boundary_checkpoint(self, tune_controller, s: _Member, current):
        """The member's own state at the boundary (a Checkpoint or a pending save)."""
        trial = s.trial
        saving = trial.temporary_state.saving_to
        if trial.status == Trial.PAUSED:
            latest = trial.latest_checkpoint_result
            ckpt = latest.checkpoint if latest else None
            result = dict(latest.metrics or {}) if latest else s.ready_result
        elif saving is not None:
            ckpt, result = saving, s.ready_result
        else:
            ckpt = tune_controller._schedule_trial_save(trial, result=s.ready_result)
            self.num_saves += 1
            result = s.ready_result
        s.checkpoint, s.checkpoint_time = ckpt, s.arrival[0] if s.arrival else s.time
        s.ready_result = result
        return ckpt, result

    # ------------------------------------------------------------------ checkpoints
    def _save(self, tune_controller, trial, state: _Member, t: float, result) -> None:
        state.checkpoint = tune_controller._schedule_trial_save(trial, result=result)
        state.checkpoint_time = t
        state.ready_result = dict(result)
        self.num_saves += 1

    def _resolve(self, pair) -> tuple[Any, dict | None]:
        future_type, _ = _future_types()
        ckpt, result = pair
        if isinstance(ckpt, future_type):
            training_result = ckpt.resolve()
            if training_result is None or not training_result.checkpoint:
                return None, result
            return training_result.checkpoint, dict(training_result.metrics or result or {})
        return ckpt, result

    def _donor_checkpoint(self, tune_controller, donor: _Member) -> tuple[Any, dict | None]:
        ckpt, result = self._resolve((donor.checkpoint, donor.ready_result))
        if ckpt is not None:
            donor.checkpoint = ckpt
            donor.ready_result = result
            return ckpt, result
        # The donor was never checkpointed at a ready event (it is a partner the core drew
        # before its first boundary, or its save came back empty): take its state now.
        trial = donor.trial
        if trial.status == Trial.RUNNING:
            future = tune_controller._schedule_trial_save(trial, result=trial.last_result)
            self.num_saves += 1
            ckpt, result = self._resolve((future, dict(trial.last_result or {})))
        latest = trial.latest_checkpoint_result
        if ckpt is None and latest is not None and latest.checkpoint:
            ckpt, result = latest.checkpoint, dict(latest.metrics or {})
        if ckpt is None:
            raise RuntimeError(
                f"gpbt chose trial {trial.trial_id} (member {donor.member}) as a donor but it "
                "has no checkpoint. A class trainable must implement save_checkpoint(); a "
                "function trainable must pass checkpoint= to tune.report() (at least every "
                "perturbation_interval) and restore from tune.get_checkpoint()"
            )
        donor.checkpoint, donor.ready_result = ckpt, result
        return ckpt, result

    def _exploit(self, tune_controller, trial, state, decision, donor, ckpt, ckpt_result):
        _, training_result_type = _future_types()
        if trial.status != Trial.PAUSED:
            # Stop the actor without saving: its weights are about to be replaced.
            tune_controller.pause_trial(trial, should_checkpoint=False)
        new_config = Space.nest(decision.config, into=trial.config)
        trial.set_config(new_config)
        for name, value in decision.config.items():
            trial.evaluated_params[name] = value
        metrics = dict(ckpt_result or {})
        metrics["config"] = new_config
        # Tune restores a trial it starts again from the checkpoint manager's latest result;
        # pointing it at the donor's checkpoint is how the loser gets the donor's weights (the
        # same move Ray's own PBT makes). A shallow copy: the donor may delete its own entry.
        trial.run_metadata.checkpoint_manager._latest_checkpoint_result = training_result_type(
            checkpoint=copy.copy(ckpt), metrics=metrics
        )
        state.checkpoint, state.ready_result = None, None
        state.checkpoint_time = None
        self.num_exploits += 1
        # Tune restores time_attr from the checkpoint's metrics, so the loser's counter jumps
        # to the donor's. gpbt's time for a member is what its own slot has trained: shift
        # the counter back onto the loser's own line, so its budget, its next ready event
        # and the store's (member, time) keys stay its own.
        t_d = _number(_flat(ckpt_result).get(self._time_attr)) if ckpt_result else None
        if t_d is not None and state.time is not None:
            state.offset = state.time - t_d

    # ------------------------------------------------------------------ store
    def _queue_report(self, state: _Member, t: float, score, result) -> None:
        state.time, state.score = t, score
        if self._store_arg is None:
            return
        metrics = {self._metric: score, self._time_attr: result.get(self._time_attr)}
        for key in ("training_iteration", "time_total_s", "timesteps_total", *self._store_metrics):
            v = result.get(key)
            if v is not None and key not in metrics:
                metrics[key] = v
        self._pending_reports.append(
            {
                "member": state.member,
                "time": int(t) if float(t).is_integer() else t,
                "score": score,
                "metrics": json.loads(json.dumps(metrics, default=str)),
                "config": self.core.config(state.member),
            }
        )

    def _queue_decision(self, decision: Decision, state: _Member, *, donor=None, checkpoint=None):
        if self._store_arg is None or decision.record is None:
            return
        rec = decision.record.to_dict()
        rec["trial_id"] = state.trial.trial_id
        if donor is not None:
            rec["donor_trial_id"] = donor.trial.trial_id
            path = getattr(checkpoint, "path", None)
            if path is not None:
                rec["donor_checkpoint"] = str(path)
        for k in ("member_score", "partner_score"):
            if isinstance(rec.get(k), float) and math.isnan(rec[k]):
                rec[k] = None
        self._pending_decisions.append(rec)

    def _flush(self, force: bool = False) -> None:
        if self._store_arg is None:
            return
        if not force and _time.monotonic() - self._last_flush < self._flush_interval:
            return
        store = self._open_store()
        reports, decisions = self._pending_reports, self._pending_decisions
        if self._pending_reports:
            store.add_reports(self._pending_reports)
            self._pending_reports = []
        if self._pending_decisions:
            store.add_decisions(self._pending_decisions)
            self._pending_decisions = []
        if self._logging and self._live_log is None:
            self._live_log = open_live_log(
                self._logging,
                store.folder,
                mode=self.core.mode,
                config=self._experiment_config or self._describe(),
            )
        if self._live_log is not None:
            self._live_log.log_reports(reports)
            self._live_log.log_decisions(decisions)
        if force:
            store.set_state("scheduler", self.core.state_dict())
            store.set_state(
                "ray_trials", {str(m): s.trial.trial_id for m, s in self._by_member.items()}
            )
        self._last_flush = _time.monotonic()

    def close(self) -> None:
        """Write whatever is buffered and the core's state; call once the run is over."""
        self._flush(force=True)
        if self._live_log is not None:
            self._live_log.close()
            self._live_log = None
            self._logging = {}  # closed for good: a late flush must not open a second run

    # ------------------------------------------------------------------ Tune plumbing
    def debug_string(self) -> str:
        return (
            f"gpbt {self._method}: {self.num_decisions} decisions, {self.num_exploits} "
            f"exploits, {self.num_saves} saves"
        )

    def save(self, checkpoint_path: str):
        self._flush(force=True)
        Path(checkpoint_path).write_text(json.dumps(self.core.state_dict(), default=str))

    def restore(self, checkpoint_path: str):
        self.core.load_state_dict(json.loads(Path(checkpoint_path).read_text()))

    def __getstate__(self):
        # Tune pickles the scheduler with the Tuner (tuner.pkl); an open SQLite handle and
        # live Trial objects do not travel.
        self._flush(force=self._store is not None)
        d = dict(self.__dict__)
        d["_store"] = None
        d["_live_log"] = None  # open writers stay with the driver's scheduler
        d["_by_trial"], d["_by_member"] = {}, {}
        d["_config_written"] = False
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)

    def stats(self) -> dict[str, Any]:
        return {
            "decisions": self.num_decisions,
            "exploits": self.num_exploits,
            "saves": self.num_saves,
            "decision_seconds": self.decision_seconds,
            "result_seconds": self.result_seconds,
        }


# ---------------------------------------------------------------------- gpbt run (engine="ray")
def _import_object(spec: str) -> Any:
    obj = import_object(
        spec, "trainable", "'my_module:MyTrainable', 'my_module:train_fn' or 'rllib:PPO'"
    )
    mod = sys.modules[spec.partition(":")[0]]
    origin = Path(getattr(mod, "__file__", "") or "").resolve()
    if origin.is_relative_to(Path.cwd().resolve()):
        # Ray's workers do not run in our working directory (nor on our machine, on a
        # cluster), so a module found there travels with the trainable, by value.
        ray.cloudpickle.register_pickle_by_value(sys.modules[mod.__name__.split(".")[0]])
    return obj


def rllib_param_space(
    algorithm: str,
    env: str,
    settings: Mapping[str, Any] | None = None,
    searched: tuple[str, ...] | list[str] = (),
) -> dict:
    """The fixed part of an RLlib algorithm's config as a plain dict for Tune's param_space.

    `settings` are AlgorithmConfig attributes (e.g. {"num_env_runners": 1}); the `searched`
    hyperparameters are filled in per trial by the scheduler, so they (and RLlib's private
    spelling of some, e.g. `_train_batch_size_per_learner`) are left out.
    """
    from ray.tune.registry import get_trainable_cls

    try:
        cls = get_trainable_cls(algorithm)
    except Exception as e:
        raise ValueError(
            f"trainable = 'rllib:{algorithm}': no RLlib algorithm of that name ({e}); "
            "use e.g. rllib:PPO, rllib:IMPALA, rllib:APPO, rllib:SAC (pip install 'gpbt[rllib]')"
        ) from e
    if not hasattr(cls, "get_default_config"):
        raise ValueError(f"trainable = 'rllib:{algorithm}' is not an RLlib algorithm")
    config = cls.get_default_config().environment(env)
    settings = dict(settings or {})
    unknown = [k for k in settings if not hasattr(config, k)]
    if unknown:
        raise ValueError(
            f"rllib setting {unknown[0]!r} is not an attribute of {algorithm}'s "
            "AlgorithmConfig; see the RLlib docs for the names"
        )
    return rllib_fixed_config(config.update_from_dict(settings), searched)


def rllib_fixed_config(config: Any, searched: Iterable[str] = ()) -> dict:
    """An RLlib AlgorithmConfig as Tune's param_space: a plain dict without the `searched`
    hyperparameters (and RLlib's private spellings of them, e.g. `_train_batch_size_per_learner`),
    which the scheduler fills in per trial."""
    d = config.to_dict()
    for name in searched:
        d.pop(name, None)
        d.pop("_" + name, None)
    return d


def trial_resources(trainable: Any, param_space: Mapping[str, Any]) -> dict[str, float] | None:
    """What one trial of `trainable` asks Ray for ({"CPU": 3.0, ...}); None if unknown. RLlib
    algorithms compute it from their config (main process, learners, env runners)."""
    cls = trainable
    if isinstance(trainable, str):
        from ray.tune.registry import get_trainable_cls

        cls = get_trainable_cls(trainable)
    request = getattr(cls, "default_resource_request", None)
    if request is None:
        return None
    try:
        req = request(dict(param_space))
    except Exception:  # a config the algorithm rejects fails again, with its message, in fit()
        logger.debug("default_resource_request failed", exc_info=True)
        return None
    if req is None:
        return None
    if hasattr(req, "required_resources"):  # a PlacementGroupFactory
        return {k: float(v) for k, v in req.required_resources.items() if v}
    return {"CPU": float(req.cpu + req.extra_cpu), "GPU": float(req.gpu + req.extra_gpu)}


def _check_trial_fits(trainable: Any, param_space: Mapping, resources: Any, *, local: bool):
    """A trial that needs more than the whole cluster would wait PENDING forever: say so."""
    if resources:
        need = {k.upper() if k.lower() in ("cpu", "gpu") else k: float(v)
                for k, v in dict(resources).items()}  # fmt: skip
    else:
        need = trial_resources(trainable, param_space)
    if not need:
        return
    have = ray.cluster_resources()
    short = {k: (v, have.get(k, 0.0)) for k, v in need.items() if v > have.get(k, 0.0) + 1e-9}
    if not short:
        return
    what = ", ".join(f"{v:g} {k}" for k, (v, _) in short.items())
    has = ", ".join(f"{h:g} {k}" for k, (_, h) in short.items())
    message = (
        f"one trial needs {what} but the Ray cluster has {has} in all, so every trial would "
        "wait forever; lower what a trial asks for (RLlib: rllib.num_env_runners = 0, "
        "num_learners = 0; otherwise resources_per_trial) or give Ray more (num_cpus, or an "
        "address of a larger cluster)"
    )
    if local:
        raise ValueError(message)
    logger.warning("%s (an autoscaling cluster may still add nodes)", message)


def _trainable_from_config(config: Mapping[str, Any]) -> tuple[Any, dict, bool]:
    spec = config.get("trainable")
    if not spec:
        raise ValueError(
            "engine = 'ray' needs trainable = 'module:Class' | 'module:function' | 'rllib:PPO'"
        )
    fixed = dict(config.get("param_space") or {})
    if spec.startswith("rllib:"):
        algo = spec.split(":", 1)[1]
        env = config.get("env")
        if not env:
            raise ValueError(f"trainable = {spec!r} needs env = '...' (a Gymnasium id)")
        names = Space(config["space"]).names if "space" in config else ()
        space = rllib_param_space(algo, env, config.get("rllib"), names)
        space.update(fixed)
        return algo, space, False
    obj = _import_object(spec)
    from ray.tune import Trainable

    if inspect.isclass(obj) and issubclass(obj, Trainable):
        reuse = obj.reset_config is not Trainable.reset_config
    elif callable(obj):
        reuse = True
    else:
        raise ValueError(f"trainable = {spec!r} is neither a Tune Trainable class nor a function")
    return obj, fixed, reuse


def run_ray(
    spec: RunSpec | Mapping[str, Any],
    folder: str | os.PathLike,
    *,
    resume: bool = False,
    on_event: Callable[[dict], None] | None = None,
):
    """Run one experiment on Ray Tune (engine = "ray") and return its `Summary`; the folder is
    locked while it runs (a second run on it is refused). `spec` is a `RunSpec` (a plain config
    dict is validated into one). The keys are the shared ones plus `OPTIONS` above; the method's
    option table goes under its name. `on_event`, if given, gets a dict per report.
    Ray runs are resumed by Ray Tune itself (tune.Tuner.restore), not with `resume=True`."""
    from gpbt.engines.lock import hold_folder
    from gpbt.errors import ConfigError

    spec = RunSpec.from_config({"engine": "ray", **spec} if not isinstance(spec, RunSpec) else spec)
    if resume:
        raise ConfigError(
            "Ray runs are resumed by Ray Tune itself (tune.Tuner.restore); see docs/ray.md"
        )
    with hold_folder(folder, "run"):
        return _run_ray(spec, folder, on_event=on_event)


def _run_ray(spec: RunSpec, folder: str | os.PathLike, *, on_event=None):
    from ray import tune

    config = spec.to_dict()
    progress = on_event
    population = spec.population
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    trainable, param_space, reuse = _trainable_from_config(config)

    scheduler = GPBTScheduler(
        # the core comes from the spec, the one place a scheduler is built from a config
        scheduler=spec.scheduler(max_time=spec.total_steps),
        time_attr=spec.time_attr,
        metric=spec.metric,
        mode=spec.mode,
        store=folder,
        store_metrics=_names(config.get("store_metrics"), "store_metrics"),
        experiment_config=config,
        logging=config.get("logging"),
    )
    started_here = False
    if not ray.is_initialized():
        address = config.get("address")
        kwargs: dict[str, Any] = {"address": address} if address else {}
        if not address and config.get("num_cpus"):
            kwargs["num_cpus"] = int(config["num_cpus"])
        ray.init(**kwargs, include_dashboard=False, log_to_driver=False)
        started_here = True
    resources = config.get("resources_per_trial")
    if resources and not isinstance(trainable, str):
        trainable = tune.with_resources(trainable, dict(resources))
    callbacks = [_ProgressCallback(scheduler, progress)] if progress else []
    start = _time.perf_counter()
    try:
        _check_trial_fits(trainable, param_space, resources, local=started_here)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                scheduler=scheduler,
                num_samples=population,
                reuse_actors=bool(config.get("reuse_actors", reuse)),
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(folder),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=config.get("num_to_keep")),
                verbose=0 if progress else 1,
                callbacks=callbacks,
            ),
        )
        results = tuner.fit()
    finally:
        scheduler.close()
        if started_here:
            ray.shutdown()
    wall = _time.perf_counter() - start
    return Summary.from_dict(_summary(scheduler, results, folder, wall))


def _stable_text(obj: Any) -> str:
    """JSON text for what a config holds besides plain data (RLlib's learner classes, policy
    mapping functions): the same object gives the same text in every process, so a resumed
    run's config compares equal to the stored one (str() would embed a memory address)."""
    name = getattr(obj, "__qualname__", None)
    if name is not None and getattr(obj, "__module__", None):
        return f"{obj.__module__}:{name}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(obj))


def _names(value: Any, field: str) -> tuple[str, ...]:
    """A list of result keys; a bare string would otherwise be read as one key per letter."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not all(isinstance(v, str) for v in value):
        raise ValueError(f"{field} must be a list of result keys (strings), got {value!r}")
    return tuple(value)


# RLlib's new API stack reports these; the paper's experiments use env steps as time.
RLLIB_METRIC = "env_runners/episode_return_mean"
RLLIB_TIME_ATTR = "num_env_steps_sampled_lifetime"


def rllib_experiment_arguments(
    description: str | None,
    *,
    env: str,
    total_steps: float,
    folder: str,
    argv: list[str] | None = None,
    env_flag: str = "--env",
):
    """The command line every paper-style RLlib experiment script takes: --method, --pairing,
    the env (`env_flag`, parsed into `args.env`), --population, --total-steps, --interval,
    --seed, --num-env-runners, --folder, --address and --tiny."""
    import argparse

    first_line = (description or "").strip().splitlines()[:1]
    p = argparse.ArgumentParser(description=first_line[0] if first_line else None)
    p.add_argument("--method", default="gpbt-pl", choices=["gpbt-pl", "pbt", "pb2", "random"])
    p.add_argument("--pairing", default="random", choices=["random", "sync", "truncation"])
    p.add_argument(env_flag, dest="env", default=env)
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--total-steps", type=float, default=total_steps, help="env steps per member")
    p.add_argument("--interval", type=float, default=5e4, help="env steps between decisions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-env-runners", type=int, default=0)
    p.add_argument("--folder", default=folder)
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: local)")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes (about a minute)")
    return p.parse_args(argv)


def run_rllib_experiment(
    args,
    algorithm: str,
    env: str,
    param_space: Mapping[str, Any],
    space: Mapping[str, Any] | Space,
    store_metrics: tuple[str, ...] | list[str] = (),
    module: Any = None,
    env_creator: Callable[[dict], Any] | None = None,
) -> dict[str, Any]:
    """Tune an RLlib algorithm with gpbt from a script's parsed arguments (see
    `rllib_experiment_arguments`): every method gets the same space, population, budget and
    seed. `param_space` is the algorithm's fixed config (AlgorithmConfig.to_dict() without the
    searched names); `module`, the script's module, is shipped to Ray's workers by value when
    it was imported rather than run (its learner classes and env creators live there);
    `env_creator`, if given, is registered under the name `env` (after the module is set to
    travel by value, or the workers could not unpickle it)."""
    if module is not None and module.__name__ != "__main__":
        ray.cloudpickle.register_pickle_by_value(module)
    if env_creator is not None:
        from ray import tune

        tune.register_env(env, env_creator)
    space = space if isinstance(space, Space) else Space(space)
    config: dict[str, Any] = {
        "engine": "ray",
        "trainable": f"rllib:{algorithm}",
        "env": env,
        "param_space": dict(param_space),
        "method": args.method,
        "population": args.population,
        "total_steps": args.total_steps,
        "perturbation_interval": args.interval,
        "time_attr": RLLIB_TIME_ATTR,
        "metric": RLLIB_METRIC,
        "mode": "max",
        "seed": args.seed,
        "space": space.to_dict(),
        "num_to_keep": 4,
        "store_metrics": list(_names(store_metrics, "store_metrics")),
    }
    if args.address:
        config["address"] = args.address
    if args.method == "gpbt-pl":
        config["gpbt-pl"] = {"pairing": args.pairing}
    summary = run_ray(config, args.folder)
    print(json.dumps(summary, indent=2, default=str))
    return summary


class _ProgressCallback(ray.tune.Callback):
    def __init__(self, scheduler: GPBTScheduler, progress: Callable[[dict], None]):
        self._scheduler, self._progress = scheduler, progress

    def on_trial_result(self, iteration, trials, trial, result, **info):
        state = self._scheduler._by_trial.get(trial)
        if state is None:
            return
        self._progress(
            {
                "member": state.member,
                "trial_id": trial.trial_id,
                "time": result.get(self._scheduler._time_attr),
                "score": result.get(self._scheduler._metric),
                "config": self._scheduler.core.config(state.member),
            }
        )


def _summary(scheduler: GPBTScheduler, results, folder: Path, wall: float) -> dict[str, Any]:
    sign = 1.0 if scheduler._mode == "max" else -1.0
    best = None
    for s in scheduler._by_member.values():
        score = _number(s.score)
        if score is None or math.isnan(score):
            continue
        if best is None or sign * score > sign * best[1]:
            best = (s, score)
    errors = [r.error for r in results if r.error is not None]
    scores = {m: _number(s.score) for m, s in scheduler._by_member.items()}
    return {
        "engine": "ray",
        "method": scheduler._method,
        "folder": str(folder),
        "population": len(scheduler._by_member),
        "best_member": None if best is None else best[0].member,
        "best_trial": None if best is None else best[0].trial.trial_id,
        "best_score": None if best is None else best[1],
        "score_basis": f"last reported {scheduler._metric}",
        "population_mean": population_mean(scores),
        "best_config": None if best is None else scheduler.core.config(best[0].member),
        "exploits": scheduler.num_exploits,
        "finished": not errors,
        "decisions": scheduler.num_decisions,
        "errors": len(errors),
        "wall_seconds": wall,
    }
