"""`gpbt retrain FOLDER`: train one fresh member on the schedule the run's best lineage followed.

Was the run's best member good because of its hyperparameter schedule, or because it inherited
lucky weights? Retraining answers it: a new member starts from scratch (a new seed, or the
run's), follows the lineage's configs at the recorded times and never copies anyone. It is
the ordinary engine run with `method = "schedule"` (`gpbt.core.fixed_schedule`) and a
population of 1, so the new folder is a normal experiment folder (report, resume, replay,
export all work) whose config holds the schedule. Vector and local engine runs.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from pathlib import Path

from gpbt.analysis.lineage import ExperimentError, best_member, best_schedule, require_reports
from gpbt.store import DB_NAME, ExperimentStore, load

__all__ = ["retrain", "retrain_config"]

ENGINES = ("vector", "local")


def retrain_config(exp, seed: int | None = None):
    """(the config of the retrain run, the schedule document it follows)."""
    from gpbt.config import validate_config

    require_reports(exp)
    cfg = copy.deepcopy(exp.config or {})
    engine = cfg.get("engine")
    if engine not in ENGINES:
        raise ExperimentError(
            f"{exp.folder} is a {engine!r} run; gpbt retrain runs vector- and local-engine "
            "experiments (gpbt export FOLDER writes any run's schedule to schedule.json)"
        )
    if "method" not in cfg or "space" not in cfg:
        raise ExperimentError(
            f"{exp.folder} was started from Python with a scheduler object, so its stored config "
            "has no method and space to build the retrain run from; retrain runs started from "
            "a config (gpbt run CONFIG, or run_local(config, folder))"
        )
    schedule = best_schedule(exp)
    cfg["method"] = "schedule"
    cfg["schedule"] = {
        "entries": [{"time": e["time"], "config": e["config"]} for e in schedule["entries"]]
    }
    cfg["population"] = 1
    if seed is not None:
        cfg["seed"] = int(seed)
    if cfg.get("name"):
        cfg["name"] = f"{cfg['name']}-retrain"
    return validate_config(cfg), schedule


def retrain(
    folder: str | os.PathLike,
    *,
    seed: int | None = None,
    out: str | os.PathLike | None = None,
    supervise: bool = True,
    on_event=None,
):
    """Run the retrain; returns the engine's summary plus a `retrain` entry comparing the new
    member's final score with the population's best (also stored as state `retrain`)."""
    folder = Path(folder)
    exp = load(folder)
    cfg, schedule = retrain_config(exp, seed)
    out = Path(out) if out is not None else folder / f"retrain-seed{cfg['seed']}"
    if (out / DB_NAME).exists():
        raise ExperimentError(
            f"{out} already holds an experiment; gpbt resume {out} continues it, or pick "
            "another --out"
        )
    if cfg.engine == "vector":
        from gpbt.engines.vector import run_vector

        summary = run_vector(cfg, out, supervise=supervise, on_event=on_event)
    else:
        from gpbt.engines.local import run_local

        summary = run_local(cfg, out, on_event=on_event)
    new = best_member(load(out))
    configs = [e["config"] for e in schedule["entries"]]
    changes = sum(1 for a, b in zip(configs, configs[1:], strict=False) if a != b)
    result = {
        "source": str(folder),
        "source_best_member": schedule["best_member"],
        "population_best": schedule["best_score"],
        "retrained": None if math.isnan(new.score) else new.score,
        "score_basis": new.basis,
        "seed": cfg["seed"],
        "config_changes": changes,
        "folder": str(out),
    }
    with ExperimentStore(out) as store:
        store.set_state("retrain", result)
    return dataclasses.replace(summary, details={**summary.details, "retrain": result})
