"""The population schedulers: GPBT (random / sync / truncation pairing), PBT, PB2, random search.

All are one machine, `PopulationScheduler`, with a pairing rule and an update strategy:

    method     pairing      strategy
    gpbt-pl    random       PairwiseLearning
    pbt        truncation   Perturb
    pb2        truncation   PB2Explore (GP-UCB)
    random     none         -

The scheduler is pure: no files, clocks or global randomness. Every random choice comes from one
seeded `numpy.random.Generator` whose state is part of `state_dict()`, so a restored scheduler
continues bit-identically. Internally scores are "higher is better" (negated for mode="min");
NaN and infinite scores are the worst possible score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from gpbt.core.decisions import Continue, Decision, DecisionRecord, Exploit, Stop
from gpbt.core.space import Space, to_plain
from gpbt.core.strategies import (
    ExploreContext,
    KeepWinner,
    PairwiseLearning,
    Perturb,
    Resample,
    Strategy,
)

PAIRINGS = ("random", "sync", "truncation", "none")
WORST = -math.inf


@dataclass
class Member:
    config: dict[str, Any]
    strategy_state: dict[str, Any]
    # last reported score, internal orientation; None = never reported. After an exploit it is
    # the donor's score (the weights the member now carries) until the member reports again.
    score: float | None = None
    raw_score: float | None = None  # as reported (or inherited), for the log
    time: float | None = None  # time of the last report
    last_perturbation: float = 0.0
    # where this member's current stretch of training started (time, internal score); PB2
    # learns score change per unit time from these
    segment_start: tuple[float, float] | None = None
    failed: bool = False
    stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _clean(config: dict[str, Any]) -> dict[str, Any]:
    return {k: to_plain(v) for k, v in config.items()}


class PopulationScheduler:
    """Ask/tell core shared by every method (see the module docstring).

    Its constructor declares the settings every method shares, once. A method is a subclass
    whose constructor takes its own options as keyword arguments and forwards the rest
    (`**common`) here; `gpbt.core.methods` reads a method's options table from those
    signatures and these class attributes.
    """

    method = "custom"
    # The settings of this constructor that a method's options table may set (say
    # `quantile_fraction` for PBT). The run settings (perturbation_interval, burn_in_period,
    # mode, seed, max_time) come from the run's config instead; the rest the method fixes.
    shared_options: tuple[str, ...] = ()
    # Update strategies a method's options table may pick by name (`strategy = "perturb"`),
    # the first being the default; each strategy's constructor arguments are options too.
    # Empty: the method builds its own strategy.
    strategies: Mapping[str, type[Strategy]] = MappingProxyType({})
    # False for a method that follows given hyperparameters instead of searching (the untuned
    # reference, a fixed schedule): comparisons of tuners (the demo, the RLlib scripts) skip it.
    tunes = True

    def __init__(
        self,
        space: Space | dict,
        strategy: Strategy | None = None,
        *,
        pairing: str = "random",
        perturbation_interval: float = 50_000,
        burn_in_period: float = 0,
        mode: str = "max",
        seed: int = 0,
        quantile_fraction: float = 0.25,
        max_time: float | None = None,
        method: str | None = None,
        synch: bool = False,
        copy_margin: float = 0.0,
    ):
        self.space = space if isinstance(space, Space) else Space(space)
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing={pairing!r} is not known; use one of {list(PAIRINGS)}")
        if mode not in ("max", "min"):
            raise ValueError(f"mode={mode!r}: use 'max' (higher score is better) or 'min'")
        if not perturbation_interval or perturbation_interval <= 0:
            raise ValueError(
                f"perturbation_interval={perturbation_interval}: must be > 0 "
                "(units of time_attr, e.g. env steps)"
            )
        if burn_in_period < 0:
            raise ValueError(f"burn_in_period={burn_in_period}: must be >= 0")
        if not 0.0 < quantile_fraction <= 0.5:
            raise ValueError(f"quantile_fraction={quantile_fraction}: must be in (0, 0.5]")
        if pairing != "none" and strategy is None:
            raise ValueError(
                f"pairing={pairing!r} needs an update strategy, e.g. "
                "PairwiseLearning() or Perturb()"
            )
        if not (copy_margin >= 0 and math.isfinite(copy_margin)):
            raise ValueError(f"copy_margin={copy_margin}: must be a number >= 0")
        if copy_margin and pairing not in ("random", "sync"):
            raise ValueError(
                f"copy_margin applies to pairs (pairing 'random' or 'sync'), not {pairing!r}"
            )
        if synch and pairing != "truncation":
            raise ValueError(
                f"synch applies to truncation (PBT, PB2), not to pairing {pairing!r}; pairs "
                "decide for the whole population at once with pairing='sync'"
            )
        if strategy is not None:
            strategy.check_space(self.space)
        self.strategy = strategy
        # A pair's loser copies only when the winner is ahead by more than copy_margin times
        # the standard deviation of the population's latest scores (0: any lead, the paper).
        self.copy_margin = float(copy_margin)
        self.pairing = pairing
        self.perturbation_interval = float(perturbation_interval)
        self.burn_in_period = float(burn_in_period)
        self.mode = mode
        self.seed = int(seed)
        self.quantile_fraction = float(quantile_fraction)
        self.max_time = None if max_time is None else float(max_time)
        # PBT's `synch`: truncation decided at one boundary for everyone (Ray's synch=True)
        self.synch = bool(synch)
        if method is not None:
            self.method = method
        self.rng = np.random.default_rng(seed)
        self.members: dict[int, Member] = {}
        self.start_points: list[dict[str, Any]] = []

    @classmethod
    def example_options(cls, space: Space) -> dict[str, Any]:
        """The smallest options table that builds this method on `space`: what the shared
        method conformance suite builds every registered method with. A method whose
        constructor has an argument without a default overrides it."""
        return {}

    # ------------------------------------------------------------------ population
    @property
    def synchronous(self) -> bool:
        """True when decisions need the whole population at one boundary (`on_generation`)."""
        return self.pairing == "sync" or self.synch

    def check_population(self, n: int) -> None:
        """Raise ValueError if this scheduler cannot run a population of `n` members (too
        few, more start points than members); a method with its own needs adds them. Cheap:
        a config check calls it instead of drawing a population that may be huge."""
        if n < 1:
            raise ValueError(f"population={n}: need at least 1 member (2 or more to exploit)")
        if len(self.start_points) > n:
            raise ValueError(
                f"start_points has {len(self.start_points)} entries for a population of {n}; "
                "give at most one per member"
            )

    def initial_population(self, n: int) -> list[dict[str, Any]]:
        self.check_population(n)
        configs = [_clean(self.space.sample(self.rng)) for _ in range(n)]
        # drawn first, overridden after: the members past the start points start where they
        # would have without them (same seed, same draws)
        for i, point in enumerate(self.start_points):
            configs[i].update(point)
        for i, c in enumerate(configs):
            self.add_member(i, c)
        return [dict(c) for c in configs]

    def start_at(self, points: list[Mapping[str, Any]]) -> None:
        """Members 0, 1, ... start at these configs in `initial_population` (Ray Tune's
        `points_to_evaluate`); a point may give only some names, the rest are drawn as usual.
        Every value must lie in the space."""
        if not isinstance(points, list | tuple):
            raise ValueError(
                f"start_points must be a list of tables, e.g. [{{lr = 1e-3}}], got {points!r}"
            )
        checked = []
        for i, point in enumerate(points):
            if not isinstance(point, Mapping) or not point:
                raise ValueError(
                    f"start_points[{i}] = {point!r}: give a table of hyperparameter values, "
                    "e.g. {lr = 1e-3, clip = 0.2}"
                )
            try:
                checked.append(_clean(self.space.validate(point, partial=True)))
            except ValueError as err:
                raise ValueError(f"start_points[{i}]: {err}") from None
        self.start_points = checked

    def add_member(self, member: int, config: dict[str, Any]) -> None:
        """Register a member with a given config (engines that bring their own start points)."""
        flat = self.space.validate(config)
        state = self.strategy.new_member_state(self.space) if self.strategy else {}
        self.members[member] = Member(config=_clean(flat), strategy_state=state)

    def config(self, member: int) -> dict[str, Any]:
        return dict(self._member(member).config)

    def configs(self) -> dict[int, dict[str, Any]]:
        return {m: dict(s.config) for m, s in self.members.items()}

    def mark_failed(self, member: int) -> None:
        """A failed member is never a partner or donor again and gets no more decisions."""
        self._member(member).failed = True

    def unmark_failed(self, member: int) -> None:
        """An engine retried a failed member (Ray Tune re-adds a trial it restarts): it may be
        a partner, donor and decision-taker again, from its next report on."""
        self._member(member).failed = False

    def _member(self, member: int) -> Member:
        if member not in self.members:
            raise KeyError(
                f"member {member} is not in the population; known members are "
                f"{sorted(self.members)} (call initial_population first)"
            )
        return self.members[member]

    # ------------------------------------------------------------------ scores
    def _internal(self, score: float | None) -> float:
        if score is None:
            return WORST
        s = float(score)
        if not math.isfinite(s):
            return WORST
        return s if self.mode == "max" else -s

    def _external(self, internal: float) -> float:
        """Back to the caller's orientation (a NaN report is the worst score, -inf inside)."""
        return internal if self.mode == "max" else -internal

    def report(self, member: int, time: float, score: float) -> None:
        """Record a score without asking for a decision (every report, ready or not)."""
        m = self._member(member)
        if (
            m.time is not None
            and time == m.time
            and (
                m.raw_score == score
                or (
                    m.raw_score is not None and math.isnan(m.raw_score) and math.isnan(float(score))
                )
            )
        ):
            return  # the same report twice (on_ready after report): count it once
        internal = self._internal(score)
        if self.strategy is not None and m.segment_start is not None:
            t0, s0 = m.segment_start
            if time > t0 and math.isfinite(internal) and math.isfinite(s0):
                self.strategy.observe(member, float(time), t0, s0, internal, m.config)
        m.score, m.raw_score, m.time = internal, float(score), float(time)
        m.segment_start = (float(time), internal)

    def is_ready(self, member: int, time: float) -> bool:
        m = self._member(member)
        return (
            time >= self.burn_in_period and time - m.last_perturbation >= self.perturbation_interval
        )

    def on_report(self, member: int, time: float, score: float) -> Decision:
        """Record a report; decide only if the member is ready (async engines call this)."""
        self.report(member, time, score)
        m = self._member(member)
        if self.max_time is not None and time >= self.max_time:
            return self._stop(member, time)
        if self.is_ready(member, time) and not m.failed:
            return self.on_ready(member, time, score)
        return Continue()

    # ------------------------------------------------------------------ asynchronous
    def on_ready(self, member: int, time: float, score: float) -> Decision:
        """The member reached a perturbation boundary: pair it and decide its fate."""
        if self.synchronous:
            raise RuntimeError(
                "pairing='sync' decides for the whole population at once; call "
                "on_generation(time, scores) when every member reached the "
                "boundary"
            )
        self.report(member, time, score)
        m = self._member(member)
        m.last_perturbation = float(time)
        if self.max_time is not None and time >= self.max_time:
            return self._stop(member, time)
        if self.pairing == "none":
            return Continue(self._record(time, member, "continue", reason="no exploit"))
        if self.pairing == "random":
            return self._random_pair(member, time)
        return self._truncation(member, time)

    def _candidates(self, exclude: int | None = None) -> list[int]:
        """Members that may be partners or donors: reported at least once and not failed."""
        return [
            i
            for i, m in sorted(self.members.items())
            if i != exclude and m.score is not None and not m.failed
        ]

    def _random_pair(self, member: int, time: float) -> Decision:
        others = self._candidates(exclude=member)
        if not others:
            return Continue(
                self._record(time, member, "continue", reason="no other member has a score yet")
            )
        partner = others[int(self.rng.integers(len(others)))]
        mine, theirs = self.members[member].score, self.members[partner].score
        if self._beats(theirs, mine, self._margin()):
            return self._exploit(member, partner, time, partner=partner)
        return Continue(
            self._record(time, member, "continue", partner=partner, reason=self._kept_reason())
        )

    def _margin(self, scores: list[float | None] | None = None) -> float:
        """How far a pair's winner must be ahead for the loser to copy it (0 without
        `copy_margin`): copy_margin times the standard deviation of the finite latest scores
        (of the candidates, or of `scores`, a lockstep generation's snapshot)."""
        if not self.copy_margin:
            return 0.0
        if scores is None:
            scores = [self.members[i].score for i in self._candidates()]
        finite = [s for s in scores if s is not None and math.isfinite(s)]
        return self.copy_margin * float(np.std(finite)) if len(finite) > 1 else 0.0

    def _beats(self, theirs: float, mine: float, margin: float) -> bool:
        if not margin:
            return mine < theirs
        return theirs - mine > margin

    def _kept_reason(self) -> str:
        if not self.copy_margin:
            return "won or tied its pair"
        return "won its pair or lost by no more than the margin"

    def _quantiles(self) -> tuple[list[int], list[int]]:
        ranked = self._candidates()
        # Ties broken by member id (a stable sort) so the ranking is a pure function of scores.
        ranked.sort(key=lambda i: self.members[i].score)
        n = len(ranked)
        k = int(math.ceil(n * self.quantile_fraction))
        k = min(k, n // 2)
        return ranked[:k], ranked[n - k :] if k else []

    def _truncation(self, member: int, time: float) -> Decision:
        bottom, top = self._quantiles()
        if member not in bottom or not top:
            return Continue(
                self._record(time, member, "continue", reason="not in the bottom quantile")
            )
        donor = top[int(self.rng.integers(len(top)))]
        return self._exploit(member, donor, time, partner=donor)

    # ------------------------------------------------------------------ lockstep
    def _open_generation(
        self, time: float, scores: dict[int, float]
    ) -> tuple[list[int], dict[int, Decision] | None]:
        """Record every member's score at `time`; returns the members still in the population
        and, when this boundary decides nothing (the run's end, the burn-in), the decisions
        for all of them, else None. Every lockstep method starts a generation this way."""
        for member, score in sorted(scores.items()):
            self.report(member, time, score)
        active = [i for i in sorted(scores) if not self.members[i].failed]
        if self.max_time is not None and time >= self.max_time:
            return active, {i: self._stop(i, time) for i in active}
        if time < self.burn_in_period:
            return active, {i: Continue() for i in active}
        return active, None

    def on_generation(self, time: float, scores: dict[int, float]) -> dict[int, Decision]:
        """Every member reached `time` together (lockstep engines). Decisions are taken
        against the population as it stood at `time`: a donor index always means the donor's
        state *before* this generation's exploits, so an engine can apply them as one gather.
        """
        active, settled = self._open_generation(time, scores)
        if settled is not None:
            return settled
        for i in active:
            self.members[i].last_perturbation = float(time)
        # (config, score, score as reported) of every member at `time`: the state decisions
        # and their records refer to, whatever exploits at this boundary change after
        snapshot = {i: (dict(m.config), m.score, m.raw_score) for i, m in self.members.items()}
        decisions: dict[int, Decision] = {}
        if self.pairing == "none":
            return {
                i: Continue(self._record(time, i, "continue", reason="no exploit")) for i in active
            }
        margin = self._margin([snapshot[i][1] for i in self._candidates()])
        if self.pairing == "sync":
            order = list(active)
            perm = self.rng.permutation(len(order))
            order = [order[j] for j in perm]
            for a, b in zip(order[0::2], order[1::2], strict=False):
                sa, sb = snapshot[a][1], snapshot[b][1]
                loser, winner = (a, b) if sa < sb else (b, a)
                if margin and not self._beats(snapshot[winner][1], snapshot[loser][1], margin):
                    for x, y in ((a, b), (b, a)):
                        decisions[x] = Continue(
                            self._record(
                                time,
                                x,
                                "continue",
                                partner=y,
                                reason="pair within the margin",
                                snapshot=snapshot,
                            )
                        )
                    continue
                decisions[loser] = self._exploit(
                    loser, winner, time, partner=winner, snapshot=snapshot
                )
                decisions[winner] = Continue(
                    self._record(
                        time,
                        winner,
                        "continue",
                        partner=loser,
                        reason="won its pair",
                        snapshot=snapshot,
                    )
                )
            if len(order) % 2:
                odd = order[-1]
                decisions[odd] = Continue(
                    self._record(time, odd, "continue", reason="odd member sat out")
                )
            return decisions
        # random / truncation: every member is ready; visit them in a random order so no
        # member id is favoured, decide each against the snapshot.
        order = [active[j] for j in self.rng.permutation(len(active))]
        bottom, top = self._quantiles() if self.pairing == "truncation" else ([], [])
        for i in order:
            if self.pairing == "random":
                others = [j for j in self._candidates(exclude=i)]
                if not others:
                    decisions[i] = Continue(
                        self._record(time, i, "continue", reason="no other member has a score")
                    )
                    continue
                partner = others[int(self.rng.integers(len(others)))]
                if self._beats(snapshot[partner][1], snapshot[i][1], margin):
                    decisions[i] = self._exploit(
                        i, partner, time, partner=partner, snapshot=snapshot
                    )
                else:
                    decisions[i] = Continue(
                        self._record(
                            time,
                            i,
                            "continue",
                            partner=partner,
                            reason=self._kept_reason(),
                            snapshot=snapshot,
                        )
                    )
            else:
                if i in bottom and top:
                    donor = top[int(self.rng.integers(len(top)))]
                    decisions[i] = self._exploit(i, donor, time, partner=donor, snapshot=snapshot)
                else:
                    decisions[i] = Continue(
                        self._record(time, i, "continue", reason="not in the bottom quantile")
                    )
        return {i: decisions[i] for i in sorted(decisions)}

    # ------------------------------------------------------------------ decisions
    def _exploit(
        self,
        loser: int,
        winner: int,
        time: float,
        *,
        partner: int,
        snapshot: dict[int, tuple[dict, float | None, float | None]] | None = None,
    ) -> Decision:
        lm, wm = self.members[loser], self.members[winner]
        winner_config = snapshot[winner][0] if snapshot else dict(wm.config)
        winner_score = snapshot[winner][1] if snapshot else wm.score
        # Every member's config as it will train next with the score it will train on from
        # (decisions already taken at this boundary included: PB2 counts them as in-flight).
        # A member exploited earlier at this lockstep boundary carries its winner's weights
        # and score by now, as in the asynchronous path; its snapshot score would be the
        # weights it just gave up.
        population = {i: (dict(m.config), m.score) for i, m in self.members.items() if not m.failed}
        old_config = dict(lm.config)
        ctx = ExploreContext(
            space=self.space,
            rng=self.rng,
            time=float(time),
            loser=loser,
            winner=winner,
            loser_config=old_config,
            winner_config=winner_config,
            loser_state=lm.strategy_state,
            winner_score=winner_score,
            population=population,
        )
        new_config, new_state = self.strategy.explore(ctx)
        new_config = _clean(self.space.clip(new_config))
        # The record keeps the scores the decision was taken on.
        record = self._record(
            time,
            loser,
            "exploit",
            partner=partner,
            donor=winner,
            old_config=old_config,
            new_config=new_config,
            velocity=new_state.get("velocity"),
            reason="lost its pair" if self.pairing != "truncation" else "bottom quantile",
            snapshot=snapshot,
        )
        lm.config, lm.strategy_state = new_config, new_state
        # The loser now carries the winner's weights. Until it reports again it ranks with the
        # winner's score, so that a member deciding in between (asynchronous engines) does not
        # pair against, or rank below, weights that were just replaced. Its next score change
        # is measured from the winner's score too (what PB2 needs), under the new config.
        lm.score = winner_score
        lm.raw_score = self._external(winner_score)
        lm.segment_start = (float(time), winner_score)
        return Exploit(donor=winner, config=dict(new_config), record=record)

    def _stop(self, member: int, time: float) -> Decision:
        self.members[member].stopped = True
        return Stop(self._record(time, member, "stop", reason="reached max_time"))

    def _record(
        self,
        time: float,
        member: int,
        kind: str,
        *,
        partner: int | None = None,
        donor: int | None = None,
        old_config: dict | None = None,
        new_config: dict | None = None,
        velocity: dict | None = None,
        reason: str = "",
        snapshot: dict[int, tuple[dict, float | None, float | None]] | None = None,
    ) -> DecisionRecord:
        """`snapshot`: a lockstep boundary's state, whose reported scores the record keeps (a
        partner exploited earlier at the boundary already carries its donor's score)."""
        m = self.members[member]

        def reported(i: int | None) -> float:
            if i is None or i not in self.members:
                return math.nan
            raw = (
                snapshot[i][2]
                if snapshot is not None and i in snapshot
                else self.members[i].raw_score
            )
            return math.nan if raw is None else raw

        return DecisionRecord(
            time=float(time),
            member=member,
            kind=kind,
            method=self.method,
            partner=partner,
            donor=donor,
            member_score=reported(member),
            partner_score=reported(partner),
            old_config=dict(old_config if old_config is not None else m.config),
            new_config=new_config,
            velocity=None if velocity is None else dict(velocity),
            reason=reason,
        )

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        """The scheduler's settings, for the experiment store and reports."""
        return {
            "method": self.method,
            "pairing": self.pairing,
            "perturbation_interval": self.perturbation_interval,
            "burn_in_period": self.burn_in_period,
            "mode": self.mode,
            "seed": self.seed,
            "quantile_fraction": self.quantile_fraction,
            "max_time": self.max_time,
            "synch": self.synch,
            # only when set, so a stored run of the paper's method restores as before
            **({"copy_margin": self.copy_margin} if self.copy_margin else {}),
            **({"start_points": [dict(p) for p in self.start_points]} if self.start_points else {}),
            "strategy": None if self.strategy is None else self.strategy.name,
            "strategy_options": {} if self.strategy is None else self.strategy.options(),
            "space": self.space.to_dict(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "settings": self.describe(),
            "rng": self.rng.bit_generator.state,
            "members": {
                str(i): {
                    "config": m.config,
                    "strategy_state": m.strategy_state,
                    "score": m.score,
                    "raw_score": m.raw_score,
                    "time": m.time,
                    "last_perturbation": m.last_perturbation,
                    "segment_start": None if m.segment_start is None else list(m.segment_start),
                    "failed": m.failed,
                    "stopped": m.stopped,
                    "extra": m.extra,
                }
                for i, m in self.members.items()
            },
            "strategy": None if self.strategy is None else self.strategy.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine, theirs = self.describe(), state["settings"]
        differ = sorted(k for k in mine if mine[k] != theirs.get(k))
        if differ:
            raise ValueError(
                f"cannot restore scheduler state: settings differ in {differ} "
                "(restore into a scheduler built with the same settings)"
            )
        self.rng.bit_generator.state = state["rng"]
        self.members = {}
        for key, d in state["members"].items():
            self.members[int(key)] = Member(
                config=dict(d["config"]),
                strategy_state=d["strategy_state"],
                score=d["score"],
                raw_score=d["raw_score"],
                time=d["time"],
                last_perturbation=d["last_perturbation"],
                segment_start=None if d["segment_start"] is None else tuple(d["segment_start"]),
                failed=d["failed"],
                stopped=d["stopped"],
                extra=d.get("extra", {}),
            )
        if self.strategy is not None and state.get("strategy") is not None:
            self.strategy.load_state_dict(state["strategy"])


class GPBT(PopulationScheduler):
    """Generalized PBT: pairs instead of truncation, Pairwise Learning by default.

    `common`: PopulationScheduler's settings (pairing, perturbation_interval, seed, ...)."""

    method = "gpbt-pl"
    shared_options = ("pairing", "quantile_fraction", "copy_margin")
    strategies = MappingProxyType(
        {"pl": PairwiseLearning, "perturb": Perturb, "resample": Resample, "copy": KeepWinner}
    )

    def __init__(self, space: Space | dict, strategy: Strategy | None = None, **common: Any):
        if common.get("pairing") == "none":
            raise ValueError("GPBT pairing='none' never exploits; use RandomSearch instead")
        super().__init__(space, strategy if strategy is not None else PairwiseLearning(), **common)


class PBT(PopulationScheduler):
    """Population Based Training (Jaderberg et al. 2017): truncation + perturb/resample.

    The explore step's options are `Perturb`'s: `perturbation_factors`, `resample_probability`
    and `resample` ("prior", "local" or "none"). The defaults, (1.2, 0.8) with a prior resample
    at p = 0.25, are Ray Tune's; (1.25, 0.8) removes their downward drift on log scales
    (docs/research/pairwise.md, section 8).

    `common`: PopulationScheduler's settings (perturbation_interval, seed, synch, ...).
    """

    method = "pbt"
    shared_options = ("quantile_fraction", "synch")

    def __init__(
        self,
        space: Space | dict,
        *,
        resample_probability: float = 0.25,
        perturbation_factors: tuple[float, ...] = (1.2, 0.8),
        resample: str = "prior",
        **common: Any,
    ):
        super().__init__(
            space,
            Perturb(perturbation_factors, resample_probability, resample),
            pairing="truncation",
            **common,
        )


class PB2(PopulationScheduler):
    """PB2 (Parker-Holder et al. 2020): PBT's exploit, GP-UCB explore over a time-varying kernel.

    `common`: PopulationScheduler's settings (perturbation_interval, seed, synch, ...)."""

    method = "pb2"
    shared_options = ("quantile_fraction", "synch")

    def __init__(
        self,
        space: Space | dict,
        *,
        data_window: int = 64,
        kappa: float = 2.0,
        refit_every: int = 4,
        **common: Any,
    ):
        from gpbt.core.pb2 import PB2Explore

        super().__init__(
            space,
            PB2Explore(data_window=data_window, kappa=kappa, refit_every=refit_every),
            pairing="truncation",
            **common,
        )


class RandomSearch(PopulationScheduler):
    """The control: same budget and initial population, no exploit ever.

    `common`: PopulationScheduler's settings (perturbation_interval, seed, max_time, ...)."""

    method = "random"

    def __init__(self, space: Space | dict, **common: Any):
        super().__init__(space, None, pairing="none", **common)
