"""`GPBTScheduler`: a Ray Tune trial scheduler whose every decision comes from a gpbt core.

Tune starts, pauses, checkpoints and restores trials; this scheduler only turns Tune's
callbacks into the core's ask/tell calls, carries out what the core decides (through the
internals `gpbt.integrations.ray_tune.compat` checks) and records it in an experiment store.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from gpbt.core.decisions import Decision, Exploit, Stop
from gpbt.core.methods import make_scheduler
from gpbt.core.schedulers import PopulationScheduler
from gpbt.core.space import Space, to_plain
from gpbt.engines.asynchronous import WAIT, AsyncDriver, Step
from gpbt.integrations.ray_tune.compat import check_ray_internals
from gpbt.live_log import LiveLog, open_live_log
from gpbt.store import ExperimentStore

logger = logging.getLogger(__name__)


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
    start_points: configs (or parts of them) that the first trials (members 0, 1, ...) start
        at instead of their draw, as in `gpbt run` (or give a ready core built with them).
    time_attr, perturbation_interval, burn_in_period: as in Tune's PBT; `max_time` stops a
        trial once its time_attr reaches it.
    metric, mode: here or in `tune.TuneConfig`, not both.
    store: an experiment folder (or an `ExperimentStore`) that gets every report and decision,
        so `gpbt report` works on a Ray run; `store_metrics` names extra result keys to keep
        with each report. Writes are batched (at most every `flush_interval_s`).
    logging: a config's [logging] table, e.g. {"tensorboard": True, "wandb": {"project": "p"}}:
        the rows written to the store also go, live, to TensorBoard / W&B (`gpbt.live_log`);
        the scheduler opens that live log at its first write and closes it in `close()`.
        Needs `store`.
    live_log: an open `gpbt.live_log.LiveLog` to send the same rows to instead, which its
        caller closes after `close()` (`gpbt run`'s Ray engine hands over the run's, as every
        engine gets it from `run_engine`). Needs `store`; not with `logging`.
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
        start_points: list[Mapping[str, Any]] | None = None,
        live_log: LiveLog | None = None,
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
        if scheduler is not None and start_points:
            raise ValueError(
                "start_points with a ready core: build the core with them instead "
                "(make_scheduler(..., start_points=[...]))"
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
        self._start_points = [dict(p) for p in start_points or []]
        self.core: PopulationScheduler | None = scheduler
        # when a result reaches the core and who waits for a generation: decided there (on
        # the fixed grid of boundaries Tune's trials keep to; see AsyncDriver)
        self._driver: AsyncDriver | None = None
        if scheduler is not None:
            self._driver = AsyncDriver(scheduler, grid=True)
        else:
            # Built now only to fail early on a bad method, space or option; rebuilt with the
            # final mode once Tune has told us (set_search_properties).
            self._build_core(mode or "max")
        self._store_arg = store
        if logging and live_log is not None:
            raise ValueError(
                "GPBTScheduler takes logging= (it opens the live log itself) or live_log= (an "
                "open one, closed by its caller), not both"
            )
        if logging:
            from gpbt.live_log import check_logging

            if store is None:
                raise ValueError(
                    "GPBTScheduler(logging=...) needs store=<experiment folder>: the "
                    "TensorBoard folder and the W&B run id live there"
                )
            check_logging(dict(logging))
        if live_log is not None and store is None:
            raise ValueError(
                "GPBTScheduler(live_log=...) needs store=<experiment folder>: the live log "
                "gets the rows written there"
            )
        # `logging`: the live log this scheduler opens (at its first write) and closes;
        # otherwise `live_log`, the caller's, is written to and never closed here
        self._logging = dict(logging or {})
        self._live_log: LiveLog | None = live_log
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
            start_points=self._start_points,
        )
        self._driver = AsyncDriver(self.core, grid=True)

    @property
    def metric(self):
        return self._metric

    @property
    def synchronous(self) -> bool:
        return bool(self.core.synchronous)

    # ------------------------------------------------------------------ what a caller may read
    # (the `gpbt run` Ray engine's progress and summary; nothing outside reads the internals)
    @property
    def method(self) -> str:
        return self._method

    @property
    def time_attr(self) -> str:
        return self._time_attr

    def member_of(self, trial) -> int | None:
        """The population member a trial is, or None for a trial this scheduler never saw."""
        state = self._by_trial.get(trial)
        return None if state is None else state.member

    def latest_scores(self) -> dict[int, float | None]:
        """Each member's last reported metric as a number (None: none yet, or not numeric)."""
        return {m: _number(s.score) for m, s in self._by_member.items()}

    def best(self) -> tuple[int, str, float] | None:
        """(member, trial id, score) of the best last-reported score under the mode (NaN and
        missing scores never win); None before any member has reported one."""
        sign = 1.0 if self._mode == "max" else -1.0
        best = None
        for s in self._by_member.values():
            score = _number(s.score)
            if score is None or math.isnan(score):
                continue
            if best is None or sign * score > sign * best[2]:
                best = (s.member, s.trial.trial_id, score)
        return best

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
        if member < len(self.core.start_points):  # as the core's initial_population does
            drawn.update(self.core.start_points[member])
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
                self._driver.observe(state.member, t + state.offset, s)
        self._flush(force=all(o.is_finished() or o is trial for o in self._by_trial))

    def on_trial_remove(self, tune_controller, trial):
        self._flush(force=all(o.is_finished() or o is trial for o in self._by_trial))

    def choose_trial_to_run(self, tune_controller):
        # Fair time-multiplexing: of the trials waiting for a slot, the one that has trained
        # least (in time_attr) goes first; in lockstep only those short of the boundary.
        candidates = self._candidates(tune_controller)
        if not candidates and self.synchronous and self._by_trial:
            if self._maybe_generation(tune_controller, current=None):
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
            if self._driver.waiting(self._by_trial[t].member):
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
        dstart = _time.perf_counter()
        decision = self._driver.on_result(state.member, t, score).decisions[state.member]
        if decision is WAIT:
            return self._wait_for_generation(tune_controller, trial, state, result)
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
    def _wait_for_generation(self, tune_controller, trial, state, result):
        # At the boundary: wait for the rest of the population (the core hears this score
        # with the whole generation, at the boundary's time).
        state.ready_result = dict(result)
        dstart = _time.perf_counter()
        step = self._maybe_generation(tune_controller, current=trial)
        self.decision_seconds += _time.perf_counter() - dstart
        self._flush()
        if trial.status == Trial.PAUSED:
            return TrialScheduler.NOOP
        if step is None:
            return TrialScheduler.PAUSE  # wait for the rest of the population
        if isinstance(step.decisions.get(state.member), Stop):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _maybe_generation(self, tune_controller, current) -> Step | None:
        live = [
            s
            for s in self._by_trial.values()
            if not s.trial.is_finished() and not self.core.members[s.member].failed
        ]
        step = self._driver.generation(s.member for s in live)
        if step is None:
            return None
        decisions = step.decisions
        self.num_decisions += len(decisions)
        # Every live member's own state at the boundary is taken (a save) unless an exploit
        # is about to replace it, and every donor's before any exploit is applied.
        donors = set(step.donors())
        checkpoints: dict[int, tuple[Any, dict | None]] = {}
        for s in live:
            if not isinstance(decisions.get(s.member), Exploit) or s.member in donors:
                checkpoints[s.member] = self._boundary_checkpoint(
                    tune_controller, s, current, step.arrivals[s.member][0]
                )
        resolved = step.snapshot(lambda donor: self._resolve(checkpoints[donor]))
        for member, decision in decisions.items():
            s = self._by_member[member]
            if isinstance(decision, Exploit):
                donor = self._by_member[decision.donor]
                ckpt, ckpt_result = resolved[decision.donor]
                self._exploit(tune_controller, s.trial, s, decision, donor, ckpt, ckpt_result)
            else:
                self._queue_decision(decision, s)
                if isinstance(decision, Stop) and s.trial is not current:
                    tune_controller.stop_trial(s.trial)
        return step

    def _boundary_checkpoint(self, tune_controller, s: _Member, current, arrived: float):
        """The member's own state at the boundary it `arrived` at (a Checkpoint or a pending
        save)."""
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
        s.checkpoint, s.checkpoint_time = ckpt, arrived
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
            return None, None  # the caller falls back on the receiver's own weights
        donor.checkpoint, donor.ready_result = ckpt, result
        return ckpt, result

    def _check_keeps_own_weights(self, s: _Member, donor: _Member) -> None:
        """An exploit whose donor has no state to give (its save came back empty, or its actor
        or node died before any save of it finished): the receiver keeps its own weights and
        takes the decision's hyperparameters (`_exploit` with no checkpoint). The core has
        already moved it to them; Ray Tune's PBT would skip such an exploit. Refused when the
        receiver has no state of its own to restore either: then the trainable does not
        checkpoint, which is the user's to fix."""
        from ray.tune.trainable.function_trainable import FunctionTrainable

        trial = s.trial
        latest = trial.latest_checkpoint_result
        has_own = bool(latest and latest.checkpoint) or s.checkpoint is not None
        # A class trainable saves when it is paused (or fails loudly itself); a function
        # trainable has only the checkpoints it has reported.
        saves_on_pause = trial.status == Trial.RUNNING and not issubclass(
            trial.get_trainable_cls(), FunctionTrainable
        )
        if not (has_own or saves_on_pause):
            raise RuntimeError(
                f"gpbt chose trial {donor.trial.trial_id} (member {donor.member}) as a donor "
                f"but it has no checkpoint, and neither has trial {trial.trial_id} (member "
                f"{s.member}). A class trainable must implement save_checkpoint(); a function "
                "trainable must pass checkpoint= to tune.report() (at least every "
                "perturbation_interval) and restore from tune.get_checkpoint()"
            )
        logger.warning(
            "gpbt: member %d's donor, member %d (trial %s), had no checkpoint to give (its save "
            "came back empty, or its actor or node died first); member %d keeps its own "
            "weights and takes the new hyperparameters",
            s.member,
            donor.member,
            donor.trial.trial_id,
            s.member,
        )

    def _exploit(self, tune_controller, trial, state, decision, donor, ckpt, ckpt_result):
        """Record and carry out an exploit: the decision's hyperparameters, on the donor's
        checkpoint, or on the receiver's own weights when `ckpt` is None (see
        `_check_keeps_own_weights`)."""
        _, training_result_type = _future_types()
        own = ckpt is None
        if own:
            self._check_keeps_own_weights(state, donor)
        self._queue_decision(decision, state, donor=donor, checkpoint=ckpt, lost=own)
        if trial.status != Trial.PAUSED:
            # Stop the actor: without saving when the donor's weights replace its own; saving
            # them when it keeps them, so that Tune restores it from that save.
            tune_controller.pause_trial(trial, should_checkpoint=own)
        new_config = Space.nest(decision.config, into=trial.config)
        trial.set_config(new_config)
        for name, value in decision.config.items():
            trial.evaluated_params[name] = value
        if own:
            state.checkpoint, state.ready_result = None, None
            state.checkpoint_time = None
            self.num_exploits += 1
            return
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

    def _queue_decision(
        self, decision: Decision, state: _Member, *, donor=None, checkpoint=None, lost=False
    ):
        if self._store_arg is None or decision.record is None:
            return
        rec = decision.record.to_dict()
        rec["trial_id"] = state.trial.trial_id
        if donor is not None:
            rec["donor_trial_id"] = donor.trial.trial_id
            path = getattr(checkpoint, "path", None)
            if lost:
                rec["donor_lost"] = True  # no state to give: the receiver kept its own weights
            elif path is not None:
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
        if self._logging and self._live_log is not None:  # ours, opened from `logging`
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
        if self._driver is not None:
            # who waits at the boundary belongs with the trials, which do not travel either
            driver = d["_driver"] = copy.copy(self._driver)
            driver.arrivals = {}
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


def _stable_text(obj: Any) -> str:
    """JSON text for what a config holds besides plain data (RLlib's learner classes, policy
    mapping functions): the same object gives the same text in every process, so a resumed
    run's config compares equal to the stored one (str() would embed a memory address)."""
    name = getattr(obj, "__qualname__", None)
    if name is not None and getattr(obj, "__module__", None):
        return f"{obj.__module__}:{name}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(obj))
