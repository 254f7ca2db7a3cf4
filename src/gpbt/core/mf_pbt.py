"""MF-PBT: Multiple-Frequencies Population-Based Training (Doulazmi et al. 2025, arXiv 2506.03225).

The population is split into sub-populations (contiguous blocks of member ids, the fastest
first) that evolve at different frequencies, counted in perturbation intervals: sub-population
s evolves when its members have finished a multiple of `frequencies[s]` intervals. When it
evolves, its members are ranked by their latest score and, as in the authors' released code
(hpo/utils/mf_pbt_genetics.py in github.com/WaelDLZ/MF-PBT):

- the bottom quantile copies the top quantile, rank for rank (the best of the bottom copies
  the best of the top), and perturbs the copied hyperparameters (PBT's explore);
- the "migration bracket", the quantile just above the bottom one, is offered the best members
  of the other sub-populations, best first: a bracket member whose score is below the best
  offer not yet taken copies that member's weights (the offer is then taken; otherwise the
  next, lower, bracket member is offered the same one). Migration is asymmetric: a member of a
  faster sub-population takes the migrant's hyperparameters with its weights, a member of a
  slower one keeps the hyperparameters of its own sub-population's best member, so the slow
  sub-populations import good weights without importing the greedy hyperparameters that made
  them. Migrants are not perturbed.

Slow sub-populations judge members on long stretches of training (less greedy), the fast one
on one interval (sample-efficient); migration lets weights flow between them. See
docs/research/mf-pbt.md for what the paper and the authors' code do, and how the frequencies
map onto a run of about 20 intervals and populations of 4 and 8.

Pure and seeded like every scheduler here: the ranking and pairing are deterministic, the one
seeded generator draws the initial population and the explore step, and each member's count
of intervals lives in its state, so a restored scheduler continues bit-identically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpbt.core.decisions import Continue, Decision, Exploit
from gpbt.core.schedulers import PopulationScheduler, _clean
from gpbt.core.selection import counted
from gpbt.core.space import Space
from gpbt.core.strategies import Perturb

MIGRATIONS = ("asymmetric", "copy", "none")
ROUNDS = "mf_pbt_intervals"  # Member.extra key: decision boundaries this member has reached


@dataclass
class _Plan:
    """One sub-population's evolution step, decided from one set of scores."""

    ranked: list[int]  # best first
    donors: dict[int, int] = field(default_factory=dict)  # bottom member -> top member
    migrants: dict[int, int] = field(default_factory=dict)  # bracket member -> other member
    bracket: list[int] = field(default_factory=list)


class MFPBT(PopulationScheduler):
    """Multiple-Frequencies PBT: sub-populations exploiting every `frequencies[s]` intervals,
    with asymmetric migration between them (see the module docstring).

    frequencies: one per sub-population, in perturbation intervals, strictly increasing (the
        paper's 1000-interval runs use (1, 10, 25, 50); (1, 5) suits runs of about 20
        intervals, see docs/research/mf-pbt.md).
    subpopulation_sizes: members per sub-population, fastest first, summing to the population
        (None: as equal as the population allows, the fastest get the extra members); each
        needs at least 2 members to exploit, 3 for a migration bracket.
    migration: "asymmetric" (the paper), "copy" (the paper's ablation: a migrant's
        hyperparameters always come with its weights) or "none" (independent sub-populations).
    quantile_fraction: the share of a sub-population in its top, bottom and migration brackets
        (the paper: quarters).
    perturbation_factors, resample_probability: the explore step (`Perturb`); the paper
        multiplies by 0.8 or 1.25 (symmetric in log space) and never resamples.
    """

    method = "mf-pbt"
    shared_options = ("quantile_fraction", "synch")

    def __init__(
        self,
        space: Space | dict,
        *,
        frequencies: tuple[int, ...] = (1, 5),
        subpopulation_sizes: tuple[int, ...] | None = None,
        migration: str = "asymmetric",
        resample_probability: float = 0.0,
        perturbation_factors: tuple[float, ...] = (1.25, 0.8),
        **common: Any,
    ):
        freqs = list(frequencies) if isinstance(frequencies, list | tuple) else None
        if (
            not freqs
            or not all(_is_whole(f) and f >= 1 for f in freqs)
            or any(b <= a for a, b in zip(freqs, freqs[1:], strict=False))
        ):
            raise ValueError(
                f"frequencies={frequencies!r}: give one whole number of perturbation intervals "
                "per sub-population, at least 1 and strictly increasing, e.g. [1, 5]"
            )
        if migration not in MIGRATIONS:
            raise ValueError(f"migration={migration!r} is not known; use one of {list(MIGRATIONS)}")
        sizes = None
        if subpopulation_sizes is not None:
            sizes = (
                list(subpopulation_sizes) if isinstance(subpopulation_sizes, list | tuple) else []
            )
            if len(sizes) != len(freqs) or not all(_is_whole(n) and n >= 2 for n in sizes):
                raise ValueError(
                    f"subpopulation_sizes={subpopulation_sizes!r}: give one whole number of "
                    f"members (2 or more) for each of the {len(freqs)} frequencies, or leave it "
                    "out to split the population evenly"
                )
        super().__init__(
            space,
            Perturb(tuple(perturbation_factors), resample_probability),
            pairing="truncation",
            **common,
        )
        self.frequencies = [int(f) for f in freqs]
        self.subpopulation_sizes = None if sizes is None else [int(n) for n in sizes]
        self.migration = migration

    # ------------------------------------------------------------------ sub-populations
    def sizes(self, population: int) -> list[int]:
        """Members per sub-population (fastest first) for a population of `population`."""
        m = len(self.frequencies)
        if self.subpopulation_sizes is not None:
            sizes = list(self.subpopulation_sizes)
            if sum(sizes) != population:
                raise ValueError(
                    f"subpopulation_sizes={sizes} add up to {sum(sizes)} members, but the "
                    f"population has {population}; give sizes that add up to {population}"
                )
            return sizes
        sizes = [population // m + (1 if s < population % m else 0) for s in range(m)]
        if min(sizes) < 2:
            raise ValueError(
                f"a population of {population} split into {m} sub-populations (frequencies="
                f"{self.frequencies}) leaves {min(sizes)} member(s) in one, which can never "
                f"exploit; use a population of at least {2 * m} or fewer frequencies"
            )
        return sizes

    def subpopulations(self) -> list[list[int]]:
        """Member ids of each sub-population, fastest first: contiguous blocks of the sorted
        ids (the authors' layout), so member 0 is in the fastest."""
        ids = sorted(self.members)
        blocks, start = [], 0
        for n in self.sizes(len(ids)):
            blocks.append(ids[start : start + n])
            start += n
        return blocks

    def check_population(self, n: int) -> None:
        super().check_population(n)
        self.sizes(n)  # a population that cannot be split is an error before any training

    # ------------------------------------------------------------------ the evolution step
    def _plan(self, s: int, block: list[int], score: Callable[[int], float]) -> _Plan:
        """Sub-population `s`'s exploits and migrations, from `score` (internal orientation)."""
        # members that can rank: reported and not failed; ties broken by member id
        ranked = sorted((i for i in block if self._can_rank(i)), key=lambda i: (-score(i), i))
        n = len(ranked)
        k = min(int(math.ceil(n * self.quantile_fraction)), n // 2)
        plan = _Plan(ranked=ranked)
        if k == 0:
            return plan
        top, bottom = ranked[:k], ranked[n - k :]
        plan.donors = dict(zip(bottom, top, strict=True))
        # the bracket just above the bottom one, never reaching into the top one
        plan.bracket = ranked[max(k, n - 2 * k) : n - k]
        if self.migration == "none":
            return plan
        offers = sorted(
            (i for i in self.members if i not in block and self._can_rank(i)),
            key=lambda i: (-score(i), i),
        )
        for member in plan.bracket:
            if offers and score(offers[0]) > score(member):
                plan.migrants[member] = offers.pop(0)
        return plan

    def _name(self, s: int) -> str:
        f = self.frequencies[s]
        return f"sub-population {s} (every {counted(f, 'interval')})"

    def _can_rank(self, i: int) -> bool:
        m = self.members[i]
        return m.score is not None and not m.failed

    def _where(self, member: int) -> tuple[int, list[int]]:
        """The member's sub-population and its members."""
        blocks = self.subpopulations()
        s = next(s for s, block in enumerate(blocks) if member in block)
        return s, blocks[s]

    def _decide(
        self,
        member: int,
        time: float,
        s: int,
        plan: _Plan | None,
        snapshot: dict[int, tuple[dict, float | None, float | None]] | None = None,
    ) -> Decision:
        """Member's decision at a boundary; `plan` is None when its sub-population rests."""
        where = self._name(s)
        if plan is None:
            done = self.members[member].extra[ROUNDS]
            return Continue(
                self._record(
                    time,
                    member,
                    "continue",
                    reason=f"{where} does not evolve after interval {done}",
                    snapshot=snapshot,
                )
            )
        rank = f"rank {plan.ranked.index(member) + 1} of {len(plan.ranked)}"
        if member in plan.donors:
            donor = plan.donors[member]
            decision = self._exploit(member, donor, time, partner=donor, snapshot=snapshot)
            decision.record.reason = (
                f"{where}: {rank}, bottom quantile; copies rank "
                f"{plan.ranked.index(donor) + 1} and perturbs its hyperparameters"
            )
            return decision
        if member in plan.migrants:
            return self._migrate(member, plan.migrants[member], time, s, plan, rank, snapshot)
        if member in plan.bracket:
            why = (
                "migration bracket, no member of another sub-population scores higher"
                if self.migration != "none"
                else "migration bracket, migration is off"
            )
        else:
            why = "neither in the bottom quantile nor in the migration bracket"
        return Continue(
            self._record(
                time, member, "continue", reason=f"{where}: {rank}, {why}", snapshot=snapshot
            )
        )

    def _migrate(
        self,
        member: int,
        migrant: int,
        time: float,
        s: int,
        plan: _Plan,
        rank: str,
        snapshot: dict[int, tuple[dict, float | None, float | None]] | None,
    ) -> Decision:
        """`member` takes `migrant`'s weights; its hyperparameters follow the migration rule,
        unperturbed (the authors explore only after an exploit inside a sub-population)."""
        their_s, _ = self._where(migrant)

        def config_of(i: int) -> dict[str, Any]:
            return dict(snapshot[i][0]) if snapshot else dict(self.members[i].config)

        faster = self.frequencies[s] < self.frequencies[their_s]
        if self.migration == "copy" or faster:
            new_config, source = config_of(migrant), "its hyperparameters too"
        else:
            best = plan.ranked[0]
            new_config = config_of(best)
            source = f"the hyperparameters of its own sub-population's best, member {best}"
        new_config = _clean(new_config)
        m = self.members[member]
        migrant_score = snapshot[migrant][1] if snapshot else self.members[migrant].score
        record = self._record(
            time,
            member,
            "exploit",
            partner=migrant,
            donor=migrant,
            old_config=dict(m.config),
            new_config=new_config,
            reason=(
                f"{self._name(s)}: {rank}, migration bracket; copies the weights of member "
                f"{migrant} of {self._name(their_s)}, which scores higher, and {source}"
            ),
            snapshot=snapshot,
        )
        # As after any exploit (PopulationScheduler._exploit): the member carries the
        # migrant's weights, so it ranks with the migrant's score until it reports again.
        m.config = new_config
        m.score = migrant_score
        m.raw_score = self._external(migrant_score)
        m.segment_start = (float(time), migrant_score)
        return Exploit(donor=migrant, config=dict(new_config), record=record)

    def _count_interval(self, member: int, s: int) -> bool:
        """Count a finished interval of `member` (of sub-population `s`); True when the
        sub-population evolves now."""
        extra = self.members[member].extra
        extra[ROUNDS] = int(extra.get(ROUNDS, 0)) + 1
        return extra[ROUNDS] % self.frequencies[s] == 0

    # ------------------------------------------------------------------ asynchronous
    def _truncation(self, member: int, time: float) -> Decision:
        """The asynchronous step (PopulationScheduler.on_ready calls it at each of a member's
        boundaries): the member's sub-population's plan from everyone's latest scores, of
        which only this member's part is carried out now."""
        s, block = self._where(member)
        evolves = self._count_interval(member, s)
        plan = self._plan(s, block, lambda i: self.members[i].score) if evolves else None
        return self._decide(member, time, s, plan)

    # ------------------------------------------------------------------ lockstep
    def on_generation(self, time: float, scores: dict[int, float]) -> dict[int, Decision]:
        """Every member reached `time` together: every evolving sub-population's plan is taken
        from the scores at `time`, before any of its exploits (a donor index means the donor's
        state before this generation's exploits, as the engines gather them)."""
        active, settled = self._open_generation(time, scores)
        if settled is not None:
            return settled
        blocks = self.subpopulations()
        evolving = set()
        for s, block in enumerate(blocks):
            for i in block:
                if i in active:
                    self.members[i].last_perturbation = float(time)
                    if self._count_interval(i, s):
                        evolving.add(s)
        snapshot = {i: (dict(m.config), m.score, m.raw_score) for i, m in self.members.items()}
        plans = {s: self._plan(s, blocks[s], lambda i: snapshot[i][1]) for s in sorted(evolving)}
        decisions: dict[int, Decision] = {}
        for s, block in enumerate(blocks):
            for i in block:
                if i in active:
                    decisions[i] = self._decide(i, time, s, plans.get(s), snapshot)
        return {i: decisions[i] for i in sorted(decisions)}

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "frequencies": list(self.frequencies),
            "subpopulation_sizes": (
                None if self.subpopulation_sizes is None else list(self.subpopulation_sizes)
            ),
            "migration": self.migration,
        }


def _is_whole(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and float(value).is_integer()
    )
