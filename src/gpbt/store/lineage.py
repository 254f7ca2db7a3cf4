"""Where a member's weights came from: the walk back along its chain of donors.

The one place lineage is computed. ``ExperimentStore.lineage`` and ``Experiment.lineage`` both
read a ``Lineage`` with the same queries (the store inside its own read transaction, the
snapshot inside the one that reads its frames) and ask it, so the two always agree.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Iterable
from typing import Any

from gpbt.store.codec import _member, _time_value

# The exploits that can have moved weights; the walk drops a member's exploit of itself.
_EXPLOITS_SELECT = (
    "SELECT time, seq, member, donor FROM decisions WHERE kind = 'exploit' AND donor IS NOT NULL"
)
# Where a lineage starts when no time is asked for: the member's last report or decision.
_LATEST_SELECT = (
    "SELECT member, max(time) FROM (SELECT member, time FROM reports "
    "UNION ALL SELECT member, time FROM decisions) GROUP BY member"
)


class Lineage:
    """The donor graph of one consistent read of the store.

    ``exploits`` are ``(time, seq, member, donor)`` rows; ``latest`` maps each member to its
    latest time. The graph is indexed once, so asking for many members costs one read.
    """

    def __init__(
        self,
        exploits: Iterable[tuple[Any, int, int, int]],
        latest: dict[int, int | float],
    ) -> None:
        self._latest = latest
        self._by_member: dict[int, list[tuple[int, Any, int]]] = {}
        for t, seq, m, donor in exploits:
            # A donor that is the member itself (a fixed schedule's change of
            # hyperparameters) keeps the weights where they are, so it is no hop.
            if int(donor) != int(m):
                self._by_member.setdefault(int(m), []).append((int(seq), t, int(donor)))
        for events in self._by_member.values():
            events.sort()

    @classmethod
    def read(cls, conn: sqlite3.Connection) -> Lineage:
        """Read the graph; the caller holds a transaction, so both queries see one state."""
        exploits = conn.execute(_EXPLOITS_SELECT).fetchall()
        latest = {int(m): t for m, t in conn.execute(_LATEST_SELECT).fetchall()}
        return cls(exploits, latest)

    def of(self, member: int, time: int | float | None = None) -> list[tuple[Any, int]]:
        """Walk donors back from ``(time, member)``; see :meth:`ExperimentStore.lineage`.

        The member's weights at ``time`` come from its last exploit at or before ``time``;
        from there on the walk follows ``seq``, not time: an asynchronous engine's donor may
        be at another step count than its recipient, but it can only have handed over weights
        it received in a decision logged earlier. (Lockstep engines never exploit a donor in
        the generation it donates, so the two orders agree there.)
        """
        member = _member(member, "member")
        if time is not None:
            time = _time_value(time)
        hops: list[tuple[Any, int]] = [
            (time if time is not None else self._latest.get(member), member)
        ]
        events = [e for e in self._by_member.get(member, []) if time is None or e[1] <= time]
        while events:
            seq, t, donor = events[-1]
            hops.append((t, donor))
            events = self._by_member.get(donor, [])
            events = events[: bisect.bisect_left(events, (seq,))]
        return hops
