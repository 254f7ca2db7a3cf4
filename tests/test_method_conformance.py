"""What every registered method must do, checked for each entry of the method table (as Optuna
runs one test suite over every sampler), on both ways engines drive a scheduler:

- the lockstep driver (gpbt.engines.lockstep.Lockstep, the vector engine's loop) with a toy
  population;
- the asynchronous driver (gpbt.engines.asynchronous.AsyncDriver, the local engine's and
  the Ray adapter's): members report one at a time, in an order set by their speeds, and the
  driver answers each report (a synchronous method's members wait at the boundary until the
  whole population arrived).

The checks: the same seed gives the same configs and decisions; a state saved mid-run and
restored into a freshly built scheduler continues bit-identically; every decision is recorded
(by the method's name); every config handed out lies in the search space. A method added to
the table is covered without editing this file; the last tests register a toy method (one
class, one line) and run it through the same checks. Toys and numpy only: fast.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from gpbt.config import validate_config
from gpbt.core import GPBT, PBT, Perturb, PopulationScheduler
from gpbt.core.decisions import Decision, Exploit, Stop
from gpbt.core.methods import (
    METHODS,
    get_method,
    make_scheduler,
    register_method,
    tuning_methods,
    unregister_method,
)
from gpbt.engines.asynchronous import WAIT, AsyncDriver
from gpbt.engines.lockstep import Lockstep
from gpbt.engines.toys import QuadraticToy, ToyPopulation

TOY = QuadraticToy(steps=24, interval=4)  # 6 generations of 4 toy steps
POPULATION = 6
REPORT_EVERY = 2  # toy steps between two reports of a member on the asynchronous path


@dataclass
class Trace:
    """What a driver saw: the configs handed out, and every decision with its record."""

    initial: list[dict[str, Any]]
    # (member, time, kind, record as a dict or None, new config of an exploit or None, donor)
    decisions: list[tuple] = field(default_factory=list)
    # per lockstep generation (time, members that got a record); empty on the async path
    generations: list[tuple[float, list[int]]] = field(default_factory=list)
    configs_seen: list[dict[str, Any]] = field(default_factory=list)
    final: dict[int, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> str:
        # NaN scores compare unequal to themselves; their JSON text does not
        return json.dumps([self.initial, self.decisions, self.final], sort_keys=True)


def build(name: str, seed: int, max_time: float | None = None) -> PopulationScheduler:
    """Method `name` with the minimal options its class gives for the toy's space."""
    options = get_method(name).cls.example_options(TOY.space)
    return make_scheduler(
        name,
        TOY.space,
        perturbation_interval=TOY.interval,
        seed=seed,
        max_time=max_time,
        options=options,
    )


def restored(name: str, seed: int, old: PopulationScheduler) -> PopulationScheduler:
    """A fresh scheduler built from the same config, given `old`'s state through JSON (what a
    resume reads from the store)."""
    new = build(name, seed, old.max_time)
    new.load_state_dict(json.loads(json.dumps(old.state_dict())))
    return new


def run_lockstep(name: str, seed: int, swap_at: int | None = None) -> Trace:
    """The toy population through Lockstep; after generation `swap_at` the loop goes on with a
    restored copy of the scheduler."""
    sched = build(name, seed)
    members = ToyPopulation(TOY, POPULATION, seed)
    initial = sched.initial_population(POPULATION)
    trace = Trace(initial=initial, configs_seen=list(initial))
    configs = [members.complete(c) for c in initial]
    members.set_configs(configs)

    def on_event(event: dict) -> None:
        for r in event["decisions"]:
            new = r.get("new_config") if r["kind"] == "exploit" else None
            trace.decisions.append((r["member"], r["time"], r["kind"], r, new, r.get("donor")))
        if event["generation"] < event["generations"]:
            trace.generations.append((event["time"], [r["member"] for r in event["decisions"]]))
        trace.configs_seen += [m["config"] for m in event["members"]]
        if event["generation"] == swap_at:
            loop.scheduler = restored(name, seed, loop.scheduler)

    loop = Lockstep(sched, members, members.times(), emit=on_event, complete=members.complete)
    loop.run(configs)
    trace.final = loop.scheduler.configs()
    return trace


def run_async(name: str, seed: int, swap_at: int | None = None) -> Trace:
    """Members train REPORT_EVERY toy steps at a speed of their own and report as they finish,
    the slowest falling behind; each report goes to the asynchronous driver at once and its
    decisions are carried out (an exploit copies the donor's state as of its last report; a
    member told to wait trains no further until its generation is decided). After report
    number `swap_at` the run goes on with a restored copy of the scheduler."""
    total = TOY.steps
    driver = AsyncDriver(build(name, seed, max_time=total))
    members = ToyPopulation(TOY, POPULATION, seed)
    initial = driver.scheduler.initial_population(POPULATION)
    trace = Trace(initial=initial, configs_seen=list(initial))
    members.set_configs([members.complete(c) for c in initial])
    seconds_per_report = np.random.default_rng([seed, 31]).uniform(0.5, 2.0, POPULATION)
    clock = {m: float(seconds_per_report[m]) for m in range(POPULATION)}
    steps = dict.fromkeys(range(POPULATION), 0)
    live = set(range(POPULATION))
    reports = 0
    while live:
        m = min((i for i in live if not driver.waiting(i)), key=lambda i: (clock[i], i))
        for _ in range(REPORT_EVERY):
            steps[m] += 1
            members.states[m] = TOY.step(
                members.states[m], members.configs[m], steps[m], members.rngs[m]
            )
        clock[m] += float(seconds_per_report[m])
        step = driver.on_result(m, steps[m], TOY.score(members.states[m]))
        reports += 1
        if step.decisions[m] is WAIT:
            step = driver.generation(live)
        for i, decision in {} if step is None else step.decisions.items():
            record(trace, i, steps[m] if step.time is None else step.time, decision)
        donors = {} if step is None else step.snapshot(lambda d: members.states[d].copy())
        for i, decision in {} if step is None else step.decisions.items():
            if isinstance(decision, Exploit):
                members.states[i] = donors[decision.donor].copy()
                members.configs[i] = members.complete(decision.config)
                trace.configs_seen.append(decision.config)
            if isinstance(decision, Stop) or steps[i] >= total:
                live.discard(i)
                driver.leave(i)
        if reports == swap_at:
            # a resume: the restored scheduler, and the members waiting at the boundary
            driver.scheduler = restored(name, seed, driver.scheduler)
    trace.final = driver.scheduler.configs()
    return trace


def record(trace: Trace, member: int, time: float, d: Decision) -> None:
    rec = None if d.record is None else d.record.to_dict()
    new = d.config if isinstance(d, Exploit) else None
    trace.decisions.append((member, time, d.kind, rec, new, getattr(d, "donor", None)))


DRIVERS: dict[str, Callable[..., Trace]] = {"lockstep": run_lockstep, "async": run_async}


# ----------------------------------------------------------------------------- the checks
def check_seeded_runs_repeat(name: str, driver: str) -> None:
    run = DRIVERS[driver]
    first, again = run(name, 3), run(name, 3)
    assert first.as_json() == again.as_json()
    assert first.decisions, "the run took no decision at all"


def check_restored_state_continues_identically(name: str, driver: str) -> None:
    run = DRIVERS[driver]
    straight = run(name, 5)
    # halfway: after generation 3 of 6, or after half of the reports
    halfway = 3 if driver == "lockstep" else POPULATION * TOY.steps // REPORT_EVERY // 2
    resumed = run(name, 5, swap_at=halfway)
    assert resumed.as_json() == straight.as_json()


def check_every_decision_is_recorded(name: str, driver: str) -> None:
    trace = DRIVERS[driver](name, 7)
    for member, time, kind, rec, new, donor in trace.decisions:
        if kind == "continue" and rec is None:
            continue  # a report between decision points: nothing was decided
        assert rec is not None, f"{kind} for member {member} at {time} has no record"
        assert (rec["member"], rec["time"], rec["kind"]) == (member, time, kind)
        assert rec["method"] == name
        if kind == "exploit":
            assert rec["donor"] == donor and rec["new_config"] == new
    recorded = [d for d in trace.decisions if d[3] is not None]
    if driver == "lockstep":
        # every member gets exactly one recorded decision at every generation but the last
        assert [time for time, _ in trace.generations] == [4, 8, 12, 16, 20]
        for time, got in trace.generations:
            assert sorted(got) == list(range(POPULATION)), time
    else:
        # every member is decided on at least once per perturbation interval, and stopped
        # at the budget
        for m in range(POPULATION):
            times = [0] + [d[1] for d in recorded if d[0] == m]
            assert max(np.diff(times)) <= TOY.interval + REPORT_EVERY, (m, times)
            assert [d[2] for d in recorded if d[0] == m][-1] == "stop"


def check_configs_stay_in_the_space(name: str, driver: str) -> None:
    trace = DRIVERS[driver](name, 9)
    seen = trace.configs_seen + list(trace.final.values())
    seen += [d[4] for d in trace.decisions if d[4] is not None]
    assert len(seen) > POPULATION
    for config in seen:
        assert TOY.space.validate(config) == config


CHECKS = [
    check_seeded_runs_repeat,
    check_restored_state_continues_identically,
    check_every_decision_is_recorded,
    check_configs_stay_in_the_space,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("name", list(METHODS))
def test_every_registered_method_conforms(name, driver, check):
    check(name, driver)


# ----------------------------------------------------------------------------- a new method
class RedrawSome(PopulationScheduler):
    """A toy method: truncation, and a loser copies a top member's config and redraws each
    hyperparameter with probability `redraw`."""

    shared_options = ("quantile_fraction",)

    def __init__(self, space, *, redraw: float = 0.5, **common: Any):
        super().__init__(
            space, Perturb((1.0,), resample_probability=redraw), pairing="truncation", **common
        )


@pytest.fixture
def toy_method():
    register_method("toy-redraw", RedrawSome)  # the one line a new method adds to the table
    yield "toy-redraw"
    unregister_method("toy-redraw")


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_new_method_is_one_class_and_one_table_line(toy_method, driver):
    assert toy_method in METHODS and toy_method in tuning_methods()
    for check in CHECKS:
        check(toy_method, driver)


def test_the_demo_offers_every_tuning_method_of_the_table(toy_method):
    from gpbt.demo import demo_methods

    rows = demo_methods()
    assert [label for label, options in rows if not options] == tuning_methods()
    assert "toy-redraw" in tuning_methods()
    assert all(get_method(name).tunes for name in tuning_methods())
    assert not all(get_method(name).tunes for name in METHODS)  # default, schedule
    assert ("gpbt-pl (sync)", {"pairing": "sync"}) in rows


def test_a_new_methods_options_come_from_its_signature(toy_method):
    def make(**options):
        return make_scheduler(toy_method, TOY.space, perturbation_interval=4, options=options)

    assert make(redraw=0.0, quantile_fraction=0.5).describe()["strategy_options"] == {
        "factors": [1.0],
        "resample_probability": 0.0,
    }
    assert make().describe()["method"] == "toy-redraw"
    with pytest.raises(ValueError) as err:
        make(kappa=1)
    assert str(err.value) == (
        "method 'toy-redraw' has no option 'kappa'; allowed options are "
        "['quantile_fraction', 'redraw']"
    )
    with pytest.raises(ValueError, match="method 'toy-redraw' option 'redraw' = 'x' must be a "):
        make(redraw="x")
    # and a config file may name it, with its own options table
    spec = validate_config(
        {
            "env": "CartPole-v1",
            "method": toy_method,
            "population": 4,
            "total_steps": 1000,
            "perturbation_interval": 100,
            "space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}},
            toy_method: {"redraw": 0.25},
        }
    )
    assert spec.scheduler().describe()["strategy_options"]["resample_probability"] == 0.25


# ----------------------------------------------------------------------------- the table
def test_options_and_their_types_are_read_from_the_constructors():
    pbt = get_method("pbt").options()
    assert {k: (o.hint, o.default) for k, o in pbt.items()} == {
        "resample_probability": (float, 0.25),
        "perturbation_factors": (tuple[float, ...], (1.2, 0.8)),
        "resample": (str, "prior"),
        "quantile_fraction": (float, 0.25),
        "synch": (bool, False),
    }
    assert sorted(get_method("pb2").options()) == [
        "data_window", "kappa", "quantile_fraction", "refit_every", "synch",
    ]  # fmt: skip
    assert get_method("random").options() == {}
    # gpbt-pl's strategy options follow the strategy picked by name
    perturb = get_method("gpbt-pl").options({"strategy": "perturb"})
    assert sorted(perturb) == [
        "copy_margin", "pairing", "perturbation_factors", "quantile_fraction", "resample",
        "resample_probability", "strategy",
    ]  # fmt: skip
    assert get_method("gpbt-pl-escape").options()["escape_distance"].default == 0.1
    # a subclass's signature shows its own options only; the shared ones are forwarded
    assert list(inspect.signature(PBT).parameters) == [
        "space", "resample_probability", "perturbation_factors", "resample", "common",
    ]  # fmt: skip
    sched = PBT(TOY.space, perturbation_interval=7, seed=2, burn_in_period=3, max_time=9)
    assert (sched.perturbation_interval, sched.seed, sched.burn_in_period) == (7, 2, 3)


def test_gpbt_pl_with_perturb_takes_perturbs_options():
    sched = make_scheduler(
        "gpbt-pl",
        TOY.space,
        perturbation_interval=4,
        options={"strategy": "perturb", "perturbation_factors": [1.5], "resample_probability": 0},
    )
    assert sched.describe()["strategy_options"] == {"factors": [1.5], "resample_probability": 0}
    with pytest.raises(ValueError) as err:
        make_scheduler(
            "gpbt-pl",
            TOY.space,
            perturbation_interval=4,
            options={"strategy": "perturb", "w_inertia": 1.0},
        )
    assert str(err.value).startswith(
        "method 'gpbt-pl' has no option 'w_inertia'; allowed options are ['copy_margin', "
        "'pairing', 'perturbation_factors',"
    )
    with pytest.raises(ValueError, match=r"option 'strategy' = 'pso' is not known; use one of "):
        make_scheduler("gpbt-pl", TOY.space, perturbation_interval=4, options={"strategy": "pso"})


class NeedsTarget(PopulationScheduler):
    def __init__(self, space, *, target: float, **common: Any):
        super().__init__(space, None, pairing="none", **common)
        self.target = target


class NoForwarding(PopulationScheduler):
    def __init__(self, space, *, level: float = 1.0):
        super().__init__(space, None, pairing="none")


def test_registering_is_checked_and_a_required_option_is_named():
    with pytest.raises(ValueError, match="method 'pbt' is already registered"):
        register_method("pbt", PBT)
    with pytest.raises(TypeError, match="is not a PopulationScheduler subclass"):
        register_method("toy", dict)
    with pytest.raises(TypeError, match=r"NoForwarding.__init__ must take \*\*common"):
        register_method("toy", NoForwarding)
    with pytest.raises(ValueError, match="method 'toy' has no option 'kapa'"):
        register_method("toy", PBT, preset={"kapa": 1})
    with pytest.raises(ValueError, match="method 'toy' option 'synch' = 1 must be true or false"):
        register_method("toy", PBT, fixed={"synch": 1})
    assert "toy" not in METHODS
    register_method("toy-target", NeedsTarget)
    try:
        with pytest.raises(ValueError, match="method 'toy-target' needs the option 'target'"):
            make_scheduler("toy-target", TOY.space, perturbation_interval=4)
        sched = make_scheduler(
            "toy-target", TOY.space, perturbation_interval=4, options={"target": 2}
        )
        assert sched.target == 2 and sched.method == "toy-target"
    finally:
        unregister_method("toy-target")
    assert "toy-target" not in METHODS


def test_a_variant_keeps_what_it_fixes_and_synch_needs_truncation():
    with pytest.raises(ValueError) as err:
        make_scheduler(
            "gpbt-pl-escape", TOY.space, perturbation_interval=4, options={"strategy": "copy"}
        )
    assert str(err.value) == (
        "method 'gpbt-pl-escape' is GPBT with strategy = 'pl'; its strategy cannot be changed "
        "(use method 'gpbt-pl' with strategy = ... instead)"
    )
    # forwarding the shared settings must not let a pairing method take PBT's synch
    with pytest.raises(ValueError, match="synch applies to truncation"):
        GPBT(TOY.space, perturbation_interval=4, synch=True)


def test_the_add_a_method_example_in_docs_architecture_runs(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (code,) = [c for c in blocks if "register_method(" in c]
    try:
        exec(compile(code, "docs/architecture.md", "exec"), {})
        name, best = capsys.readouterr().out.split()
    finally:
        if "redraw-some" in METHODS:
            unregister_method("redraw-some")
    assert name == "redraw-some" and float(best) > 1.0  # the quadratic toy's optimum is 1.2
