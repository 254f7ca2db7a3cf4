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
script helpers in `gpbt.engines.ray_rllib`); their names stay importable from here because
scripts and docs used this path for them.
"""

from __future__ import annotations

import importlib
from typing import Any

# compat first: its import guard is what a missing Ray meets.
from gpbt.integrations.ray_tune.compat import (
    TESTED_RAY,
    RayCompatibilityError,
    check_ray_internals,
)
from gpbt.integrations.ray_tune.scheduler import (
    GPBTScheduler,
    _stable_text,  # noqa: F401 - tests import it by this path
)

__all__ = [
    "GPBTScheduler",
    "RayCompatibilityError",
    "TESTED_RAY",
    "check_ray_internals",
    "run_ray",
]

# Names that moved to the engine, forwarded on first use. Resolved lazily because the engine
# imports this package (for GPBTScheduler): an eager import here would be circular, and a Ray
# worker that unpickles a GPBTScheduler has no use for the engine.
_MOVED = {
    "OPTIONS": "gpbt.engines.ray",
    "DEFAULTS": "gpbt.engines.ray",
    "check_config": "gpbt.engines.ray",
    "run_ray": "gpbt.engines.ray",
    "rllib_param_space": "gpbt.engines.ray",
    "rllib_fixed_config": "gpbt.engines.ray",
    "trial_resources": "gpbt.engines.ray",
    "_check_trial_fits": "gpbt.engines.ray",
    "RLLIB_METRIC": "gpbt.engines.ray_rllib",
    "RLLIB_TIME_ATTR": "gpbt.engines.ray_rllib",
    "rllib_experiment_arguments": "gpbt.engines.ray_rllib",
    "run_rllib_experiment": "gpbt.engines.ray_rllib",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_MOVED})
