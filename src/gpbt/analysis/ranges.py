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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpbt.analysis.lineage import best_member, experiment_space, last_configs
from gpbt.core.space import Choice, Float, Int, Param, Space

__all__ = ["EDGE", "EdgeHit", "at_edge", "edge_hits", "experiment_edge_hits"]

EDGE = 0.02  # unit-space distance from an edge that counts as "at" it


@dataclass(frozen=True)
class EdgeHit:
    name: str
    side: str  # "low" or "high"
    bound: Any  # the edge's value
    members_at_edge: int  # how many of the population's final configs sit at the same edge
    population: int

    def sentence(self) -> str:
        where = "top" if self.side == "high" else "bottom"
        beyond = "above" if self.side == "high" else "below"
        return (
            f"`{self.name}` ended at the {where} of its range ({self.bound:g}) in the best member "
            f"and in {self.members_at_edge} of {self.population} members: better values may lie "
            f"{beyond} it; widen the range if the agent accepts such values"
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
    space: Space, best_config: Mapping[str, Any], configs: list[Mapping[str, Any]]
) -> list[EdgeHit]:
    """One hit per hyperparameter whose value in `best_config` is at an edge, with how many of
    `configs` (the population's final configs, the best member's included) share that edge."""
    hits = []
    for name, param in space.params.items():
        side = at_edge(param, best_config.get(name))
        if side is None:
            continue
        same = sum(at_edge(param, c.get(name)) == side for c in configs)
        bound = param.low if side == "low" else param.high
        hits.append(EdgeHit(name, side, bound, same, len(configs)))
    return hits


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
    return edge_hits(space, configs[best.member], list(configs.values()))
