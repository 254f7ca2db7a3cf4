"""gpbt's PB2 checked against Ray Tune's PB2 (ray 2.60) on one small seeded toy table."""

from __future__ import annotations

from gpbt.core import PB2
from gpbt.core.strategies import ExploreContext
from gpbt.space import Float, Space

SPACE = Space({"lr": Float(0.001, 0.1), "clip": Float(0.1, 0.5)})
INTERVAL = 10.0


# ----------------------------------------------------------------------------- in-flight points
def test_lockstep_in_flight_points_start_from_the_donors_score():
    """Ray places the configs already chosen at this boundary at the copied weights' (time,
    score). gpbt counts every other member as in flight; a member exploited earlier at the same
    lockstep boundary trains next from its donor's score, so that is where its point must be
    (the asynchronous path already did this; lockstep used the pre-exploit snapshot score)."""
    sched = PB2(SPACE, perturbation_interval=INTERVAL, quantile_fraction=0.5, seed=0, synch=True)
    sched.initial_population(4)
    seen: list[ExploreContext] = []
    explore = sched.strategy.explore

    def spy(ctx):
        seen.append(ctx)
        return explore(ctx)

    sched.strategy.explore = spy
    decisions = sched.on_generation(INTERVAL, {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0})
    assert len(seen) == 2  # the bottom half, 0 and 1, exploit
    first, second = seen
    new_config = decisions[first.loser].config
    assert second.population[first.loser] == (new_config, first.winner_score)
    assert first.winner_score >= 2.0
    # members not exploited keep the score they reported
    assert second.population[second.winner][1] == second.winner_score
