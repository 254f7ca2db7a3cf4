"""Run one bench cell in this process: a vector-engine experiment or a toy, instrumented.

The vector engine's `VectorRun` does the training; this module only adds what a benchmark needs
and a plain run does not:
- timings per generation (training, whole population management, the scheduler's decision
  alone, the exploit gather alone) in the cell store's state "bench_timings";
- a fingerprint of the initial population (hyperparameters and a hash of the whole initial
  state: weights, optimiser state, environment states and keys) in the state "bench_initial",
  so the report can audit that every method of a seed really started from the same point,
  with the hyperparameters each member really trains with at the start (the agent's defaults
  filled in: what the "default" row ran) and the code hash and commit the cell started at;
- one compiled agent per (agent, env, agent_options) shared across the cells of a process,
  which saves the re-trace and cache load (seconds) per cell. The agent is stateless apart
  from its jitted functions, so sharing it changes no result.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gpbt.bench.provenance import code_hash, git_commit
from gpbt.core.space import Space
from gpbt.engines.protocol import Summary
from gpbt.store import DB_NAME, ExperimentStore

Emit = Callable[[dict[str, Any]], None]


def _fingerprint_configs(configs: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()[:16]


def state_hash(state: Any) -> str:
    import jax

    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(state):
        if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = np.asarray(leaf)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def cell_started(folder: Path) -> bool:
    if not (folder / DB_NAME).exists():
        return False
    with ExperimentStore(folder) as store:
        return store.read_config() is not None


def cell_done(folder: Path) -> bool:
    if not (folder / DB_NAME).exists():
        return False
    with ExperimentStore(folder) as store:
        return store.get_state("summary") is not None


def run_cell(
    kind: str,
    config: dict[str, Any],
    folder: str | Path,
    emit: Emit | None = None,
    agents: dict | None = None,
) -> dict[str, Any]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    emit = emit or (lambda e: None)
    if kind == "toy":
        return run_toy_cell(config, folder, emit)
    return _run_vector_cell(config, folder, emit, agents)


def _run_vector_cell(cfg, folder: Path, emit: Emit, agents: dict | None):
    import jax

    from gpbt.engines.vector import VectorRun, _enable_compilation_cache

    _enable_compilation_cache()
    resume = cell_started(folder)
    timings: dict[int, dict] = {}

    def on_event(event: dict) -> None:
        # Everything a bench records comes from the engine's own events: its timings per
        # generation, and the moment the population exists (fingerprinted for the audit).
        if event["type"] == "initialised":
            if event["generation"] == 0:
                run.store.set_state(
                    "bench_initial",
                    {
                        "configs": run.configs,
                        "configs_hash": _fingerprint_configs(run.configs),
                        "state_hash": state_hash(run.state),
                        "effective": [
                            _plain(run.agent.effective_hyperparameters(c))
                            for c in run.member_hyperparameters()
                        ],
                        "code_hash": code_hash(),
                        "commit": git_commit(),
                    },
                )
            else:
                jax.block_until_ready(run.state)
            # The population exists on the device: the supervisor's start-up watchdog relaxes.
            emit({"type": "initialised", "generation": event["generation"]})
        elif event["type"] == "generation":
            g = int(event["generation"])
            timings[g] = {
                "generation": g,
                **{k: event[k] for k in _TIMING_KEYS},
                "exploits": event["exploits"],
            }
            run.store.set_state("bench_timings", [timings[k] for k in sorted(timings)])
            emit(
                {
                    "type": "generation",
                    "generation": g,
                    "generations": event["generations"],
                    "best": _finite_max([m["score"] for m in event["members"]]),
                }
            )
        elif event["type"] == "evaluating":
            # the final evaluation's own silence limit ("watchdog_s"), for the bench's watchdog
            emit(event)
        elif event["type"] == "resumed":
            # the generations after the checkpoint are re-run; their old timings go
            for k in [k for k in timings if k > event["generation"]]:
                del timings[k]
            emit(event)

    run = VectorRun(cfg, folder, emit=on_event)
    if agents is not None:
        # one compiled agent per (agent, env, agent_options) across the cells of a process
        key = (cfg["agent"], cfg["env"], json.dumps(cfg["agent_options"], sort_keys=True))
        run.agent = agents.setdefault(key, run.agent)
    previous = run.store.get_state("bench_timings") or []
    timings.update({int(t["generation"]): t for t in previous})
    try:
        return run.run(resume=resume)
    finally:
        run.store.close()


_TIMING_KEYS = ("train_s", "manage_s", "scheduler_s", "gather_s", "store_s", "checkpoint_s")


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v.item() if hasattr(v, "item") else v for k, v in d.items()}


def _finite_max(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return max(finite) if finite else math.nan


def run_toy_cell(cfg: dict[str, Any], folder: Path, emit: Emit) -> dict[str, Any]:
    """A toy (gpbt.engines.toys) through the lockstep loop, written to an experiment store like
    a vector cell.

    Toys take milliseconds, so an interrupted toy cell is simply re-run from the start (the
    store is truncated first); the run is a pure function of the seed, so the result is the
    same as an uninterrupted one.
    """
    from gpbt.core.methods import make_scheduler
    from gpbt.engines.lockstep import Lockstep
    from gpbt.engines.toys import TOYS, ToyPopulation

    toy = TOYS[cfg["toy"]](**cfg["toy_options"])
    method, seed, population = cfg["method"], cfg["seed"], cfg["population"]
    # the cell's space: the toy's, or the part of it a `tune` row searches
    space = Space.from_dict(cfg["space"]) if cfg.get("space") else toy.space
    sched = make_scheduler(
        method,
        space,
        perturbation_interval=toy.interval,
        seed=seed,
        options=cfg.get(method, {}),
        start_points=cfg.get("start_points"),
    )
    with ExperimentStore(folder) as store:
        store.write_config(cfg)
        store.truncate_after(-1)
        members = ToyPopulation(toy, population, seed)
        configs = [members.complete(c) for c in sched.initial_population(population)]
        members.set_configs(configs)
        store.set_state(
            "bench_initial",
            {
                "configs": configs,
                "configs_hash": _fingerprint_configs(configs),
                "state_hash": hashlib.sha256(np.stack(members.states).tobytes()).hexdigest()[:16],
                "effective": configs,
                "code_hash": code_hash(),
                "commit": git_commit(),
            },
        )
        emit({"type": "initialised", "generation": 0})
        timings = []

        def on_event(event: dict) -> None:
            timings.append(
                {"generation": event["generation"], **{k: event[k] for k in _TIMING_KEYS}}
                | {"exploits": event["exploits"]}
            )
            emit(
                {
                    "type": "generation",
                    "generation": event["generation"],
                    "generations": event["generations"],
                    "best": max(m["score"] for m in event["members"]),
                }
            )

        configs = Lockstep(
            sched,
            members,
            members.times(),
            store=store,
            emit=on_event,
            complete=members.complete,
        ).run(configs)
        store.set_state("bench_timings", timings)
        final = [toy.score(s) for s in members.states]
        best = int(np.argmax(final))
        # a toy's score has no noise, so selecting and testing on it are the same measurement
        store.set_state(
            "final_evaluation",
            {
                "episodes": 1,
                "returns": final,
                "test_episodes": 1,
                "test_returns": final,
                "selected": best,
                "selected_by_training": None,
            },
        )
        # the same Summary an engine returns, so the bench reads toys and agents alike
        summary = Summary(
            engine="toy",
            method=method,
            folder=str(folder),
            best_member=best,
            best_score=float(final[best]),
            score_basis="the toy's score at the end",
            population_mean=float(np.mean(final)),
            best_config=configs[best],
            exploits=store.exploit_count(),
            finished=True,
            wall_seconds=None,
            details={"final_eval_episodes": 1},
        )
        store.set_state("summary", summary.to_dict())
    return summary
