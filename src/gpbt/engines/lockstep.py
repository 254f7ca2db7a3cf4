"""The lockstep generation loop, written once for everything that trains a whole population
between decisions: the vector engine, the toy problems (and the bench's toy cells), and replay.

A generation: train every member up to the generation's time, write the reports, ask the
scheduler (`on_generation`) unless it is the last generation, write its decisions, hand the
exploits to the population as one index (member i continues from member index[i]'s state),
checkpoint when due, and emit one "generation" event that says what happened and where the
time went (train, scheduler, exploit gather, store and checkpoint seconds), so a benchmark
reads the timing instead of patching the engine.

What a population is (device arrays, numpy states, recorded scores) stays behind the
`Population` protocol; the order of operations, and so the decisions a seed produces, is
decided here alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gpbt.core.decisions import Exploit
from gpbt.core.schedulers import PopulationScheduler

TIMING_KEYS = ("scheduler_s", "gather_s", "store_s", "checkpoint_s")


@dataclass
class Trained:
    """What one generation of training gave: each member's score, and the per-member
    metrics written into its report row (None: the report carries the score alone)."""

    scores: dict[int, float]
    metrics: list[dict[str, float]] | None = None


class Population(Protocol):
    def train(self, generation: int, until: int | float) -> Trained:
        """Train every member up to `until` (the generation's time) and score it."""

    def copy_members(self, index: np.ndarray) -> None:
        """Exploit: member i continues from member `index[i]`'s state (index[i] == i: kept)."""

    def set_configs(self, configs: list[dict[str, Any]]) -> None:
        """The hyperparameters every member trains with from now on."""

    def save(self, generation: int, configs: list[dict[str, Any]]) -> None:
        """Checkpoint after `generation` (called only when a checkpoint is due)."""


@dataclass
class Lockstep:
    """Drive `population` through `times` (the end of each generation, in the population's
    time unit) asking `scheduler` in between.

    `store` (an ExperimentStore, or None) receives the reports and decisions; `emit` receives
    the events; `checkpoint_every` generations (0: never) and after the last one the population
    saves itself; `complete` fills a config with the values a member trains with for the
    hyperparameters it leaves out (an agent's or a toy's defaults).
    """

    scheduler: PopulationScheduler
    population: Population
    times: Sequence[int | float]
    store: Any = None
    emit: Callable[[dict], None] = field(default=lambda event: None)
    checkpoint_every: int = 0
    complete: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda config: config)

    def run(self, configs: list[dict[str, Any]], first: int = 1) -> list[dict[str, Any]]:
        """Run generations `first`..len(times) from `configs` (each member's current config);
        return the configs at the end."""
        configs = [self.complete(c) for c in configs]
        generations = len(self.times)
        for g in range(first, generations + 1):
            configs = self._generation(g, generations, configs)
        return configs

    def _generation(self, g: int, generations: int, configs: list[dict]) -> list[dict]:
        t_now = self.times[g - 1]
        size = len(configs)
        t0 = time.perf_counter()
        trained = self.population.train(g, t_now)
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        scores = trained.scores
        rows = []
        for i in range(size):
            row = {"member": i, "time": t_now, "score": scores[i], "config": configs[i]}
            if trained.metrics is not None:
                row["metrics"] = trained.metrics[i]
            rows.append(row)
        timing = dict.fromkeys(TIMING_KEYS, 0.0)
        ts = time.perf_counter()
        if self.store is not None:
            self.store.add_reports(rows)
        timing["store_s"] += time.perf_counter() - ts
        events = [""] * size
        n_exploits = 0
        records: list[dict] = []
        if g < generations:  # no decision after the last generation: nothing trains on
            ts = time.perf_counter()
            decisions = self.scheduler.on_generation(t_now, scores)
            timing["scheduler_s"] = time.perf_counter() - ts
            ts = time.perf_counter()
            records = [d.record.to_dict() for d in decisions.values() if d.record is not None]
            if self.store is not None:
                self.store.add_decisions(records)
            timing["store_s"] += time.perf_counter() - ts
            index = np.arange(size)
            configs = list(configs)
            for i, d in decisions.items():
                if isinstance(d, Exploit):
                    index[i] = d.donor
                    configs[i] = self.complete(d.config)
                    events[i] = f"copied {d.donor}"
                    n_exploits += 1
            if n_exploits:
                ts = time.perf_counter()
                self.population.copy_members(index)
                self.population.set_configs(configs)
                timing["gather_s"] = time.perf_counter() - ts
        if (self.checkpoint_every and g % self.checkpoint_every == 0) or g == generations:
            ts = time.perf_counter()
            self.population.save(g, configs)
            timing["checkpoint_s"] = time.perf_counter() - ts
        self.emit(
            {
                "type": "generation",
                "generation": g,
                "generations": generations,
                "time": t_now,
                "total": self.times[-1],
                "train_s": train_s,
                "manage_s": time.perf_counter() - t1,
                **timing,
                "exploits": n_exploits,
                # what was written to the store, for live loggers (TensorBoard, W&B) and replay
                "reports": rows,
                "decisions": records,
                "members": [
                    {"member": i, "score": scores[i], "config": configs[i], "event": events[i]}
                    for i in range(size)
                ],
            }
        )
        return configs
