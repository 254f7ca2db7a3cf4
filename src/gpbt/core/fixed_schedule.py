"""A scheduler that follows a given hyperparameter schedule: `method = "schedule"`.

Every member starts from the first entry's config and switches to entry k's config at its
first decision point at or after entry k's time; it never copies another member's weights.
`gpbt retrain` runs it with a population of 1 on the schedule the best member's lineage
followed (`gpbt.analysis.lineage.lineage_schedule`), so retraining is the ordinary engine run
with this scheduler, not a second training loop.

A change is handed to the engines as `Exploit(donor=member, config=...)`: copying a member's
own state is keeping it, so every engine already applies it as "same weights, new
hyperparameters" (the vector engine gathers a member onto itself, the local engine restores
the member's own checkpoint and calls `reset_config`). The decision log records it as an
exploit whose donor is the member itself, with the reason naming the schedule entry; the
store's lineage walk ignores such self-copies.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

from gpbt.core.decisions import Continue, Decision, Exploit
from gpbt.core.schedulers import RandomSearch
from gpbt.core.space import Space, to_plain

ENTRY_KEYS = ("time", "config")
SOURCE_KEYS = ("folder", "member", "score")


def check_entries(space: Space, entries: Any) -> list[tuple[float, dict[str, Any]]]:
    """The entries as (time, flat config), or one ValueError naming the entry and the fix."""
    example = "entries = [{time = 0, config = {lr = 1e-3}}, {time = 50000, config = {lr = 3e-4}}]"
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise ValueError(
            "method 'schedule' needs a non-empty list of entries, each a time and the config "
            f"to train with from then on, e.g. {example}"
        )
    out: list[tuple[float, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or set(entry) != set(ENTRY_KEYS):
            got = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
            raise ValueError(
                f"schedule entry #{i} must have exactly the keys {list(ENTRY_KEYS)}, got {got}"
            )
        t = entry["time"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise ValueError(f"schedule entry #{i}: time = {t!r} must be a finite number")
        if not out and t != 0:
            raise ValueError(
                f"schedule entry #0 starts at time {t}; the first entry is the config a member "
                "starts with, give it time = 0"
            )
        if out and not t > out[-1][0]:
            raise ValueError(
                f"schedule entry #{i}: time {t} is not after entry #{i - 1}'s time "
                f"{out[-1][0]:g}; list the entries in increasing time"
            )
        if not isinstance(entry["config"], Mapping):
            raise ValueError(f"schedule entry #{i}: config must be a table of hyperparameters")
        try:
            flat = space.validate(entry["config"])
        except ValueError as err:
            raise ValueError(f"schedule entry #{i}: {err}") from None
        out.append((float(t), {k: to_plain(v) for k, v in flat.items()}))
    return out


class FixedSchedule(RandomSearch):
    """Follow `entries` (`[{"time": t, "config": {...}}, ...]`, the first at time 0)."""

    method = "schedule"
    tunes = False

    def __init__(
        self,
        space: Space | dict,
        entries: Sequence[Mapping[str, Any]] | None = None,
        source: Mapping[str, Any] | None = None,
        **common: Any,
    ):
        # `entries` has no usable default: leaving it out is refused by check_entries, whose
        # error shows what to write. The rest (perturbation_interval, burn_in_period, mode,
        # seed, max_time) as RandomSearch.
        super().__init__(space, **common)
        self.entries = check_entries(self.space, entries)
        # `source`: where the entries came from, which `gpbt retrain` writes into the config
        # so that the retrain's comparison with the run can be made whenever it finishes (a
        # resumed one included, `gpbt.analysis.retrain.record_comparison`); checked here, with
        # the rest of the config, and never used to decide
        if source is not None and (
            not isinstance(source, Mapping) or set(source) != set(SOURCE_KEYS)
        ):
            raise ValueError(
                f"schedule source = {source!r}: must be a table with exactly the keys "
                f"{list(SOURCE_KEYS)} (the run's folder, its best member and that member's "
                "score, as gpbt retrain writes it), or left out"
            )
        self._times = [t for t, _ in self.entries]

    @classmethod
    def example_options(cls, space: Space) -> dict[str, Any]:
        # two configs, a quarter and three quarters along every range, switched at time 1
        # (a member's first decision): one change of config to apply and record
        entries = [
            {"time": 0, "config": space.point(0.25)},
            {"time": 1, "config": space.point(0.75)},
        ]
        return {"entries": entries}

    def start_at(self, points) -> None:
        raise ValueError("a fixed schedule starts every member at its first entry; no start_points")

    def initial_population(self, n: int) -> list[dict[str, Any]]:
        if n < 1:
            raise ValueError(f"population={n}: need at least 1 member")
        first = self.entries[0][1]
        for i in range(n):
            self.add_member(i, first)
            self.members[i].extra["entry"] = 0
        return [dict(first) for _ in range(n)]

    # ------------------------------------------------------------------ decisions
    def _change(self, member: int, time: float) -> Decision | None:
        """The switch to the newest entry due at `time`, if the member has not made it yet."""
        m = self._member(member)
        k = bisect.bisect_right(self._times, float(time)) - 1
        if k <= m.extra.get("entry", 0):
            return None
        m.extra["entry"] = k
        start, config = self.entries[k]
        if config == m.config:
            return None
        old = dict(m.config)
        m.config = dict(config)
        record = self._record(
            time,
            member,
            "exploit",
            donor=member,
            old_config=old,
            new_config=dict(config),
            reason=f"schedule entry {k} (from t={start:g}): keeps its weights, new config",
        )
        return Exploit(donor=member, config=dict(config), record=record)

    def _no_change(self, member: int, time: float) -> Decision:
        return Continue(self._record(time, member, "continue", reason="no change scheduled"))

    def on_report(self, member: int, time: float, score: float) -> Decision:
        # Changes are due at the entries' times, whatever the perturbation interval says.
        self.report(member, time, score)
        m = self._member(member)
        if self.max_time is not None and time >= self.max_time:
            return self._stop(member, time)
        if m.failed:
            return Continue()
        change = self._change(member, time)
        if change is not None:
            m.last_perturbation = float(time)
            return change
        if self.is_ready(member, time):
            m.last_perturbation = float(time)
            return self._no_change(member, time)
        return Continue()

    def on_ready(self, member: int, time: float, score: float) -> Decision:
        self.report(member, time, score)
        self._member(member).last_perturbation = float(time)
        if self.max_time is not None and time >= self.max_time:
            return self._stop(member, time)
        return self._change(member, time) or self._no_change(member, time)

    def on_generation(self, time: float, scores: dict[int, float]) -> dict[int, Decision]:
        for member, score in sorted(scores.items()):
            self.report(member, time, score)
        active = [i for i in sorted(scores) if not self.members[i].failed]
        if self.max_time is not None and time >= self.max_time:
            return {i: self._stop(i, time) for i in active}
        out: dict[int, Decision] = {}
        for i in active:
            self.members[i].last_perturbation = float(time)
            out[i] = self._change(i, time) or self._no_change(i, time)
        return out

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        # The entries are part of the settings: a state saved under one schedule must not be
        # restored into a scheduler following another.
        return {
            **super().describe(),
            "entries": [{"time": t, "config": dict(c)} for t, c in self.entries],
        }
