"""What every engine is and promises: an `Engine` object, and `run_engine(spec, folder, *,
resume=False, on_event=None) -> Summary` (gpbt.engines) to run it.

The three engines (`gpbt.engines.vector`, `gpbt.engines.local`, `gpbt.engines.ray`, run by
`run_engine` or their own `run_vector`, `run_local`, `run_ray`) take the same `RunSpec`, write
the same experiment store into `folder` (`run_engine` holds the folder's lock while they run),
call `on_event(dict)` as the run goes
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
from typing import Any

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
    # Every member's last config, in member order, and the agent's own (low, high) per
    # hyperparameter where the engine knows them: what the range-edge notes need
    # (gpbt.analysis.ranges), so that the end of `gpbt run` words them from the summary
    # instead of reading back the store the engine has just written.
    final_configs: list[dict[str, Any]] = field(default_factory=list)
    hyperparameter_bounds: dict[str, tuple[float, float]] | None = None
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
        known["final_configs"] = [dict(c) for c in known["final_configs"] or []]
        bounds = known["hyperparameter_bounds"]
        known["hyperparameter_bounds"] = (
            None if bounds is None else {k: tuple(v) for k, v in bounds.items()}
        )
        return cls(**known, details=details)


_MISSING = object()


class Engine:
    """One engine, registered once (`gpbt.engines.ENGINES`, one line per engine): its name, the
    config keys it adds and their checks, the keys that may change on resume, how it runs, and
    what a finished run of it supports. `gpbt.spec` validates a config with it, `run_engine`
    runs it (validation, the folder lock and the live log are `run_engine`'s, once for all),
    and `gpbt.analysis` asks it what a stored run can do instead of switching on its name.

    `prepare(spec, folder, *, resume, on_event, supervise)` checks what can be checked before
    the folder is locked (an agent that cannot be built, a resume the engine does not do) and
    returns the function that runs the experiment under the lock: `run(live_log) -> Summary`,
    where `live_log` is the run's TensorBoard / W&B logger (None without `[logging]`).
    """

    def __init__(
        self,
        name: str,
        *,
        options: Mapping[str, Any],
        defaults: Mapping[str, Any],
        prepare: Callable[..., Callable[[Any], Summary]],
        check_config: Callable[[dict[str, Any]], None] | None = None,
        resume_keys: tuple[str, ...] = (),
        default_hyperparameters: Callable[[Any], Mapping[str, Any]] | None = None,
        supports: tuple[str, ...] = (),
        driver: str | None = None,
        weights: str | None = None,
        grid: bool = False,
    ) -> None:
        unknown = sorted(set(supports) - set(FEATURES))
        if unknown:
            raise ValueError(f"engine {name!r}: unknown feature {unknown[0]!r}; use {FEATURES}")
        if "replay" in supports and driver not in ("lockstep", "asynchronous"):
            raise ValueError(f"engine {name!r} supports replay: say its driver")
        if "export" in supports and weights is None:
            raise ValueError(f"engine {name!r} supports export: say its weights' format")
        self.name = name
        # the keys it adds to the shared ones, their types and defaults (gpbt.options)
        self.options = dict(options)
        # its defaults of shared keys (metric, time_attr)
        self.defaults = dict(defaults)
        self.prepare = prepare
        # checks that need several keys, raising ConfigError
        self.check_config = check_config
        # its keys that may change on resume (how it runs, not what it trains)
        self.resume_keys = tuple(resume_keys)
        # the untuned hyperparameters of the run's agent (start_points = ["defaults"])
        self.default_hyperparameters = default_hyperparameters
        self.features = frozenset(supports)
        # how its decisions were made: "lockstep" (generation by generation) or
        # "asynchronous" (report by report), which is how `gpbt replay` re-derives them
        self.driver = driver
        # what its checkpoints are, for `gpbt export` (gpbt.analysis.export.WEIGHTS)
        self.weights = weights
        # an asynchronous engine whose generations fall on a fixed grid of interval multiples
        # (gpbt.engines.asynchronous.AsyncDriver's `grid`, as Ray's adapter decides them)
        self.grid = grid

    def supports(self, feature: str) -> bool:
        """Whether a finished run of this engine supports `feature` (one of FEATURES)."""
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}; use one of {FEATURES}")
        return feature in self.features

    def __repr__(self) -> str:
        return f"Engine({self.name!r})"

    def __reduce__(self):
        # pickled as a reference to its module's ENGINE (the module of its `prepare`), so a
        # RunSpec, which holds its engine, travels to the vector engine's training child
        return _engine_of, (self.prepare.__module__,)


def _engine_of(module: str) -> Engine:
    import importlib

    return importlib.import_module(module).ENGINE


# What a finished run of an engine may support:
#   export   `gpbt export` writes the best member's weights (in the engine's `weights` format)
#   retrain  `gpbt retrain` reruns the best lineage's schedule on the same engine
#   replay   `gpbt replay` re-derives its decisions from the store
#   animate  `gpbt report` draws the best member's greedy episode (a built-in agent and env)
#   agent-limits  `gpbt report` knows the agent's hyperparameter bounds (a built-in agent)
FEATURES = ("export", "retrain", "replay", "animate", "agent-limits")


def refuse_existing_run(folder: str | Path) -> None:
    """Raise `FolderError` when `folder` already holds an experiment (a stored config or any
    report), so a fresh run cannot overwrite it. Engines call it while they hold the folder's
    lock, where no other run can create the store between this check and the run's first
    write. A store with nothing recorded (a run that died before its first write, a retrain
    that crashed opening its live logger) holds no experiment: a run starts in it afresh, and
    `gpbt resume` refuses it alike."""
    from gpbt.errors import FolderError
    from gpbt.store import ExperimentStore
    from gpbt.store.faults import DB_NAME

    folder = Path(folder)
    if not (folder / DB_NAME).exists():
        return
    with ExperimentStore(folder) as store:
        recorded = store.read_config() is not None or bool(store.report_order())
    if recorded:
        raise FolderError(
            f"{folder} already holds an experiment; use `gpbt resume {folder}` to continue it "
            "(resume=True from Python) or pick another folder (--out)"
        )


def population_mean(scores: Mapping[Any, Any]) -> float | None:
    """Mean of the finite scores, or None when no member has one."""
    finite = [float(s) for s in scores.values() if s is not None and math.isfinite(float(s))]
    return sum(finite) / len(finite) if finite else None
