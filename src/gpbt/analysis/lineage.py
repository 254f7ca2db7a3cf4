"""Which member won a run, and the hyperparameters its weights trained with, from the store alone.

Every engine (vector, local, Ray) writes the same store, so `gpbt report`, `gpbt export` and
`gpbt retrain` read the answer here, the same way for all three.

The schedule along a lineage
    The best member's weights at the end were not all trained by the best member: at each
    exploit they were copied from a donor, whose weights may in turn have come from another.
    `store.lineage(member)` walks those copies back; here each interval of the run is given the
    config of the member that held those weights during it. A report at time t carries the
    config that trained the interval ending at t, so the interval (t_prev, t] of the lineage is
    the report at t of the member holding the weights then. Lockstep engines (vector, Ray with
    synch) report every member at the same times, so this is exact; asynchronous engines
    (local, Ray) count time on each member's own clock, so a donor's stretch is cut at the
    exploit's time on the recipient's clock (at most about one interval off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpbt.core.selection import pick, score_basis, select_then_test
from gpbt.core.space import Choice, Int, Space
from gpbt.errors import GpbtError

__all__ = [
    "Best",
    "ExperimentError",
    "best_member",
    "best_schedule",
    "experiment_space",
    "last_configs",
    "lineage_schedule",
    "plain_time",
    "require_reports",
]


class ExperimentError(GpbtError, ValueError):
    """An experiment folder that cannot answer what was asked (no reports yet, no weights);
    the message names the folder, the problem and the fix."""


@dataclass(frozen=True)
class Best:
    member: int
    score: float
    basis: str  # what `score` is: a final greedy evaluation or the last reported score
    scores: pd.Series  # every member's score on the same basis, indexed by member


def require_reports(exp) -> None:
    if len(exp.reports) == 0:
        fix = (
            f"let the run report at least once (gpbt resume {exp.folder} continues a stopped run)"
            if exp.config is not None
            else f"it holds no run; start one with `gpbt run CONFIG --out {exp.folder}`"
        )
        raise ExperimentError(
            f"{exp.folder} has no reports yet, so there is no best member to look at; {fix}"
        )


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def plain_time(value: Any) -> Any:
    """A time as the engine counted it: decisions log times as floats (4096.0) and pandas turns
    int columns to floats beside NaN; a whole number comes back as an int."""
    value = _py(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def best_member(exp, column: str = "score") -> Best:
    """The member the run hands to its user, as `gpbt.core.selection` decides it: picked on the
    final greedy selection evaluation and scored on its fresh test episodes when the engine
    made them (vector engine; the member it stored as `selected`); a run from before the test
    episodes existed is picked and scored on its one evaluation; else (local engine, Ray) by
    each member's last reported `column`. Ties go to the lowest member id."""
    require_reports(exp)
    final_eval = exp.state("final_evaluation")
    mode = (exp.config or {}).get("mode", "max")
    if final_eval is not None and final_eval.get("test_returns") is not None:
        selection = pd.Series(final_eval["returns"], dtype=float)
        scores = pd.Series(final_eval["test_returns"], dtype=float)
        basis = score_basis(final_eval["episodes"], final_eval["test_episodes"])
        # the member the run selected and stored; a run that stored none is selected again
        member = final_eval.get("selected")
        if member is None:
            chosen = select_then_test(selection.to_numpy(), scores.to_numpy(), mode)
            member = chosen.member if chosen.member is not None else int(scores.index.min())
        return Best(member=member, score=float(scores[member]), basis=basis, scores=scores)
    if final_eval is not None:
        scores = pd.Series(final_eval["returns"], dtype=float)
        basis = score_basis(final_eval["episodes"])
    else:
        last = exp.reports.sort_values(["member", "time"]).groupby("member").last()
        scores = last[column].astype(float)
        basis = f"last reported {column}"
    found = pick(scores.to_numpy(), mode)
    member = int(scores.index[found]) if found is not None else int(scores.index.min())
    return Best(member=member, score=float(scores[member]), basis=basis, scores=scores)


def experiment_space(exp) -> Space | None:
    """The search space in the stored config (a run's own `space` table, or the scheduler's
    description an engine started from Python wrote), or None if there is none."""
    cfg = exp.config or {}
    for spec in (cfg.get("space"), (cfg.get("scheduler") or {}).get("space")):
        if isinstance(spec, dict) and spec:
            try:
                return Space.from_dict(spec)
            except ValueError:
                continue
    return None


def _config_of(row: pd.Series, columns: list[str], space: Space | None) -> dict[str, Any]:
    config = {}
    for col in columns:
        value = _py(row[col])
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue  # a key this member's report did not have
        name = col.removeprefix("config.").replace("/", ".")
        param = space.params.get(name) if space is not None else None
        # pandas turns an int column with a gap into floats; the space says what it was
        if isinstance(param, Int) and isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(param, Choice) and value not in param.values:
            value = next((v for v in param.values if v == value), value)
        config[name] = value
    return config


def last_configs(exp) -> dict[int, dict[str, Any]]:
    """Each member's config in its last report: what it trained with at the end."""
    reports = exp.reports
    space = experiment_space(exp)
    columns = [c for c in reports.columns if c.startswith("config.")]
    last = reports.sort_values(["member", "time"]).groupby("member").tail(1)
    return {int(row["member"]): _config_of(row, columns, space) for _, row in last.iterrows()}


def lineage_schedule(exp, member: int) -> list[dict[str, Any]]:
    """One entry per reported interval of `member`'s lineage, oldest first:
    `{"time": start, "end": t, "member": holder, "config": {...}, "score": s}` where `config`
    trained the weights from `start` to `t` and `holder` (reporting `score` at t) held them."""
    reports = exp.reports
    space = experiment_space(exp)
    columns = [c for c in reports.columns if c.startswith("config.")]
    hops = exp.lineage(member)  # [(end, member), (t1, donor1), (t2, donor2), ...]
    holders = [m for _, m in hops]
    # holder j held the weights for report times in (since[j], until[j]]
    since = [t for t, _ in hops[1:]] + [-math.inf]
    until = [math.inf] + [t for t, _ in hops[1:]]
    entries: list[dict[str, Any]] = []
    start: Any = 0
    for j in reversed(range(len(holders))):
        own = reports[reports["member"] == holders[j]].sort_values("time")
        own = own[(own["time"] > since[j]) & (own["time"] <= until[j])]
        for _, row in own.iterrows():
            end = plain_time(row["time"])
            entries.append(
                {
                    "time": start,
                    "end": end,
                    "member": int(holders[j]),
                    "config": _config_of(row, columns, space),
                    "score": None if pd.isna(row["score"]) else float(row["score"]),
                }
            )
            start = end
    return entries


def best_schedule(exp) -> dict[str, Any]:
    """The final best member and the schedule its lineage followed, as one JSON-able document
    (what `gpbt export` writes to `schedule.json` and `gpbt retrain` trains on)."""
    best = best_member(exp)
    cfg = exp.config or {}
    hops = exp.lineage(best.member)
    entries = lineage_schedule(exp, best.member)
    # oldest first: who held the weights from when to when
    held = []
    bounds = [0] + [t for t, _ in reversed(hops[1:])] + [entries[-1]["end"] if entries else None]
    for i, (_, m) in enumerate(reversed(hops)):
        held.append(
            {"member": int(m), "from": plain_time(bounds[i]), "to": plain_time(bounds[i + 1])}
        )
    return {
        "source": str(exp.folder),
        "engine": cfg.get("engine"),
        "method": cfg.get("method") or (cfg.get("scheduler") or {}).get("method"),
        "env": cfg.get("env") or cfg.get("trainable"),
        "time_attr": cfg.get("time_attr"),
        "metric": cfg.get("metric"),
        "mode": cfg.get("mode", "max"),
        "best_member": best.member,
        "best_score": None if math.isnan(best.score) else best.score,
        "score_basis": best.basis,
        "lineage": held,
        "entries": entries,
    }
