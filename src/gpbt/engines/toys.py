"""Toy problems that run in-process with no engine, for tests, the demo and quick ablations.

- `QuadraticToy`: the PBT paper's toy (Jaderberg et al. 2017, section 4.1). Maximise
  Q(theta) = 1.2 - theta0^2 - theta1^2 while only following the surrogate
  Q(theta | h) = 1.2 - h0 theta0^2 - h1 theta1^2. A member with h = (1, 0) only shrinks theta0;
  copying weights between members combines their progress, which a fixed h cannot.
- `MovingOptimumToy`: progress per step is largest when the hyperparameter sits near an optimum
  that drifts during training (as a good learning rate decays), so a schedule beats any constant.

Each member's state is a small numpy array that an exploit copies, like weights. Each toy has
`defaults`, the untuned values that a config leaving a hyperparameter out trains with (as an
agent's default hyperparameters do), which the "default" method relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpbt.core.decisions import Exploit, Stop
from gpbt.core.schedulers import PopulationScheduler
from gpbt.core.space import Float, Space


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


@dataclass
class ToyResult:
    best_score: float
    final_scores: list[float]
    exploits: int
    records: list[dict] = field(default_factory=list)
    diversity: list[float] = field(default_factory=list)


def run_toy(toy, scheduler: PopulationScheduler, population: int, seed: int) -> ToyResult:
    """Train a population in lockstep on `toy`, asking `scheduler` at every interval.

    The initial states and the toy's own noise come from `seed` alone, so two methods with the
    same seed face the same problem instance (common random numbers).
    """
    env_rng = np.random.default_rng([seed, 7919])
    configs = scheduler.initial_population(population)
    states = [toy.init_state(env_rng) for _ in range(population)]
    member_rngs = [np.random.default_rng([seed, i]) for i in range(population)]
    records: list[dict] = []
    diversity = [scheduler.space.diversity(configs)]
    exploits = 0
    for t in range(1, toy.steps + 1):
        states = [toy.step(s, configs[i], t, member_rngs[i]) for i, s in enumerate(states)]
        if t % toy.interval == 0 or t == toy.steps:
            scores = {i: toy.score(s) for i, s in enumerate(states)}
            decisions = scheduler.on_generation(t, scores)
            snapshot = [s.copy() for s in states]
            for i, d in decisions.items():
                if d.record is not None:
                    records.append(d.record.to_dict())
                if isinstance(d, Exploit):
                    states[i] = snapshot[d.donor].copy()
                    configs[i] = d.config
                    exploits += 1
                elif isinstance(d, Stop):
                    pass
            diversity.append(scheduler.space.diversity(configs))
    final = [toy.score(s) for s in states]
    return ToyResult(
        best_score=max(final),
        final_scores=final,
        exploits=exploits,
        records=records,
        diversity=diversity,
    )
