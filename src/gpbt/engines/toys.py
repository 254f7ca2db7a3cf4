"""Toy problems that run in-process with no engine, for tests, the demo and quick ablations.

- `QuadraticToy`: the PBT paper's toy (Jaderberg et al. 2017, section 4.1). Maximise
  Q(theta) = 1.2 - theta0^2 - theta1^2 while only following the surrogate
  Q(theta | h) = 1.2 - h0 theta0^2 - h1 theta1^2. A member with h = (1, 0) only shrinks theta0;
  copying weights between members combines their progress, which a fixed h cannot.
- `MovingOptimumToy`: progress per step is largest when the hyperparameter sits near an optimum
  that drifts during training (as a good learning rate decays), so a schedule beats any constant.

Each member's state is a small numpy array that an exploit copies, like weights; a population
of them trains through the same lockstep loop as the vector engine (`ToyPopulation`). Each toy
has `defaults`, the untuned values that a config leaving a hyperparameter out trains with (as
an agent's default hyperparameters do), which the "default" method relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpbt.core.schedulers import PopulationScheduler
from gpbt.core.space import Float, Space
from gpbt.engines.lockstep import Lockstep, Trained


class QuadraticToy:
    name = "quadratic"

    def __init__(self, steps: int = 40, interval: int = 4, lr: float = 0.02):
        self.steps, self.interval, self.lr = steps, interval, lr
        self.space = Space({"h0": Float(0.0, 1.0), "h1": Float(0.0, 1.0)})
        # the untuned setting (method "default"): follow the true objective at half speed
        self.defaults = {"h0": 0.5, "h1": 0.5}

    def init_state(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([0.9, 0.9])

    def step(
        self, state: np.ndarray, config: dict[str, Any], t: int, rng: np.random.Generator
    ) -> np.ndarray:
        h = np.array([config["h0"], config["h1"]])
        # gradient ascent on the surrogate: d/dtheta (1.2 - h theta^2) = -2 h theta
        return state + self.lr * (-2.0 * h * state)

    def score(self, state: np.ndarray) -> float:
        return float(1.2 - (state**2).sum())


class MovingOptimumToy:
    name = "moving-optimum"

    def __init__(
        self, steps: int = 60, interval: int = 5, width: float = 0.15, noise: float = 0.02
    ):
        self.steps, self.interval, self.width, self.noise = steps, interval, width, noise
        self.space = Space({"lr": Float(1e-4, 1e-1, log=True)})
        self.defaults = {"lr": 1e-2}  # the untuned setting (method "default"): a usual lr

    def optimum(self, t: int) -> float:
        """Where the best learning rate sits (unit coordinate) at step t: high early, low late."""
        return 0.85 - 0.7 * t / self.steps

    def init_state(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(1)

    def step(
        self, state: np.ndarray, config: dict[str, Any], t: int, rng: np.random.Generator
    ) -> np.ndarray:
        u = self.space.params["lr"].to_unit(config["lr"])
        gain = math.exp(-((u - self.optimum(t)) ** 2) / (2 * self.width**2))
        return state + gain + self.noise * rng.standard_normal()

    def score(self, state: np.ndarray) -> float:
        return float(state[0])


TOYS = {"quadratic": QuadraticToy, "moving-optimum": MovingOptimumToy}


class ToyPopulation:
    """A population of one toy in lockstep (gpbt.engines.lockstep.Population).

    The initial states and the toy's own noise come from `seed` alone, so two methods with the
    same seed face the same problem instance (common random numbers); each member draws its
    noise from a stream of its own, which stays with the member (not its weights) on a copy.
    """

    def __init__(self, toy, population: int, seed: int):
        self.toy = toy
        env_rng = np.random.default_rng([seed, 7919])
        self.states = [toy.init_state(env_rng) for _ in range(population)]
        self.rngs = [np.random.default_rng([seed, i]) for i in range(population)]
        self.configs: list[dict[str, Any]] = []
        self.t = 0  # toy steps taken

    def complete(self, config: dict[str, Any]) -> dict[str, Any]:
        # a config that leaves a hyperparameter out trains with the toy's default (method
        # "default" leaves them all out), as the agents fill in theirs
        return {**self.toy.defaults, **config}

    def train(self, generation: int, until: int) -> Trained:
        while self.t < until:
            self.t += 1
            self.states = [
                self.toy.step(s, self.configs[i], self.t, self.rngs[i])
                for i, s in enumerate(self.states)
            ]
        return Trained({i: self.toy.score(s) for i, s in enumerate(self.states)})

    def copy_members(self, index: np.ndarray) -> None:
        snapshot = [s.copy() for s in self.states]
        self.states = [snapshot[int(j)].copy() for j in index]

    def set_configs(self, configs: list[dict[str, Any]]) -> None:
        self.configs = list(configs)

    def save(self, generation: int, configs: list[dict[str, Any]]) -> None:
        """Toys take milliseconds: an interrupted one is re-run from the start instead."""

    def times(self) -> list[int]:
        """The end of each generation: every `interval` steps, and the last step."""
        toy = self.toy
        return [t for t in range(1, toy.steps + 1) if t % toy.interval == 0 or t == toy.steps]


@dataclass
class ToyResult:
    best_score: float
    final_scores: list[float]
    exploits: int
    records: list[dict] = field(default_factory=list)
    diversity: list[float] = field(default_factory=list)


def run_toy(toy, scheduler: PopulationScheduler, population: int, seed: int) -> ToyResult:
    """Train a population in lockstep on `toy`, asking `scheduler` at every interval; no store.
    `diversity` is the population's config diversity at the start and after each generation."""
    members = ToyPopulation(toy, population, seed)
    configs = [members.complete(c) for c in scheduler.initial_population(population)]
    members.set_configs(configs)
    records: list[dict] = []
    diversity = [scheduler.space.diversity(configs)]
    exploits = 0

    def on_event(event: dict) -> None:
        nonlocal exploits
        records.extend(event["decisions"])
        exploits += event["exploits"]
        diversity.append(scheduler.space.diversity([m["config"] for m in event["members"]]))

    Lockstep(scheduler, members, members.times(), emit=on_event, complete=members.complete).run(
        configs
    )
    final = [toy.score(s) for s in members.states]
    return ToyResult(
        best_score=max(final),
        final_scores=final,
        exploits=exploits,
        records=records,
        diversity=diversity,
    )
