"""PBT with a patient judgement (issue 25, item 4; why this one: docs/research/non-greedy.md).

PBT judges a member on the one interval it last trained. Two things make that greedy once
members carry copies of the same weights (docs/research/pairwise.md, section 6): the first
interval after a copy measures how little the new hyperparameters disturb the copied weights,
not what they learn, and one interval's return among near-clones is mostly noise. This
scheduler changes only the judgement, not PBT's exploit or explore:

- **grace period**: a member that copied is left out of the ranking from the copy through
  its next `grace_intervals` decision boundaries, so it is judged again only after
  `grace_intervals + 1` intervals on its new weights. Meanwhile it is never chosen as a loser,
  and its score ranks no one else (it is no donor and pushes no member into the bottom
  quantile). `grace_intervals = 0` is PBT's own rule (judged after one interval, ranked with
  its donor's score until then).
- **smoothed score**: members are ranked by the mean of their last `score_window` scores at
  decision boundaries instead of the last one. A copy inherits its donor's scores with its
  weights (as PBT's exploit already hands the loser the donor's score), so the window always
  describes the weights a member carries. `score_window = 1` is PBT's own score.

With `grace_intervals = 0, score_window = 1` the decisions are PBT's, draw for draw. Pure and
seeded like every scheduler: the per-member scores and grace counts live in `Member.extra`, so
`state_dict()` carries them and a restored scheduler continues bit-identically. Each
decision's record says which rule took it and the smoothed scores it compared, so the log
explains what `gpbt replay` re-derives from the stored reports.
"""

from __future__ import annotations

import math
from typing import Any

from gpbt.core.decisions import Continue, Decision
from gpbt.core.schedulers import PBT
from gpbt.core.space import Space


class PatientPBT(PBT):
    """PBT whose losers are judged only after a grace period, on a smoothed score."""

    method = "pbt-patient"

    def __init__(
        self,
        space: Space | dict,
        *,
        grace_intervals: int = 1,
        score_window: int = 2,
        **common: Any,
    ):
        for name, value, least in (
            ("grace_intervals", grace_intervals, 0),
            ("score_window", score_window, 1),
        ):
            if isinstance(value, bool) or not float(value).is_integer() or value < least:
                raise ValueError(
                    f"{name}={value!r}: must be a whole number >= {least} ({least} is PBT's "
                    "own rule)"
                )
        super().__init__(space, **common)
        self.grace_intervals = int(grace_intervals)
        self.score_window = int(score_window)

    # ------------------------------------------------------------------ the judgement
    def fitness(self, member: int) -> float:
        """The score a member is ranked by (internal orientation: higher is better): the mean
        of its latest score and the scores at its previous `score_window - 1` decision
        boundaries (fewer early on). A non-finite score in the window makes it the worst."""
        m = self._member(member)
        window = [*self._kept(self._past(member)), m.score]
        if any(s is None or not math.isfinite(s) for s in window):
            return -math.inf
        return math.fsum(window) / len(window)

    def _past(self, member: int) -> list[float]:
        """The member's scores at its earlier boundaries, oldest first, without its latest
        score: the last boundary's score joins them once the member has reported since.
        (Asynchronous engines report between boundaries; a lockstep engine only at them.)"""
        m = self.members[member]
        past = list(m.extra.get("scores", []))
        boundary = m.extra.get("boundary")
        if boundary is not None and m.time is not None and m.time > boundary[0]:
            past.append(boundary[1])
        return past

    def in_grace(self, member: int) -> bool:
        """True from a member's copy through its next `grace_intervals` boundaries (never
        with no grace: PBT ranks a member that just copied with its donor's score)."""
        since = self._member(member).extra.get("since_copy")
        return self.grace_intervals > 0 and since is not None and since <= self.grace_intervals

    def _at_boundary(self, member: int) -> None:
        """The member reached a decision boundary: its score there becomes part of its past
        at its next report, and one more interval counts on its weights. `extra` is
        replaced, never changed in place, so a state dict taken earlier keeps what it held."""
        m = self.members[member]
        if m.failed:
            return
        since = m.extra.get("since_copy")
        m.extra = {
            **m.extra,
            "scores": self._kept(self._past(member)),
            "boundary": [m.time, m.score],
            "since_copy": None if since is None else since + 1,
        }

    def _kept(self, past: list[float]) -> list[float]:
        """The part of a past that a window can still reach."""
        return past[max(0, len(past) - self.score_window + 1) :]

    def _quantiles(self) -> tuple[list[int], list[int]]:
        # PBT's truncation over the members out of their grace period, by the smoothed score
        # (ties broken by member id, so the ranking is a pure function of the scores)
        ranked = [i for i in self._candidates() if not self.in_grace(i)]
        ranked.sort(key=self.fitness)
        n = len(ranked)
        k = min(int(math.ceil(n * self.quantile_fraction)), n // 2)
        return ranked[:k], ranked[n - k :] if k else []

    def _grace_reason(self, member: int) -> str:
        since = self.members[member].extra["since_copy"]
        return (
            f"in its grace period: copied {since} interval(s) ago, judged again after "
            f"{self.grace_intervals + 1} on the copied weights"
        )

    # ------------------------------------------------------------------ the two paths
    def on_ready(self, member: int, time: float, score: float) -> Decision:
        if not self.synchronous:  # (PBT's on_ready refuses a synchronous scheduler)
            self.report(member, time, score)  # PBT's on_ready sees the same report once
            self._at_boundary(member)
        return super().on_ready(member, time, score)

    def _truncation(self, member: int, time: float) -> Decision:
        if self.in_grace(member):
            return Continue(
                self._record(time, member, "continue", reason=self._grace_reason(member))
            )
        return super()._truncation(member, time)

    def _open_generation(
        self, time: float, scores: dict[int, float]
    ) -> tuple[list[int], dict[int, Decision] | None]:
        # PBT records every member's score at the boundary; each then joins its member's past
        # before any decision is taken
        opened = super()._open_generation(time, scores)
        for member in sorted(scores):
            self._at_boundary(member)
        return opened

    def on_generation(self, time: float, scores: dict[int, float]) -> dict[int, Decision]:
        decisions = super().on_generation(time, scores)
        for i, d in decisions.items():
            # a member left to continue was not copied at this boundary, so it is in grace
            # now exactly when it was while PBT ranked the others without it
            if isinstance(d, Continue) and d.record is not None and self.in_grace(i):
                d.record.reason = self._grace_reason(i)  # PBT says "not in the bottom quantile"
        return decisions

    def _exploit(self, loser: int, winner: int, time: float, **kwargs: Any) -> Decision:
        mine, theirs = self.fitness(loser), self.fitness(winner)
        decision = super()._exploit(loser, winner, time, **kwargs)
        if decision.record is not None and self.score_window > 1:
            decision.record.reason = (
                f"bottom quantile by the mean of the last {self.score_window} scores "
                f"({self._external(mine):.6g}; donor's {self._external(theirs):.6g})"
            )
        # the loser now carries the donor's weights, and with them the donor's scores
        lm = self.members[loser]
        # (its score at the copy, the donor's, is the last boundary's score of those weights)
        lm.extra = {
            **lm.extra,
            "scores": self._kept(self._past(winner)),
            "boundary": [lm.time, lm.score],
            "since_copy": 0,
        }
        return decision

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "grace_intervals": self.grace_intervals,
            "score_window": self.score_window,
        }
