"""The asynchronous driver (gpbt.engines.asynchronous) that the local engine and the Ray
adapter share: one recorded result sequence, fed to the driver as each engine builds it,
takes the decisions the local engine took; the grid the Ray adapter keeps is the one
deliberate difference, and it shows only when steps overshoot a boundary."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest

from gpbt.core.decisions import Exploit, Stop
from gpbt.core.methods import make_scheduler
from gpbt.core.space import Space
from gpbt.engines.asynchronous import WAIT, AsyncDriver
from gpbt.engines.local import LocalEngine
from gpbt.engines.trainable import Trainable
from gpbt.store import ExperimentStore, load

SPACE = {"lr": {"type": "float", "low": 0.0, "high": 1.0}}
POPULATION, TOTAL, INTERVAL = 4, 8, 2
# what identifies a decision, whichever engine took it (trial ids and paths are the engine's)
DECISION_KEYS = (
    "time",
    "member",
    "kind",
    "partner",
    "donor",
    "member_score",
    "partner_score",
    "old_config",
    "new_config",
    "reason",
)


class Counter(Trainable):
    """Weights are one number that grows by `lr` per step."""

    def setup(self, config):
        self.w, self.t = 0.0, 0

    def step(self):
        self.w += self.config["lr"]
        self.t += 1
        return {"timesteps_total": self.t, "episode_reward_mean": self.w}

    def save(self, d):
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"w": self.w, "t": self.t}, f)

    def restore(self, d):
        with open(os.path.join(d, "state.json")) as f:
            s = json.load(f)
        self.w, self.t = s["w"], s["t"]

    def reset_config(self, config):
        return True


def scheduler(method, options, interval=INTERVAL, total=TOTAL):
    return make_scheduler(
        method,
        Space(SPACE),
        perturbation_interval=interval,
        seed=3,
        max_time=total,
        options=options,
    )


def comparable(record):
    return {
        k: (None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in record.items()
        if k in DECISION_KEYS
    }


def drive(driver, results, population):
    """Feed `results` (member, time, score) to `driver` as an engine does: every decision
    with a record is one to carry out; after a member starts waiting, a generation is asked
    for over the members still training (a Stop takes one out)."""
    live, taken = set(range(population)), []
    for member, time, score in results:
        step = driver.on_result(member, time, score)
        steps = [step]
        if step.decisions[member] is WAIT:
            gen = driver.generation(live)
            steps += [] if gen is None else [gen]
        for s in steps:
            for m, d in s.decisions.items():
                if d.record is not None:
                    taken.append(comparable(d.record.to_dict()))
                if isinstance(d, Stop):
                    live.discard(m)
                    driver.leave(m)
    return taken


METHODS = [
    ("gpbt-pl", {"pairing": "sync"}),
    ("pbt", {"synch": True}),
    ("gpbt-pl", {"pairing": "truncation"}),
    ("pbt", {}),
]


@pytest.mark.parametrize("method,options", METHODS)
def test_one_recorded_sequence_gives_both_engines_the_local_runs_decisions(
    tmp_path, method, options
):
    # a real local run, with members of different speeds so results interleave
    eng = LocalEngine(
        Counter,
        scheduler(method, options),
        tmp_path,
        population=POPULATION,
        total_steps=TOTAL,
        workers=2,
        deterministic=True,
        sim_duration=lambda m, metrics: 1.0 + 0.3 * m,
    )
    eng.run()
    exp = load(tmp_path)
    recorded = [comparable(r) for r in exp.decision_records()]
    assert any(r["kind"] == "exploit" for r in recorded)  # the sequence exercises copies
    results = exp.report_order()
    for grid in (False, True):  # the local engine's driver, then the Ray adapter's
        sched = scheduler(method, options)
        sched.initial_population(POPULATION)
        assert drive(AsyncDriver(sched, grid=grid), results, POPULATION) == recorded, grid


def test_a_generation_waits_for_every_live_member_and_snapshots_donors_first():
    sched = scheduler("gpbt-pl", {"pairing": "sync"})
    sched.initial_population(3)
    driver = AsyncDriver(sched)
    assert driver.on_result(0, 1, 0.5).decisions[0].record is None  # before the boundary
    assert driver.on_result(0, 2, 0.1).decisions == {0: WAIT}
    assert driver.on_result(1, 2, 0.9).decisions == {1: WAIT}
    assert driver.generation([0, 1, 2]) is None  # member 2 has not arrived
    driver.leave(2)  # it failed: the generation no longer waits for it
    assert driver.waiting(0) and driver.waiting(1)
    gen = driver.generation([0, 1])
    assert gen is not None and gen.time == 2 and not driver.waiting(0)
    assert gen.decisions[0] == Exploit(
        donor=1, config=gen.decisions[0].config, record=gen.decisions[0].record
    )
    states = {0: "w0", 1: "w1"}
    # the snapshot reads every donor before the engine applies any copy
    assert gen.snapshot(states.get) == {1: "w1"}


def test_the_ray_grid_keeps_boundaries_where_steps_overshoot_them():
    # interval 10 with steps of 4: members reach the boundary at time 12. The local engine's
    # driver decides that generation at 12 (the members' own clocks) and the next at 24; the
    # Ray adapter's at the grid points 10 and 20, as Tune's own PBT would.
    times = {}
    for grid in (False, True):
        sched = scheduler("gpbt-pl", {"pairing": "sync"}, interval=10, total=100)
        sched.initial_population(2)
        driver = AsyncDriver(sched, grid=grid)
        decided = []
        for t in range(4, 28, 4):
            for m in (0, 1):
                driver.on_result(m, t, float(m + t))
            gen = driver.generation([0, 1])
            if gen is not None:
                decided.append((t, gen.time))
        times[grid] = decided
    assert times[False] == [(12, 12.0), (24, 24.0)]
    assert times[True] == [(12, 10.0), (20, 20.0)]


def test_the_asynchronous_driver_example_in_docs_architecture_runs(capsys):
    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (code,) = [c for c in blocks if "AsyncDriver(" in c]
    exec(compile(code, "docs/architecture.md", "exec"), {})
    # the worse member copies the better one at the boundary, with a new config
    assert capsys.readouterr().out.startswith("member 0 copies 1 at t=2: {'lr': ")


def test_a_synchronous_run_killed_at_its_barrier_resumes_to_the_same_decisions(tmp_path):
    # the members waiting at the boundary are committed with the state and handed back to
    # the driver on resume, so the generation they wait for is decided as if never killed
    def local(folder):
        return LocalEngine(
            Counter,
            scheduler("gpbt-pl", {"pairing": "sync"}),
            folder,
            population=POPULATION,
            total_steps=TOTAL,
            workers=2,
            deterministic=True,
            sim_duration=lambda m, metrics: 1.0 + 0.3 * m,
        )

    local(tmp_path / "straight").run()
    straight = [comparable(r) for r in load(tmp_path / "straight").decision_records()]
    waited = 0
    for kill_at in (4, 7, 10, 13):
        folder = tmp_path / f"killed{kill_at}"
        eng, commits = local(folder), []

        def die(eng=eng, commits=commits, kill_at=kill_at):
            commits.append(1)
            if len(commits) == kill_at:
                raise KeyboardInterrupt

        eng._after_commit = die
        with pytest.raises(KeyboardInterrupt):
            eng.run()
        state = ExperimentStore(folder).get_state("local_engine")
        waited += sum(bool(st["waiting"]) for st in state["members"].values())
        local(folder).run(resume=True)
        resumed = [comparable(r) for r in load(folder).decision_records()]
        assert resumed == straight, kill_at
    assert waited > 0  # some kill came while members waited at the barrier
