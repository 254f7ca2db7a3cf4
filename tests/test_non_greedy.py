"""`pbt-patient` (gpbt.core.patient_pbt): PBT that judges a member only after a grace period
since its copy, on the mean of its last few scores; docs/research/non-greedy.md says why."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gpbt.analysis.replay import RecordedScores
from gpbt.core.decisions import Exploit
from gpbt.core.methods import make_scheduler
from gpbt.engines.lockstep import Lockstep
from gpbt.engines.toys import MovingOptimumToy, QuadraticToy, ToyPopulation, run_toy

SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}


def patient(**options):
    return make_scheduler("pbt-patient", SPACE, perturbation_interval=10, seed=5, options=options)


def plain(record: dict) -> tuple:
    return record["time"], record["member"], record["kind"], record["donor"], record["new_config"]


def decided(decisions: dict) -> dict:
    return {
        i: (d.kind, getattr(d, "donor", None), getattr(d, "config", None))
        for i, d in decisions.items()
    }


@pytest.mark.parametrize("toy", [QuadraticToy(), MovingOptimumToy()])
def test_with_no_grace_and_a_window_of_one_it_is_pbt_draw_for_draw(toy):
    pbt = make_scheduler("pbt", toy.space, perturbation_interval=toy.interval, seed=3)
    same = make_scheduler(
        "pbt-patient",
        toy.space,
        perturbation_interval=toy.interval,
        seed=3,
        options={"grace_intervals": 0, "score_window": 1},
    )
    a, b = run_toy(toy, pbt, 8, seed=3), run_toy(toy, same, 8, seed=3)
    assert a.exploits > 0
    assert [plain(r) for r in a.records] == [plain(r) for r in b.records]
    assert a.final_scores == b.final_scores


def test_with_no_grace_and_a_window_of_one_the_asynchronous_path_is_pbt():
    pbt = make_scheduler("pbt", SPACE, perturbation_interval=10, seed=5)
    same = patient(grace_intervals=0, score_window=1)
    rng = np.random.default_rng(0)
    pbt.initial_population(6), same.initial_population(6)
    exploits = 0
    for step in range(1, 40):  # members report at their own times, 5 or 10 steps apart
        for m in rng.permutation(6):
            t, score = 5.0 * step, float(rng.normal())
            a, b = pbt.on_report(int(m), t, score), same.on_report(int(m), t, score)
            assert decided({0: a}) == decided({0: b})
            exploits += isinstance(a, Exploit)
    assert exploits > 10


def test_a_member_in_its_grace_period_is_never_a_loser_nor_a_donor_lockstep():
    sched = patient(grace_intervals=2, score_window=1)
    sched.initial_population(4)
    # generation 1: member 0 is the worst, copies the best (member 3)
    d = sched.on_generation(10, {0: 0.0, 1: 5.0, 2: 6.0, 3: 9.0})
    assert d[0].kind == "exploit" and d[0].donor == 3
    # the next two boundaries: member 0 is far the worst, then far the best; it is neither
    # copied over nor copied from: the ranking runs over the members out of their grace
    # period, {1, 2, 3} and then {2, 3} (member 1 copied at 20)
    for t, score, loser in ((20, -100.0, 1), (30, 100.0, 2)):
        d = sched.on_generation(t, {0: score, 1: 5.0, 2: 6.0, 3: 9.0})
        assert d[0].kind == "continue"
        assert d[0].record.reason == (
            f"in its grace period: copied {t // 10 - 1} interval(s) ago, judged again after 3 "
            "on the copied weights"
        )
        assert [i for i in d if d[i].kind == "exploit"] == [loser]
        assert d[loser].donor == 3
    # after grace_intervals + 1 = 3 intervals on the copied weights it is judged again
    d = sched.on_generation(40, {0: -100.0, 1: 5.0, 2: 6.0, 3: 9.0})
    assert d[0].kind == "exploit"


def test_a_member_in_its_grace_period_is_never_a_loser_nor_a_donor_asynchronous():
    sched = patient(grace_intervals=1, score_window=1)
    sched.initial_population(4)
    for m, s in ((1, 5.0), (2, 6.0), (3, 9.0)):
        sched.on_report(m, 5, s)  # reported, not yet ready
    d = sched.on_report(0, 10, 0.0)
    assert d.kind == "exploit" and d.donor == 3
    # member 0 now carries member 3's weights and is out of the ranking: member 1 is the
    # bottom of {1, 2, 3} and its donor is member 3 whatever member 0 scored before its copy
    d = sched.on_report(1, 10, 5.0)
    assert d.kind == "exploit" and d.donor == 3
    d = sched.on_report(0, 20, -50.0)  # the worst score, one interval after its copy
    assert d.kind == "continue" and "grace period" in d.record.reason
    d = sched.on_report(0, 30, -50.0)  # two intervals on the copied weights: judged
    assert d.kind == "exploit"


def test_the_smoothed_score_takes_a_decision_the_last_interval_would_not():
    # member 0 had one bad interval after two good ones (mean 7); member 1 is steadily
    # mediocre (mean 5). On the last interval PBT copies over member 0; on the mean of three
    # the loser is member 1.
    history = {0: [10.0, 10.0, 1.0], 1: [5.0, 5.0, 5.0], 2: [8.0] * 3, 3: [9.0] * 3}
    decisions = {}
    for window in (1, 3):
        sched = make_scheduler(  # the first decision at 30, on three intervals
            "pbt-patient",
            SPACE,
            perturbation_interval=10,
            burn_in_period=30,
            options={"grace_intervals": 0, "score_window": window},
        )
        sched.initial_population(4)
        for g in range(3):
            d = sched.on_generation(10 * (g + 1), {m: h[g] for m, h in history.items()})
        decisions[window] = [i for i in d if d[i].kind == "exploit"]
    assert decisions == {1: [0], 3: [1]}
    # the record says what the loser was judged on
    assert d[1].record.reason == ("bottom quantile by the mean of the last 3 scores (5; donor's 9)")
    assert (d[1].record.member_score, d[1].record.partner_score) == (5.0, 9.0)


def test_a_copy_inherits_its_donors_scores_and_a_failed_score_is_the_worst():
    sched = patient(grace_intervals=0, score_window=2)
    sched.initial_population(4)
    sched.on_generation(10, {0: 1.0, 1: 5.0, 2: 6.0, 3: 9.0})
    assert sched.fitness(0) == 9.0  # it copied member 3: its window is member 3's
    d = sched.on_generation(20, {0: 7.0, 1: float("nan"), 2: 6.0, 3: 9.0})
    assert sched.fitness(0) == 8.0  # 9 at the copy, 7 since
    # member 1's window holds a NaN: the worst, whatever its earlier score (5)
    assert d[1].kind == "exploit"
    assert d[1].record.reason.endswith("(-inf; donor's 9)")


def test_mode_min_ranks_by_the_smoothed_loss():
    sched = make_scheduler(
        "pbt-patient",
        SPACE,
        perturbation_interval=10,
        burn_in_period=20,
        mode="min",
        options={"score_window": 2},
    )
    sched.initial_population(4)
    sched.on_generation(10, {0: 1.0, 1: 2.0, 2: 3.0, 3: 9.0})
    d = sched.on_generation(20, {0: 1.0, 1: 2.0, 2: 3.0, 3: 0.5})  # 3: mean loss 4.75, worst
    assert [i for i in d if d[i].kind == "exploit"] == [3] and d[3].donor == 0
    assert d[3].record.reason.endswith("(4.75; donor's 1)")


def test_same_seed_same_run():
    toy = MovingOptimumToy()
    runs = [
        run_toy(
            toy, make_scheduler("pbt-patient", toy.space, perturbation_interval=5, seed=9), 8, 9
        )
        for _ in range(2)
    ]
    assert runs[0].records == runs[1].records and runs[0].final_scores == runs[1].final_scores
    assert any(r["reason"].startswith("in its grace period") for r in runs[0].records)


@pytest.mark.parametrize("synchronous", [True, False])
def test_a_restored_scheduler_continues_bit_identically(synchronous):
    scores = np.random.default_rng(1).normal(size=(20, 6)).tolist()

    def feed(sched, step):
        t = 10.0 * step
        if synchronous:
            return decided(sched.on_generation(t, dict(enumerate(scores[step]))))
        return decided({m: sched.on_report(m, t, s) for m, s in enumerate(scores[step])})

    a = patient(grace_intervals=1, score_window=3)
    a.initial_population(6)
    for step in range(1, 8):
        feed(a, step)
    # through JSON, as the engines store it; taken before `a` goes on, so a state dict must
    # not change when its scheduler does
    state = a.state_dict()
    frozen = json.dumps(state, sort_keys=True)
    b = patient(grace_intervals=1, score_window=3)
    b.load_state_dict(json.loads(frozen))
    later_a = [feed(a, step) for step in range(8, 20)]
    later_b = [feed(b, step) for step in range(8, 20)]
    assert later_a == later_b
    assert any(k == "exploit" for d in later_a for k, _, _ in d.values())
    assert json.dumps(state, sort_keys=True) == frozen
    with pytest.raises(ValueError, match=r"settings differ in \['grace_intervals'\]"):
        patient(grace_intervals=2, score_window=3).load_state_dict(json.loads(frozen))


def test_replay_rederives_the_decision_log_from_the_reports():
    # what `gpbt replay` does with a lockstep run: feed the stored scores through the same
    # loop to a fresh scheduler and compare the decisions
    toy = QuadraticToy()
    sched = make_scheduler("pbt-patient", toy.space, perturbation_interval=toy.interval, seed=2)
    members = ToyPopulation(toy, 8, seed=2)
    configs = [members.complete(c) for c in sched.initial_population(8)]
    members.set_configs(configs)
    reports, records = [], []

    def keep(event):
        reports.extend(event["reports"]), records.extend(event["decisions"])

    Lockstep(sched, members, members.times(), emit=keep, complete=members.complete).run(configs)
    fresh = make_scheduler("pbt-patient", toy.space, perturbation_interval=toy.interval, seed=2)
    again: list[dict] = []
    frame = pd.DataFrame([{k: r[k] for k in ("member", "time", "score")} for r in reports])
    Lockstep(
        fresh,
        RecordedScores(frame),
        [float(t) for t in members.times()],
        emit=lambda e: again.extend(e["decisions"]),
    ).run(fresh.initial_population(8))
    assert sum(r["kind"] == "exploit" for r in records) > 0
    assert again == records


@pytest.mark.parametrize(
    "options, message",
    [
        ({"grace_intervals": -1}, "grace_intervals=-1: must be a whole number >= 0"),
        ({"score_window": 0}, "score_window=0: must be a whole number >= 1"),
        ({"score_window": 1.5}, "method 'pbt-patient' option 'score_window' = 1.5 must be an"),
        ({"kappa": 2}, "method 'pbt-patient' has no option 'kappa'"),
    ],
)
def test_bad_options_get_one_clear_error(options, message):
    with pytest.raises(ValueError) as err:
        patient(**options)
    assert str(err.value).startswith(message)


def test_describe_records_the_judgement():
    d = patient(grace_intervals=3, score_window=4).describe()
    assert (d["method"], d["grace_intervals"], d["score_window"]) == ("pbt-patient", 3, 4)


@pytest.mark.slow
def test_a_vector_run_replays(tmp_path):
    """A real (tiny) vector run: the store keeps what the patient judgement needs, and
    `gpbt replay` re-derives every decision, grace periods and smoothed scores included."""
    from conftest import tiny_vector

    from gpbt.analysis.replay import replay
    from gpbt.config import validate_config
    from gpbt.engines.vector import run_vector
    from gpbt.store import ExperimentStore

    cfg = tiny_vector(method="pbt-patient", population=4, **{"pbt-patient": {"score_window": 2}})
    run_vector(validate_config(cfg), tmp_path, supervise=False)
    with ExperimentStore(tmp_path) as store:
        records = store.decision_records()
    assert any(r["kind"] == "exploit" for r in records)
    assert any(r["reason"].startswith("in its grace period") for r in records)
    ok, message = replay(tmp_path)
    assert ok, message
