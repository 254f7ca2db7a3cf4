"""A whole engine in one module, as docs/architecture.md's "Add an engine" recipe writes one:
its options, its run and what a finished run supports, in `ENGINE`. It trains the PBT paper's
quadratic toy (`gpbt.engines.toys`) in this process, through the lockstep loop, into the
experiment store; `register("toy", "toy_engine")` is its one registration line
(tests/test_engine_registry.py)."""

from __future__ import annotations

from pathlib import Path

from gpbt.engines.lockstep import Lockstep
from gpbt.engines.protocol import Engine, Summary, population_mean
from gpbt.engines.toys import QuadraticToy, ToyPopulation
from gpbt.errors import ConfigError
from gpbt.options import Option
from gpbt.store import ExperimentStore

OPTIONS = {"lr": Option(float, 0.02, "the toy's step size", above=0)}
DEFAULTS = {"metric": "q", "time_attr": "steps"}


def _prepare(spec, folder: Path, *, resume: bool, on_event, supervise: bool):
    if resume:
        raise ConfigError("the toy engine keeps no checkpoint; start a new run")
    toy = QuadraticToy(int(spec.total_steps), int(spec.perturbation_interval), spec["lr"])

    def run(live_log) -> Summary:
        members = ToyPopulation(toy, spec.population, spec.seed)
        scheduler = spec.scheduler()
        configs = [members.complete(c) for c in scheduler.initial_population(spec.population)]
        members.set_configs(configs)
        with ExperimentStore(folder) as store:
            store.write_config(spec.to_dict())
            Lockstep(
                scheduler,
                members,
                members.times(),
                store=store,
                emit=on_event or (lambda event: None),
                complete=members.complete,
            ).run(configs)
        scores = {i: toy.score(s) for i, s in enumerate(members.states)}
        best = max(scores, key=scores.get)
        return Summary(
            engine="toy",
            method=spec.method,
            folder=str(folder),
            best_member=best,
            best_score=scores[best],
            score_basis="Q(theta) at the end",
            population_mean=population_mean(scores),
            best_config=members.configs[best],
            exploits=0,
            finished=True,
            wall_seconds=None,
        )

    return run


ENGINE = Engine(
    "toy",
    options=OPTIONS,
    defaults=DEFAULTS,
    prepare=_prepare,
    supports=("replay",),
    driver="lockstep",
)
