"""Where a member's weights came from: the walk back along its chain of donors."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any


def _py(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _lineage(
    exploits: Iterable[tuple[Any, int, int, int]],
    member: int,
    time: int | float | None,
    latest: int | float | None,
) -> list[tuple[int | float | None, int]]:
    """Walk donors back from ``(time, member)``.

    ``exploits`` are ``(time, seq, member, donor)``. The member's weights at ``time`` come
    from its last exploit at or before ``time``; from there on the walk follows ``seq``, not
    time: an asynchronous engine's donor may be at another step count than its recipient,
    but it can only have handed over weights it received in a decision logged earlier.
    (Lockstep engines never exploit a donor in the generation it donates, so the two orders
    agree there.) An exploit whose donor is the member itself (a fixed schedule's change of
    hyperparameters) keeps the weights where they are, so it is no hop.
    """
    by_member: dict[int, list[tuple[int, Any, int]]] = {}
    for t, seq, m, donor in exploits:
        if int(donor) != int(m):
            by_member.setdefault(int(m), []).append((int(seq), _py(t), int(donor)))
    for events in by_member.values():
        events.sort()

    hops: list[tuple[int | float | None, int]] = [(time if time is not None else latest, member)]
    events = [e for e in by_member.get(member, []) if time is None or e[1] <= time]
    while events:
        seq, t, donor = events[-1]
        hops.append((t, donor))
        events = by_member.get(donor, [])
        events = events[: bisect.bisect_left(events, (seq,))]
    return hops
