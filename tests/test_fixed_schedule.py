"""The fixed-schedule scheduler (method = "schedule"): pure, seeded, same contract as the others."""

from __future__ import annotations

import json

import pytest

from gpbt.core import Continue, Exploit, FixedSchedule, Stop
from gpbt.core.methods import make_scheduler
from gpbt.core.space import Choice, Float, Int, Space

SPACE = Space({"lr": Float(1e-4, 1e-1, log=True), "epochs": Int(1, 8), "mb": Choice([32, 64])})
A = {"lr": 1e-3, "epochs": 2, "mb": 32}
B = {"lr": 3e-3, "epochs": 2, "mb": 64}
C = {"lr": 1e-2, "epochs": 5, "mb": 64}
ENTRIES = [
    {"time": 0, "config": A},
    {"time": 10, "config": A},  # an interval whose config did not change: no decision
    {"time": 20, "config": B},
    {"time": 40, "config": C},
]


def build(**kw):
    return make_scheduler(
        "schedule", SPACE, perturbation_interval=10, seed=1, options={"entries": ENTRIES}, **kw
    )


def test_lockstep_changes_config_at_the_entry_times_and_never_copies_another_member():
    sched = build()
    assert isinstance(sched, FixedSchedule) and sched.method == "schedule"
    assert sched.initial_population(2) == [A, A]
    seen = {}
    for t in (10, 20, 30, 40, 50):
        decisions = sched.on_generation(t, {0: 1.0, 1: 2.0})
        for m, d in decisions.items():
            assert d.record is not None and d.record.time == t
            if isinstance(d, Exploit):
                assert d.donor == m  # its own weights
                assert d.record.kind == "exploit" and d.record.donor == m
                seen.setdefault(t, []).append((m, d.config))
            else:
                assert isinstance(d, Continue) and d.record.kind == "continue"
    assert seen == {20: [(0, B), (1, B)], 40: [(0, C), (1, C)]}
    assert sched.configs() == {0: C, 1: C}
    record = sched.on_generation(60, {0: 1.0, 1: 1.0})[0].record
    assert record.kind == "continue" and record.reason == "no change scheduled"


def test_asynchronous_reports_switch_at_the_first_report_at_or_after_the_entry():
    sched = build(max_time=50)
    sched.initial_population(1)
    kinds = {}
    for t in (7, 14, 21, 28, 35, 42, 49, 56):
        d = sched.on_report(0, t, 0.5)
        kinds[t] = (d.kind, getattr(d, "config", None), d.record is not None)
    assert kinds[7] == ("continue", None, False)  # not at a boundary: nothing logged
    assert kinds[14] == ("continue", None, True)  # a boundary, A again: logged, no change
    assert kinds[21] == ("exploit", B, True)  # entry at 20 is due at the report at 21
    assert kinds[28] == ("continue", None, False)  # interval counts from the change
    assert kinds[42] == ("exploit", C, True)
    assert kinds[56][0] == "stop" and isinstance(sched.on_report(0, 60, 0.0), Stop)


def test_state_dict_round_trip_continues_identically():
    a = build()
    a.initial_population(1)
    a.on_generation(10, {0: 0.0})
    a.on_generation(20, {0: 0.0})
    b = build()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for t in (30, 40, 50):
        da, db = a.on_generation(t, {0: 1.0}), b.on_generation(t, {0: 1.0})
        assert da[0].kind == db[0].kind and getattr(da[0], "config", None) == getattr(
            db[0], "config", None
        )
    other = make_scheduler(
        "schedule",
        SPACE,
        perturbation_interval=10,
        options={"entries": [{"time": 0, "config": A}]},
    )
    with pytest.raises(ValueError, match="settings differ in \\['entries'"):
        other.load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    "entries, needle",
    [
        (None, "method 'schedule' needs a non-empty list of entries"),
        ([], "method 'schedule' needs a non-empty list of entries"),
        ([{"time": 5, "config": A}], "schedule entry #0 starts at time 5; .* give it time = 0"),
        (
            [{"time": 0, "config": A}, {"time": 0, "config": B}],
            "schedule entry #1: time 0 is not after entry #0's time 0",
        ),
        ([{"t": 0, "config": A}], "schedule entry #0 must have exactly the keys"),
        (
            [{"time": 0, "config": {**A, "lr": 5.0}}],
            "schedule entry #0: parameter 'lr': value 5.0 is outside the search space",
        ),
        (
            [{"time": 0, "config": {"lr": 1e-3}}],
            "schedule entry #0: parameter 'epochs' is missing",
        ),
    ],
)
def test_bad_entries_are_one_clear_error(entries, needle):
    with pytest.raises(ValueError, match=needle):
        make_scheduler("schedule", SPACE, perturbation_interval=10, options={"entries": entries})


@pytest.mark.parametrize(
    "source", ["runs/bo", {"folder": "runs/bo", "member": 3}, {"folder": "runs/bo", "best": 3}]
)
def test_a_source_that_is_not_the_retrain_table_is_one_clear_error(source):
    options = {"entries": [{"time": 0, "config": A}], "source": source}
    needle = "schedule source = .*: must be a table with exactly the keys"
    with pytest.raises(ValueError, match=needle):
        make_scheduler("schedule", SPACE, perturbation_interval=10, options=options)


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="method 'schedule' has no option 'pairing'"):
        make_scheduler(
            "schedule",
            SPACE,
            perturbation_interval=10,
            options={"entries": ENTRIES, "pairing": "sync"},
        )
