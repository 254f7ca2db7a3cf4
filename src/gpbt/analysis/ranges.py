"""Which searched hyperparameters ended pressed against an edge of their range.

A population-based method can only move a hyperparameter inside the range it was given. When
the run's best member ends at an edge, the best value may lie beyond it, and no method can find
it: the fix is the user's (widen the range), not the scheduler's. This project's own long
benchmarks show both sides of it: PPO's default learning rate (1e-3) sits at the top of the
paper's range [1e-5, 1e-3] on MinAtar, and PB2 drove IMPALA's lr to its floor on SpaceInvaders.
The report and the end of `gpbt run` say so in one line per hyperparameter.

"At an edge": for a float, within EDGE of the edge in the unit cube (log scale where the range
is log), so 2% of the range; for an integer, equal to its low or high. Choices are skipped: an
unordered one has no edges, and an ordered one's first or last value is drawn by chance too often
to mean anything.

The agent's own limits (a vector-engine agent's `hyperparameter_bounds()`, e.g. gamma <= 1)
word the advice: a range already at the agent's limit cannot be widened that way, so the note
says so instead of suggesting it; one short of it says how far it may go. The vector engine
reports them in the run's summary, with every member's last config, so `gpbt run` words its
notes from the summary alone. A stored run whose summary lacks them (recorded before, or
stopped early) has them read by building its agent (cheap for gymnax and a user's factory);
Brax runs, whose env takes a minute to build, and local / Ray runs (whose trainables declare
no bounds) then get the note without them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpbt.analysis.lineage import best_member, experiment_space, last_configs
from gpbt.core.space import Choice, Float, Int, Param, Space
from gpbt.engines import engine_of

__all__ = ["EDGE", "EdgeHit", "at_edge", "edge_hits", "experiment_edge_hits", "summary_edge_hits"]

EDGE = 0.02  # unit-space distance from an edge that counts as "at" it


@dataclass(frozen=True)
class EdgeHit:
    name: str
    side: str  # "low" or "high"
    bound: Any  # the edge's value
    members_at_edge: int  # how many of the population's final configs sit at the same edge
    population: int
    limit: Any = None  # the agent's own limit on this side, when known

    def sentence(self) -> str:
        where, beyond, toward = (
            ("top", "above", "up") if self.side == "high" else ("bottom", "below", "down")
        )
        start = (
            f"`{self.name}` ended at the {where} of its range ({self.bound:g}) in the best member "
            f"and in {self.members_at_edge} of {self.population} members"
        )
        if self.limit is None:
            return (
                f"{start}: better values may lie {beyond} it; widen the range if the agent "
                "accepts such values"
            )
        if self.bound >= self.limit if self.side == "high" else self.bound <= self.limit:
            return (
                f"{start}: that is the agent's own limit (hyperparameter_bounds), so the range "
                "cannot be widened that way"
            )
        return (
            f"{start}: better values may lie {beyond} it; the agent accepts values {toward} to "
            f"{self.limit:g}, so widen the range toward that"
        )


def at_edge(param: Param, value: Any) -> str | None:
    """Which edge of `param`'s range `value` sits at: "low", "high" or None."""
    if isinstance(param, Choice) or value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(param, Int):
        return "low" if value <= param.low else "high" if value >= param.high else None
    assert isinstance(param, Float)
    u = param.to_unit(float(value))
    return "low" if u <= EDGE else "high" if u >= 1.0 - EDGE else None


def edge_hits(
    space: Space,
    best_config: Mapping[str, Any],
    configs: list[Mapping[str, Any]],
    limits: Mapping[str, tuple[float, float]] | None = None,
) -> list[EdgeHit]:
    """One hit per hyperparameter whose value in `best_config` is at an edge, with how many of
    `configs` (the population's final configs, the best member's included) share that edge;
    `limits` are the agent's own (low, high) per hyperparameter, where known."""
    hits = []
    for name, param in space.params.items():
        side = at_edge(param, best_config.get(name))
        if side is None:
            continue
        same = sum(at_edge(param, c.get(name)) == side for c in configs)
        bound = param.low if side == "low" else param.high
        limit = (limits or {}).get(name)
        limit = None if limit is None else limit[0 if side == "low" else 1]
        hits.append(EdgeHit(name, side, bound, same, len(configs), limit))
    return hits


def summary_edge_hits(space: Space, summary: Any) -> list[EdgeHit]:
    """`edge_hits` for a run that has just finished, from its `Summary` (the best member's
    config, every member's last config and the agent's limits the engine reported): what
    `gpbt run` prints, without reading the store back."""
    if not summary.best_config or not summary.final_configs:
        return []
    return edge_hits(
        space, summary.best_config, summary.final_configs, summary.hyperparameter_bounds
    )


def stored_limits(exp) -> dict[str, tuple[float, float]] | None:
    """The agent's limits a stored run's summary reported, else `agent_limits` of its config
    (runs recorded before summaries carried them, or stopped before their summary)."""
    bounds = (exp.state("summary") or {}).get("hyperparameter_bounds")
    if bounds:
        return {k: tuple(v) for k, v in bounds.items()}
    return agent_limits(exp.config or {})


def agent_limits(config: Mapping[str, Any]) -> dict[str, tuple[float, float]] | None:
    """A vector-engine run's agent's `hyperparameter_bounds()`, or None where they are not
    cheap to know (see the module doc) or the agent cannot be built here."""
    env = str(config.get("env") or "")
    engine = engine_of(config)
    if engine is None or not engine.supports("agent-limits"):
        return None
    if not config.get("agent") or "brax" in env.lower():
        return None
    from gpbt.rl.agents import make_agent

    try:
        agent = make_agent(config["agent"], env, dict(config.get("agent_options") or {}))
        return {k: tuple(v) for k, v in agent.hyperparameter_bounds().items()}
    except Exception:  # noqa: BLE001 - the note is still right without the limits
        return None


def experiment_edge_hits(exp) -> list[EdgeHit]:
    """`edge_hits` for a stored experiment: its search space, its final best member's last
    config and every member's last config. Empty when nothing was searched."""
    space = experiment_space(exp)
    if space is None or len(exp.reports) == 0:
        return []
    configs = last_configs(exp)
    best = best_member(exp)
    if best.member not in configs:
        return []
    return edge_hits(space, configs[best.member], list(configs.values()), stored_limits(exp))
