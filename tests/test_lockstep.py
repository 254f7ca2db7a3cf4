"""The one lockstep loop (gpbt.engines.lockstep), driven with a real toy population: the order
of reports, decisions, exploits and checkpoints, and the events it emits. Numpy only: fast."""

import numpy as np

from gpbt.core.methods import make_scheduler
from gpbt.engines.lockstep import TIMING_KEYS, Lockstep
from gpbt.engines.toys import QuadraticToy, ToyPopulation, run_toy
from gpbt.store import ExperimentStore


class CountingToyPopulation(ToyPopulation):
    """A toy population that remembers when it was asked to checkpoint and to copy."""

    def __init__(self, *args):
        super().__init__(*args)
        self.saved, self.copies = [], []

    def save(self, generation, configs):
        self.saved.append(generation)

    def copy_members(self, index):
        self.copies.append(np.asarray(index).tolist())
        super().copy_members(index)


def drive(tmp_path, method="pbt", checkpoint_every=3, population=4, seed=0):
    toy = QuadraticToy(steps=22, interval=4)  # 6 generations, the last one 2 steps long
    sched = make_scheduler(method, toy.space, perturbation_interval=toy.interval, seed=seed)
    members = CountingToyPopulation(toy, population, seed)
    configs = [members.complete(c) for c in sched.initial_population(population)]
    members.set_configs(configs)
    events = []
    with ExperimentStore(tmp_path / "run") as store:
        Lockstep(
            sched,
            members,
            members.times(),
            store=store,
            emit=events.append,
            checkpoint_every=checkpoint_every,
            complete=members.complete,
        ).run(configs)
        reports, decisions = store.reports(), store.decisions()
    return members, events, reports, decisions


def test_generations_end_at_every_interval_and_at_the_last_step(tmp_path):
    members, events, reports, _ = drive(tmp_path)
    assert members.times() == [4, 8, 12, 16, 20, 22]
    assert [e["time"] for e in events] == [4, 8, 12, 16, 20, 22]
    assert sorted(reports["time"].unique().tolist()) == [4, 8, 12, 16, 20, 22]
    assert len(reports) == 6 * 4


def test_no_decision_after_the_last_generation(tmp_path):
    _, events, _, decisions = drive(tmp_path)
    assert events[-1]["decisions"] == [] and events[-1]["exploits"] == 0
    assert decisions["time"].max() == 20
    # every decision the loop emitted is in the store, and nothing else
    emitted = [(d["time"], d["member"], d["kind"]) for e in events for d in e["decisions"]]
    stored = list(zip(decisions["time"], decisions["member"], decisions["kind"], strict=True))
    assert sorted(emitted) == sorted(stored)


def test_checkpoints_when_due_and_after_the_last_generation(tmp_path):
    members, _, _, _ = drive(tmp_path, checkpoint_every=4)
    assert members.saved == [4, 6]
    members, _, _, _ = drive(tmp_path / "never", checkpoint_every=0)
    assert members.saved == [6]


def test_exploits_reach_the_population_as_one_index(tmp_path):
    members, events, _, decisions = drive(tmp_path, method="pbt")
    exploits = decisions[decisions["kind"] == "exploit"]
    assert len(exploits) > 0
    assert sum(e["exploits"] for e in events) == len(exploits)
    # one copy call per generation with exploits, member i taking its donor's row
    assert len(members.copies) == sum(1 for e in events if e["exploits"])
    first = exploits[exploits["time"] == exploits["time"].min()]
    index = members.copies[0]
    for m, donor in zip(first["member"], first["donor"], strict=True):
        assert index[int(m)] == int(donor)


def test_each_generation_event_says_where_the_time_went(tmp_path):
    _, events, _, _ = drive(tmp_path)
    for e in events:
        assert e["type"] == "generation"
        for k in ("train_s", "manage_s", *TIMING_KEYS):
            assert e[k] >= 0.0, k
        assert e["manage_s"] >= e["scheduler_s"]
        assert len(e["members"]) == len(e["reports"]) == 4


def test_run_toy_fills_the_toys_defaults_for_the_default_method():
    # "default" tunes nothing: every member trains with the toy's untuned values (this used to
    # fail with a KeyError, as run_toy did not fill in the defaults the bench cells did)
    toy = QuadraticToy()
    sched = make_scheduler("default", toy.space, perturbation_interval=toy.interval, seed=0)
    result = run_toy(toy, sched, 3, 0)
    assert result.exploits == 0
    assert len(set(result.final_scores)) == 1  # same config, same start, deterministic toy


def test_the_example_in_docs_architecture_runs(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "Lockstep(" in c]
    exec(compile(code, "docs/architecture.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert [int(x.split()[0]) for x in lines[:-1]] == list(range(1, 11))  # 10 generations
    final = [float(x) for x in lines[-1].strip("[]").split(",")]
    assert len(final) == 4 and max(final) > 1.0  # the quadratic toy's optimum is 1.2
