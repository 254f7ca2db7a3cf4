"""Update strategies: how a loser's new hyperparameters are chosen once it copies a winner.

Every strategy is pure: it reads an `ExploreContext` (configs, scores, a seeded generator) and
returns the loser's new config plus the loser's own strategy state (PL's velocity). Nothing here
knows about weights or engines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpbt.core.space import Choice, Int, Space, to_plain


@dataclass
class ExploreContext:
    space: Space
    rng: np.random.Generator
    time: float
    loser: int
    winner: int
    loser_config: dict[str, Any]
    winner_config: dict[str, Any]
    loser_state: dict[str, Any]
    winner_score: float  # internal, higher-is-better
    # every member that has a config: member -> (config, internal score or None); PL's centre
    # term averages over it and PB2 treats the other members as in-flight points
    population: dict[int, tuple[dict[str, Any], float | None]] = field(default_factory=dict)


class Strategy:
    """Base class; subclasses override `explore`."""

    name = "strategy"

    def check_space(self, space: Space) -> None:
        """Raise ValueError if this strategy cannot work with `space`."""

    def new_member_state(self, space: Space) -> dict[str, Any]:
        return {}

    def explore(self, ctx: ExploreContext) -> tuple[dict[str, Any], dict[str, Any]]:
        raise NotImplementedError

    def observe(
        self,
        member: int,
        time: float,
        prev_time: float,
        prev_score: float,
        score: float,
        config: dict[str, Any],
    ) -> None:
        """Hear about a score change (PB2 learns from these; others ignore them)."""

    def options(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _is_unordered(p) -> bool:
    return isinstance(p, Choice) and not p.ordered


# Standard deviation of U(0, 1): the spread of a freshly sampled population in unit space.
UNIFORM_SD = 1.0 / math.sqrt(12.0)


def unit_matrix(space: Space, configs: list[dict[str, Any]]) -> np.ndarray:
    """The configs' unit-space coordinates as an (n, d) array: `space.to_unit` for each config,
    computed one parameter at a time with numpy (a decision at population 256 must stay well
    under a millisecond; 256 x d scalar `to_unit` calls would not)."""
    cols = []
    for name, p in space.params.items():
        values = [c[name] for c in configs]
        if isinstance(p, Choice):
            cols.append(np.array([p.to_unit(v) for v in values], dtype=float))
            continue
        f = p._float() if isinstance(p, Int) else p
        x = np.asarray(values, dtype=float)
        if f.log:
            lo, hi = math.log(f.low), math.log(f.high)
            cols.append((np.log(x) - lo) / (hi - lo))
        else:
            cols.append((x - f.low) / (f.high - f.low))
    return np.stack(cols, axis=1) if cols else np.zeros((len(configs), 0))


class PairwiseLearning(Strategy):
    """The loser update of the Competitive Swarm Optimizer, used as PL in GPBT-PL.

    v <- w_inertia*r1*v + w_winner*r2*(x_w - x_l) + w_center*r3*(x_mean - x_l)
    x_l <- clip(x_l + v)

    `space="unit"` works in the search space's [0, 1] view (log parameters in log space);
    `space="raw"` works on raw values (ordered choices by index), as the authors' released code
    did. `resample_probability` replaces a parameter by a fresh draw instead (0.25 in the
    released PPO runs).

    Options beyond the paper (issue 15; every one off by default, and off they draw nothing
    from the generator, so the paper's method is unchanged bit for bit):

    - `anchor="winner"`: the step starts from the winner's position, x_l <- clip(x_w + v): the
      loser now carries the winner's weights, so it continues from the winner's
      hyperparameters in the direction the pair points (loser -> winner), instead of landing
      between the two.
    - `spread_jitter=s`: exploration whose size grows as the population's spread shrinks. Per
      parameter, N(0, sigma^2) is added to the new position (not to the velocity), with
      sigma = s * max(0, 1 - sd / sd_uniform), sd the parameter's standard deviation over
      the population in unit space and sd_uniform = 1/sqrt(12) that of a fresh population.
    - `escape_distance=e`: a parameter on which the pair has converged (unit distance below
      e) is drawn afresh from the search space (velocity reset): PL has no pull left there.
      With `escape_step=s` the escape is local instead: the winner's value plus N(0, s^2) in
      the unit space (clipped), a restart near what works rather than anywhere.

    The last two work in the unit space only.
    """

    name = "pl"

    def __init__(
        self,
        w_inertia: float = 1.0,
        w_winner: float = 1.0,
        w_center: float = 0.0,
        velocity_clamp: float | None = None,
        resample_probability: float = 0.0,
        space: str = "unit",
        anchor: str = "loser",
        spread_jitter: float = 0.0,
        escape_distance: float = 0.0,
        escape_step: float | None = None,
    ):
        if space not in ("unit", "raw"):
            raise ValueError(f"PairwiseLearning space={space!r}: use 'unit' or 'raw'")
        if not 0.0 <= resample_probability <= 1.0:
            raise ValueError(
                f"PairwiseLearning resample_probability={resample_probability}: "
                "must be between 0 and 1"
            )
        if velocity_clamp is not None and velocity_clamp <= 0:
            raise ValueError(
                f"PairwiseLearning velocity_clamp={velocity_clamp}: must be > 0 or None"
            )
        if anchor not in ("loser", "winner"):
            raise ValueError(f"PairwiseLearning anchor={anchor!r}: use 'loser' or 'winner'")
        if not 0.0 <= spread_jitter <= 1.0:
            raise ValueError(
                f"PairwiseLearning spread_jitter={spread_jitter}: must be between 0 and 1 "
                "(a standard deviation in the unit space)"
            )
        if not 0.0 <= escape_distance <= 1.0:
            raise ValueError(
                f"PairwiseLearning escape_distance={escape_distance}: must be between 0 and 1 "
                "(a distance in the unit space)"
            )
        if escape_step is not None and not 0.0 < escape_step <= 1.0:
            raise ValueError(
                f"PairwiseLearning escape_step={escape_step}: must be in (0, 1] (a standard "
                "deviation in the unit space) or None (a fresh draw)"
            )
        if escape_step is not None and not escape_distance:
            raise ValueError("PairwiseLearning escape_step needs escape_distance > 0")
        if space == "raw" and (spread_jitter or escape_distance):
            raise ValueError(
                "PairwiseLearning spread_jitter and escape_distance work in the unit space; "
                "use space='unit'"
            )
        self.anchor = anchor
        self.spread_jitter = float(spread_jitter)
        self.escape_distance = float(escape_distance)
        self.escape_step = None if escape_step is None else float(escape_step)
        self.w_inertia = float(w_inertia)
        self.w_winner = float(w_winner)
        self.w_center = float(w_center)
        self.velocity_clamp = velocity_clamp
        self.resample_probability = float(resample_probability)
        self.space = space

    def options(self) -> dict[str, Any]:
        return {
            "w_inertia": self.w_inertia,
            "w_winner": self.w_winner,
            "w_center": self.w_center,
            "velocity_clamp": self.velocity_clamp,
            "resample_probability": self.resample_probability,
            "space": self.space,
            **self._extra_options(),
        }

    def _extra_options(self) -> dict[str, Any]:
        # Only the options set away from their defaults, so the paper's method describes (and
        # stores) itself exactly as before they existed.
        extra: dict[str, Any] = {}
        if self.anchor != "loser":
            extra["anchor"] = self.anchor
        if self.spread_jitter:
            extra["spread_jitter"] = self.spread_jitter
        if self.escape_distance:
            extra["escape_distance"] = self.escape_distance
        if self.escape_step is not None:
            extra["escape_step"] = self.escape_step
        return extra

    def new_member_state(self, space: Space) -> dict[str, Any]:
        return {"velocity": {n: 0.0 for n, p in space.params.items() if not _is_unordered(p)}}

    def _coords(self, space: Space, config: dict[str, Any]) -> np.ndarray:
        return space.to_unit(config) if self.space == "unit" else space.to_raw(config)

    def explore(self, ctx: ExploreContext) -> tuple[dict[str, Any], dict[str, Any]]:
        space, rng = ctx.space, ctx.rng
        x_l = self._coords(space, ctx.loser_config)
        x_w = self._coords(space, ctx.winner_config)
        if self.w_center:
            others = [c for c, _ in ctx.population.values()] or [ctx.loser_config]
            x_mean = np.mean([self._coords(space, c) for c in others], axis=0)
        else:
            # The centre term is off by default: skip the O(population) mean, which would
            # otherwise dominate a decision at large populations.
            x_mean = x_l
        if self.space == "unit":
            lo, hi = np.zeros(len(space)), np.ones(len(space))
        else:
            lo, hi = space.raw_bounds()
        sigma = None
        if self.spread_jitter:
            members = [c for c, _ in ctx.population.values()] or [ctx.loser_config]
            sd = unit_matrix(space, members).std(axis=0)
            sigma = self.spread_jitter * np.maximum(0.0, 1.0 - sd / UNIFORM_SD)
        base = x_w if self.anchor == "winner" else x_l
        velocity = dict(ctx.loser_state.get("velocity", {}))
        new_config: dict[str, Any] = {}
        # One draw of each random number per parameter, in a fixed order, so that a given
        # generator state always gives the same update (tests and replay rely on it).
        for i, (name, p) in enumerate(space.params.items()):
            resample = rng.uniform() < self.resample_probability
            r1, r2, r3 = rng.uniform(size=3)
            if resample:
                new_config[name] = p.sample(rng)
                if name in velocity:
                    velocity[name] = 0.0
                continue
            if _is_unordered(p):
                # An unordered category has no direction to move in: learn from the winner.
                new_config[name] = ctx.winner_config[name]
                continue
            if self.escape_distance and abs(x_w[i] - x_l[i]) < self.escape_distance:
                # The pair agrees on this parameter: nothing to learn from it, so explore.
                if self.escape_step is None:
                    new_config[name] = to_plain(p.sample(rng))
                else:
                    x_new = float(np.clip(x_w[i] + self.escape_step * rng.standard_normal(), 0, 1))
                    new_config[name] = to_plain(p.from_unit(x_new))
                velocity[name] = 0.0
                continue
            v = (
                self.w_inertia * r1 * velocity.get(name, 0.0)
                + self.w_winner * r2 * (x_w[i] - x_l[i])
                + self.w_center * r3 * (x_mean[i] - x_l[i])
            )
            if self.velocity_clamp is not None:
                v = float(np.clip(v, -self.velocity_clamp, self.velocity_clamp))
            x_new = base[i] + v
            if sigma is not None:
                x_new += sigma[i] * rng.standard_normal()
            x_new = float(np.clip(x_new, lo[i], hi[i]))
            velocity[name] = float(v)
            new_config[name] = to_plain(
                p.from_unit(x_new) if self.space == "unit" else p.from_raw(x_new)
            )
        return new_config, {**ctx.loser_state, "velocity": velocity}


class Perturb(Strategy):
    """PBT's explore: start from the winner's config, scale numbers by a random factor, shift
    ordered choices one index, or (with probability `resample_probability`) replace the value
    by a draw chosen by `resample`.

    `factors`: one is picked uniformly per parameter and step. Ray Tune's and the PBT paper's
    (1.2, 0.8) are not symmetric on a log scale: the mean log factor is
    (ln 1.2 + ln 0.8) / 2 = -0.0204 per step, so a value that is only explored, never
    selected, shrinks by about 2% per step on average (19 steps: x0.68). Factors whose logs
    cancel, such as (1.25, 0.8), have no such drift (docs/research/pairwise.md, section 8).

    `resample` (issue 25), what a resample draws:
    - "prior" (the default, Ray Tune's): a fresh draw from the whole space. On a log range
      that pulls toward the range's log-midpoint, wherever the winner was.
    - "local": the winner's value moved by N(0, LOCAL_RESAMPLE_SD^2) in the unit space,
      reflected at the ends (a reflected walk's long-run spread is the uniform prior, so it
      pulls toward no point; clipping would pile draws on the edges). An unordered choice has
      no neighbourhood and is drawn from the prior.
    - "none": never resample; every number is scaled by a factor. `resample_probability` is
      then unused.
    The generator is read in the same order under every rule (one uniform, one factor index,
    one shift per parameter; "local" adds one normal when it resamples), so "prior" is the
    step as it always was, bit for bit.
    """

    name = "perturb"

    # `perturbation_factors` is the name PBT and a method's options table use for them
    # (gpbt.core.methods reads a strategy's options from this signature)
    def __init__(
        self,
        perturbation_factors: tuple[float, ...] = (1.2, 0.8),
        resample_probability: float = 0.25,
        resample: str = "prior",
    ):
        factors = perturbation_factors
        if (
            len(factors) == 0
            or not all(isinstance(f, int | float) and math.isfinite(f) for f in factors)
            or any(f <= 0 for f in factors)
        ):
            raise ValueError(
                f"Perturb perturbation_factors={factors}: give one or more positive factors, "
                "e.g. (1.2, 0.8), or (1.25, 0.8) for no drift on a log scale"
            )
        if not 0.0 <= resample_probability <= 1.0:
            raise ValueError(
                f"Perturb resample_probability={resample_probability}: must be between 0 and 1"
            )
        if resample not in RESAMPLE_RULES:
            raise ValueError(
                f"Perturb resample={resample!r}: use one of {list(RESAMPLE_RULES)} (prior: a "
                "fresh draw from the space; local: near the winner's value; none: never)"
            )
        self.factors = tuple(float(f) for f in factors)
        self.resample_probability = float(resample_probability)
        self.resample = resample

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "factors": list(self.factors),
            "resample_probability": self.resample_probability,
        }
        # only when set away from the default, so a stored run from before the option existed
        # describes itself (and resumes) exactly as it did
        if self.resample != "prior":
            out["resample"] = self.resample
        return out

    def explore(self, ctx: ExploreContext) -> tuple[dict[str, Any], dict[str, Any]]:
        new_config: dict[str, Any] = {}
        for name, p in ctx.space.params.items():
            value = ctx.winner_config[name]
            resample = ctx.rng.uniform() < self.resample_probability and self.resample != "none"
            factor = self.factors[int(ctx.rng.integers(len(self.factors)))]
            shift = 1 if ctx.rng.uniform() < 0.5 else -1
            if resample and self.resample == "local" and not _is_unordered(p):
                new_config[name] = p.from_unit(local_draw(p.to_unit(value), ctx.rng))
            elif resample:
                new_config[name] = p.sample(ctx.rng)
            elif isinstance(p, Choice):
                if p.ordered:
                    new_config[name] = p.from_raw(p.to_raw(value) + shift)
                else:
                    new_config[name] = value
            else:
                new_config[name] = p.from_raw(value * factor)
            new_config[name] = to_plain(new_config[name])
        return new_config, dict(ctx.loser_state)


RESAMPLE_RULES = ("prior", "local", "none")
# The "local" resample's step in the unit space. 0.1 is a tenth of the range: on a two-decade
# log range 0.2 decades (x1.6), about two (1.25, 0.8) perturbation steps at once, so a resample
# still jumps further than a perturbation, but it keeps the winner's neighbourhood instead of
# forgetting it (a prior draw lands anywhere). The same scale as gpbt-pl-escape's
# escape_distance of 0.1.
LOCAL_RESAMPLE_SD = 0.1


def local_draw(u: float, rng: np.random.Generator, sd: float = LOCAL_RESAMPLE_SD) -> float:
    """`u` + N(0, sd^2), reflected back into [0, 1] (as often as needed)."""
    x = (float(u) + sd * rng.standard_normal()) % 2.0
    return 2.0 - x if x > 1.0 else x


class Resample(Strategy):
    """Draw the loser a completely fresh config (exploit then restart the search)."""

    name = "resample"

    def explore(self, ctx: ExploreContext) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            {n: to_plain(v) for n, v in ctx.space.sample(ctx.rng).items()},
            dict(ctx.loser_state),
        )


class KeepWinner(Strategy):
    """Copy the winner's config unchanged (exploit without explore); used by ablations."""

    name = "copy"

    def explore(self, ctx: ExploreContext) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(ctx.winner_config), dict(ctx.loser_state)
