"""The asynchronous decision protocol, written once for every engine whose members report one
at a time: the local process engine and the Ray Tune adapter (the counterpart of
`gpbt.engines.lockstep.Lockstep`, which drives a population that trains in one piece).

The driver decides when a member's result reaches the scheduler, when to ask it for a
decision, when a member must wait for its generation (synchronous schedulers: `pairing =
"sync"`, PBT/PB2 with `synch = true`) and when that generation is decided. It returns the
decisions; the engine carries them out (checkpoint copies, a trial's pause and restore) and
writes the store. It holds no files, processes or clocks: its only state is which members
wait at the boundary, with the time and score they arrived with.

    driver = AsyncDriver(scheduler)
    step = driver.on_result(member, time, score)  # {member: Continue | Exploit | Stop | WAIT}
    gen = driver.generation(live_members)          # None until every live member waits
    states = gen.snapshot(lambda donor: ...)       # donors' states, before any exploit applies
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gpbt.core.decisions import Continue, Decision, Exploit
from gpbt.core.schedulers import PopulationScheduler

T = TypeVar("T")


@dataclass(frozen=True)
class Wait:
    """Synchronous schedulers: the member reached its generation's boundary. The engine parks
    it (trains it no further) until `AsyncDriver.generation` decides for the whole population;
    the scheduler hears its score with that generation."""

    record: None = None
    kind: str = "wait"


WAIT = Wait()


@dataclass
class Step:
    """What one event asks the engine to carry out: a decision per member (in member order).
    `time` is the generation's time when a generation was decided (None: one member's report);
    `arrivals` each deciding member's (time, score) as it reached the boundary."""

    decisions: dict[int, Decision | Wait]
    time: float | None = None
    arrivals: dict[int, tuple[float, float]] = field(default_factory=dict)

    def donors(self) -> list[int]:
        """The members some exploit copies, in member order."""
        return sorted({d.donor for d in self.decisions.values() if isinstance(d, Exploit)})

    def snapshot(self, state_of: Callable[[int], T]) -> dict[int, T]:
        """Each donor's state, read through `state_of` before the engine applies any exploit:
        the scheduler decided against the population as it stood, so a donor that is itself a
        loser in this generation still hands over its state from before it."""
        return {d: state_of(d) for d in self.donors()}


class AsyncDriver:
    """Turn members' results into the scheduler's decisions, one result at a time.

    `grid=False` (the local engine): a member waits for its generation once the scheduler
    says it is ready (`is_ready`), a member reaching `max_time` stops at once with its own
    decision, and a generation is decided at the earliest waiting member's time.
    `grid=True` (the Ray adapter): generations fall on a fixed grid, at max(interval,
    burn_in) and every interval after it, with `max_time` as the last one (so the last
    generation stops everyone together); a member waits at the first grid point it reached
    and the generation is decided at the grid point's time. The two agree whenever members
    report on the grid (every perturbation interval is a whole number of steps); they differ
    for steps that overshoot it, where the local engine follows each member's own clock and
    Tune's trials keep to the grid Ray's own PBT keeps. Kept apart so neither engine's
    decisions change.
    """

    def __init__(self, scheduler: PopulationScheduler, *, grid: bool = False):
        self.scheduler = scheduler
        self.grid = grid
        self.arrivals: dict[int, tuple[float, float]] = {}
        self.next_boundary = self._clamp(
            max(float(scheduler.perturbation_interval), float(scheduler.burn_in_period))
        )

    @property
    def synchronous(self) -> bool:
        return bool(self.scheduler.synchronous)

    def _clamp(self, boundary: float) -> float:
        top = self.scheduler.max_time
        return boundary if top is None else min(boundary, float(top))

    # ------------------------------------------------------------------ one member
    def on_result(self, member: int, time: float, score: Any) -> Step:
        """A member's result at its own `time`: the decision for it (a Continue without a
        record when it was not ready: nothing to carry out), or WAIT."""
        s = self.scheduler
        if not self.synchronous:
            return Step({member: s.on_report(member, time, score)})
        if self.grid:
            if time < self.next_boundary:
                s.report(member, time, score)
                return Step({member: Continue()})
        else:
            if s.max_time is not None and time >= s.max_time:
                return Step({member: s.on_report(member, time, score)})
            if not s.is_ready(member, time):
                s.report(member, time, score)
                return Step({member: Continue()})
        # reported to the scheduler with the whole generation
        self.arrivals[member] = (float(time), score)
        return Step({member: WAIT})

    def observe(self, member: int, time: float, score: Any) -> None:
        """A result no decision follows (Tune's final result of a trial that completed)."""
        self.scheduler.report(member, time, score)

    def waiting(self, member: int) -> bool:
        return member in self.arrivals

    def leave(self, member: int) -> None:
        """The member takes no further part (it failed or finished): it waits no more."""
        self.arrivals.pop(member, None)

    # ------------------------------------------------------------------ the population
    def generation(self, live: Iterable[int]) -> Step | None:
        """Synchronous schedulers: once every live member waits, decide for all of them at
        once (None until then, or when no member is live)."""
        live = sorted(live)
        if not live or any(m not in self.arrivals for m in live):
            return None
        arrivals = {m: self.arrivals.pop(m) for m in live}
        time = self.next_boundary if self.grid else min(t for t, _ in arrivals.values())
        decisions = self.scheduler.on_generation(time, {m: a[1] for m, a in arrivals.items()})
        if self.grid:
            self.next_boundary = self._clamp(time + float(self.scheduler.perturbation_interval))
        return Step(dict(sorted(decisions.items())), time=time, arrivals=arrivals)
