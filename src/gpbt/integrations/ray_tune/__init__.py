"""GPBT-PL (and gpbt's PBT, PB2, random search) as a Ray Tune trial scheduler.

Ray is the distributed engine: Tune starts, pauses, checkpoints and restores trials; this
adapter only turns Tune's callbacks into the core's ask/tell calls and carries out what the
core decides. So the same seeded core decides on one laptop (local engine) and on a cluster.

    from ray import tune
    from gpbt.integrations.ray_tune import GPBTScheduler
    from gpbt.core.space import Float

    sched = GPBTScheduler("gpbt-pl", {"lr": Float(1e-4, 1e-1, log=True)},
                          time_attr="training_iteration", perturbation_interval=5,
                          max_time=50, store="runs/exp1")
    tune.Tuner(trainable, tune_config=tune.TuneConfig(
        scheduler=sched, metric="score", mode="max", num_samples=8)).fit()

The package holds the scheduler (`scheduler.py`) and the check of the Ray internals it relies
on (`compat.py`). The `gpbt run` engine for Ray lives in `gpbt.engines.ray` (and the RLlib
script helpers in `gpbt.engines.ray_rllib`), which import this package, never the other way
round.
"""

from __future__ import annotations

# compat first: its import guard is what a missing Ray meets.
from gpbt.integrations.ray_tune.compat import (
    TESTED_RAY,
    RayCompatibilityError,
    check_ray_internals,
)
from gpbt.integrations.ray_tune.scheduler import GPBTScheduler

__all__ = [
    "GPBTScheduler",
    "RayCompatibilityError",
    "TESTED_RAY",
    "check_ray_internals",
]
