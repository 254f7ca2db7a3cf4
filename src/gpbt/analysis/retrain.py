"""`gpbt retrain FOLDER`: train fresh members on the schedule the run's best lineage followed.

Was the run's best member good because of its hyperparameter schedule, or because it inherited
lucky weights? Retraining answers it: new members start from scratch (a new seed, or the
run's), follow the lineage's configs at the recorded times and never copy anyone. It is the
ordinary engine run with `method = "schedule"` (`gpbt.core.fixed_schedule`) and a population
of `seeds` members (1 by default; each member its own initial weights and environment seeds),
so the new folder is a normal experiment folder (report, resume, replay, export all work)
whose config holds the schedule. Vector and local engine runs.

A retrain is a check, not the run: it does not send curves to the run's TensorBoard / W&B
(`[logging]`) unless asked (`logging=True`, `gpbt retrain --logging`), since a live logger
configured for the run (a W&B project, an offline mode set in the environment) may not be
what the check should write to, or may not start at all here.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gpbt.analysis.lineage import ExperimentError, best_member, best_schedule, require_reports
from gpbt.engines import engine_of, run_engine
from gpbt.store import ExperimentStore, load

__all__ = ["mean_interval", "record_comparison", "retrain", "retrain_config", "retrain_source"]


def retrain_config(exp, seed: int | None = None, seeds: int = 1, logging: bool = False):
    """(the config of the retrain run, the schedule document it follows): `seeds` fresh
    members, the run's `[logging]` kept only when `logging` is true."""
    from gpbt.config import validate_config

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ExperimentError(f"--seeds {seeds!r}: give the number of fresh members, 1 or more")

    require_reports(exp)
    cfg = copy.deepcopy(exp.config or {})
    found = engine_of(cfg)
    if found is None or not found.supports("retrain"):
        raise ExperimentError(
            f"{exp.folder} is a {cfg.get('engine')!r} run; gpbt retrain runs vector- and "
            "local-engine experiments (gpbt export FOLDER writes any run's schedule to "
            "schedule.json)"
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
        "entries": [{"time": e["time"], "config": e["config"]} for e in schedule["entries"]],
        # what the retrain is compared with, in its own config: `record_comparison` needs
        # nothing else, so a retrain continued by `gpbt resume` is compared too
        "source": {
            "folder": str(exp.folder),
            "member": schedule["best_member"],
            "score": schedule["best_score"],
        },
    }
    cfg["population"] = seeds
    if not logging:
        cfg.pop("logging", None)
    if seed is not None:
        cfg["seed"] = int(seed)
    if cfg.get("name"):
        cfg["name"] = f"{cfg['name']}-retrain"
    return validate_config(cfg), schedule


def mean_interval(scores) -> tuple[float, float | None, float | None]:
    """Mean of the finite scores and its 95% Student-t interval (None, None with fewer than
    two: one seed has no interval). Student-t, not a bootstrap: a bootstrap of a handful of
    seeds is too narrow."""
    from scipy import stats

    x = np.asarray([s for s in scores if s is not None and math.isfinite(s)], dtype=float)
    if len(x) == 0:
        return math.nan, None, None
    if len(x) == 1:
        return float(x[0]), None, None
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def retrain(
    folder: str | os.PathLike,
    *,
    seed: int | None = None,
    seeds: int = 1,
    logging: bool = False,
    out: str | os.PathLike | None = None,
    supervise: bool = True,
    on_event=None,
):
    """Run the retrain; returns the engine's summary plus a `retrain` entry comparing the new
    members' final scores (each, their mean and its 95% interval) with the population's best
    (`record_comparison`, also stored as state `retrain`). An `out` folder that already holds
    an experiment is refused by `run_engine` as for any fresh run (`refuse_existing_run`, the
    one rule), before anything is trained; `gpbt resume OUT` continues it, and records the
    comparison when it finishes."""
    folder = Path(folder)
    cfg, _ = retrain_config(load(folder), seed, seeds, logging)
    name = f"retrain-seed{cfg['seed']}" + (f"-x{seeds}" if seeds > 1 else "")
    out = Path(out) if out is not None else folder / name
    summary = run_engine(cfg, out, supervise=supervise, on_event=on_event)
    result = record_comparison(out)
    return dataclasses.replace(summary, details={**summary.details, "retrain": result})


def retrain_source(config: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Where a retrain's schedule came from (its config's `schedule.source`: the run's folder,
    best member and score), or None for a run that is not a retrain."""
    config = config or {}
    if config.get("method") != "schedule":
        return None
    return (config.get("schedule") or {}).get("source")


def record_comparison(folder: str | os.PathLike) -> dict[str, Any]:
    """Compare a finished retrain's fresh members with the population's best of the run its
    schedule came from, from the retrain's folder alone, and store it as state `retrain`:
    each member's final score, their mean and its 95% interval, on the retrain's own score
    basis. `gpbt retrain` calls it when its run ends, and `gpbt resume` when a retrain it
    continued ends (from Python, call it after `run_engine(..., resume=True)`)."""
    exp = load(folder)
    source = retrain_source(exp.config)
    if source is None:
        raise ExperimentError(
            f"{folder} is not a retrain (its config has no schedule.source); gpbt retrain "
            "FOLDER makes one"
        )
    new = best_member(exp)
    configs = [e["config"] for e in exp.config["schedule"]["entries"]]
    changes = sum(1 for a, b in zip(configs, configs[1:], strict=False) if a != b)
    scores = [None if math.isnan(x) else float(x) for x in new.scores.sort_index()]
    mean, low, high = mean_interval(scores)
    result = {
        "source": source["folder"],
        "source_best_member": source["member"],
        "population_best": source["score"],
        # the mean over the fresh members (with one member, its score)
        "retrained": None if math.isnan(mean) else mean,
        "scores": scores,
        "interval": None if low is None else [low, high],
        "seeds": int(exp.config["population"]),
        "score_basis": new.basis,
        "seed": exp.config["seed"],
        "config_changes": changes,
        "folder": str(folder),
    }
    with ExperimentStore(folder) as store:
        store.set_state("retrain", result)
    return result
