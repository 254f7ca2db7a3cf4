"""What every engine promises: `run(spec, folder, *, resume=False, on_event=None) -> Summary`.

The three engines (`gpbt.engines.vector.run_vector`, `gpbt.engines.local.run_local`,
`gpbt.engines.ray.run_ray`) take the same `RunSpec`, write the same experiment store
into `folder` (holding the folder's lock while they run), call `on_event(dict)` as the run goes
and return the same `Summary`. Every event has a "type"; an event about one member also has
its "member". The vector engine's run-wide types are "initialised", "resumed", "generation"
(every member's score and config at a boundary), "evaluating" (the final evaluation starts,
with the "watchdog_s" it may take), "notice" (a "message" for the user, such as a damaged
checkpoint passed over), "restart", "done" and "error"; the
asynchronous engines send one event per member: "report" (local and Ray), and in the local
engine also its decisions ("continue", "exploit", "stop") and faults ("restart", "failed").
The CLI, the bench and a notebook call them the same way.

A fresh run (`resume=False`) never writes into a folder that already holds an experiment
(`refuse_existing_run`): starting over would truncate what is recorded there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

Event = dict[str, Any]
OnEvent = Callable[[Event], None]


@dataclass(frozen=True)
class Summary:
    """The outcome of a run, the same fields for every engine.

    `best_member` is the member handed to the user and `best_score` its score; `score_basis`
    says how both were decided: the vector engine selects on a greedy evaluation and scores
    the selected member on fresh test episodes (gpbt.core.selection), the asynchronous engines
    rank by the last reported metric. `population_mean` is the mean of the same score over
    the members that have one. Figures only
    one engine has (compilations, failures, trial ids, timing statistics) are in `details`.
    `summary[key]` reads a field or a detail, as the dicts engines used to return did.
    """

    engine: str
    method: str
    folder: str
    best_member: int | None
    best_score: float | None
    score_basis: str
    population_mean: float | None
    best_config: dict[str, Any] | None
    exploits: int
    finished: bool
    wall_seconds: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key in self.__dataclass_fields__ and key != "details":
            return getattr(self, key)
        return self.details[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return self.get(str(key), _MISSING) is not _MISSING

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able when the details are): what the store keeps as "summary"."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **fields: Any) -> Summary:
        """A summary from an engine's plain dict: the common fields by name (plus `fields`),
        everything else into `details`."""
        d = {**d, **fields}
        names = [n for n in cls.__dataclass_fields__ if n != "details"]
        known = {n: d.get(n) for n in names}
        details = dict(d.get("details") or {})
        details.update({k: v for k, v in d.items() if k not in names and k != "details"})
        known["exploits"] = int(known["exploits"] or 0)
        known["finished"] = bool(known["finished"])
        for name in ("best_score", "population_mean"):
            v = known[name]
            known[name] = None if v is None or not math.isfinite(float(v)) else float(v)
        known["folder"] = str(known["folder"]) if known["folder"] is not None else ""
        known["score_basis"] = known["score_basis"] or ""
        return cls(**known, details=details)


_MISSING = object()


class Engine(Protocol):
    """The signature every engine's entry point has."""

    def __call__(
        self,
        spec: Any,
        folder: str | Path,
        *,
        resume: bool = False,
        on_event: OnEvent | None = None,
    ) -> Summary: ...


def refuse_existing_run(folder: str | Path) -> None:
    """Raise `FolderError` when `folder` already holds an experiment (its store exists), so a
    fresh run cannot overwrite it. Engines call it while they hold the folder's lock, where no
    other run can create the store between this check and the run's first write."""
    from gpbt.errors import FolderError
    from gpbt.store.schema import DB_NAME

    folder = Path(folder)
    if (folder / DB_NAME).exists():
        raise FolderError(
            f"{folder} already holds an experiment; use `gpbt resume {folder}` to continue it "
            "(resume=True from Python) or pick another folder (--out)"
        )


def population_mean(scores: Mapping[Any, Any]) -> float | None:
    """Mean of the finite scores, or None when no member has one."""
    finite = [float(s) for s in scores.values() if s is not None and math.isfinite(float(s))]
    return sum(finite) / len(finite) if finite else None
