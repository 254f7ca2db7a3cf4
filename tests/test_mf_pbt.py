"""MF-PBT (gpbt.core.mf_pbt): sub-populations, their frequencies, migration, determinism and
state, on the lockstep path (on_generation), the asynchronous path (on_report / on_ready) and
one real vector-engine run that `gpbt replay` re-derives."""

import copy
import json

import pytest
from conftest import tiny_vector

from gpbt.core import MFPBT, Continue, Exploit
from gpbt.core.methods import make_scheduler
from gpbt.core.space import Float, Space
from gpbt.engines.toys import MovingOptimumToy, run_toy

SPACE = Space({"lr": Float(1e-4, 1e-1, log=True), "ent": Float(1e-3, 1e-1, log=True)})


def sched(population=8, **options):
    s = MFPBT(SPACE, perturbation_interval=10, seed=0, **options)
    s.initial_population(population)
    return s


def kinds(decisions):
    return {i: d.kind for i, d in decisions.items()}


def exploits(decisions):
    return {i: d.donor for i, d in decisions.items() if isinstance(d, Exploit)}


# ------------------------------------------------------------------ sub-populations
def test_members_are_split_into_contiguous_blocks_fastest_first():
    assert sched(8).subpopulations() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sched(5).subpopulations() == [[0, 1, 2], [3, 4]]  # the fastest gets the extra one
    assert sched(16, frequencies=(1, 2, 5, 10)).subpopulations()[3] == [12, 13, 14, 15]
    assert sched(8, subpopulation_sizes=[3, 5]).subpopulations() == [[0, 1, 2], [3, 4, 5, 6, 7]]


def test_a_population_that_cannot_be_split_is_refused_before_training():
    with pytest.raises(ValueError, match="leaves 1 member.*population of at least 8"):
        sched(6, frequencies=(1, 2, 5, 10))
    with pytest.raises(ValueError, match=r"add up to 7 members, but the population has 8"):
        sched(8, subpopulation_sizes=[3, 4])
    # from a config, the same error before any engine starts
    from pathlib import Path

    from gpbt.config import ConfigError, load_config

    quickstart = Path(__file__).parents[1] / "examples" / "quickstart.toml"
    overrides = ["method=mf-pbt", "population=6", "mf-pbt.frequencies=[1,2,5,10]"]
    with pytest.raises(ConfigError, match=r"^\[mf-pbt\] a population of 6 split into 4"):
        load_config(quickstart, overrides)


@pytest.mark.parametrize(
    "options,needle",
    [
        ({"frequencies": (5, 1)}, "strictly increasing"),
        ({"frequencies": (1, 1)}, "strictly increasing"),
        ({"frequencies": (0, 5)}, "at least 1"),
        ({"frequencies": (1, 2.5)}, "whole number"),
        ({"frequencies": ()}, "frequencies=()"),
        ({"subpopulation_sizes": [4]}, "one whole number of members"),
        ({"subpopulation_sizes": [1, 7]}, r"\(2 or more\)"),
        ({"migration": "both"}, "migration='both' is not known"),
        ({"quantile_fraction": 0.75}, "quantile_fraction"),
        ({"perturbation_factors": (1.25, -0.8)}, "positive factors"),
    ],
)
def test_bad_options_are_named(options, needle):
    with pytest.raises(ValueError, match=needle):
        MFPBT(SPACE, **options)


def test_method_options_are_checked_by_name_and_type():
    s = make_scheduler(
        "mf-pbt",
        SPACE,
        perturbation_interval=10,
        options={"frequencies": [1, 2, 5, 10], "migration": "copy", "resample_probability": 0.1},
    )
    assert isinstance(s, MFPBT) and s.method == "mf-pbt"
    assert s.frequencies == [1, 2, 5, 10] and s.migration == "copy"
    assert s.strategy.options() == {"factors": [1.25, 0.8], "resample_probability": 0.1}
    with pytest.raises(ValueError, match="'frequencies' = '1,5' must be a list of numbers"):
        make_scheduler("mf-pbt", SPACE, perturbation_interval=10, options={"frequencies": "1,5"})
    with pytest.raises(ValueError, match="method 'mf-pbt' has no option 'pairing'"):
        make_scheduler("mf-pbt", SPACE, perturbation_interval=10, options={"pairing": "sync"})


# ------------------------------------------------------------------ lockstep
# P = 8, frequencies (1, 2): sub-populations {0..3} and {4..7}, each with a top, a migration
# and a bottom bracket of one member (ranks 1, 3 and 4 of 4).
FAST = {0: 10.0, 1: 9.0, 2: 1.0, 3: 0.0}
SLOW = {4: 20.0, 5: 3.0, 6: 2.0, 7: -1.0}


def test_a_slow_subpopulation_evolves_only_at_its_frequency():
    s = sched(8, frequencies=(1, 3))
    acting = []
    for g in range(1, 7):
        d = s.on_generation(10.0 * g, {**FAST, **SLOW})
        acting.append(sorted(i for i, x in d.items() if x.kind == "exploit"))
        rest = d[5].record.reason
        if g % 3:
            assert d[7].kind == "continue" and d[6].kind == "continue"
            assert (
                rest == f"sub-population 1 (every 3 intervals) does not evolve after interval {g}"
            )
    # the fast one exploits (bottom member 3) and migrates (bracket member 2) every interval;
    # the slow one's bottom (7) and bracket (6) act at intervals 3 and 6 only
    assert acting == [[2, 3], [2, 3], [2, 3, 6, 7], [2, 3], [2, 3], [2, 3, 6, 7]]


def test_bottom_copies_top_inside_its_subpopulation_and_is_perturbed():
    s = sched(8)
    d = s.on_generation(10.0, {**FAST, **SLOW})
    assert d[3].donor == 0  # the fast bottom copies the fast top, not the better slow member 4
    top = s.configs()[0]
    for name in ("lr", "ent"):
        ratio = d[3].config[name] / top[name]
        assert ratio == pytest.approx(1.25) or ratio == pytest.approx(0.8)
    assert d[3].record.reason == (
        "sub-population 0 (every 1 interval): rank 4 of 4, bottom quantile; copies rank 1 and "
        "perturbs its hyperparameters"
    )


def test_migration_is_asymmetric_between_fast_and_slow():
    s = sched(8, frequencies=(1, 2))
    before = s.configs()
    d = s.on_generation(10.0, {**FAST, **SLOW})
    # fast bracket member 2 (1.0) takes the best other member, 4 (20.0): weights and config,
    # unperturbed
    assert exploits(d) == {2: 4, 3: 0}
    assert d[2].config == before[4]
    assert "which scores higher, and its hyperparameters too" in d[2].record.reason
    before = s.configs()
    d = s.on_generation(20.0, {**FAST, **SLOW})
    # the slow one evolves too: its bracket member 6 (2.0) takes the weights of the best fast
    # member 0 (10.0) but the config of its own best, member 4, as it stood before the step
    assert exploits(d) == {2: 4, 3: 0, 6: 0, 7: 4}
    assert d[6].config == before[4]
    assert d[6].record.partner == 0 and d[6].record.member_score == 2.0
    assert d[6].record.partner_score == 10.0
    assert "hyperparameters of its own sub-population's best, member 4" in d[6].record.reason


def test_the_migration_rule_options():
    copy_all = sched(8, frequencies=(1, 2), migration="copy")
    copy_all.on_generation(10.0, {**FAST, **SLOW})
    before = copy_all.configs()
    d = copy_all.on_generation(20.0, {**FAST, **SLOW})
    assert d[6].donor == 0 and d[6].config == before[0]  # the ablation: migrant's config too
    none = sched(8, frequencies=(1, 2), migration="none")
    d = none.on_generation(10.0, {**FAST, **SLOW})
    assert exploits(d) == {3: 0}
    assert d[2].record.reason.endswith("migration bracket, migration is off")


def test_each_offer_is_taken_once_best_first_and_only_by_a_worse_member():
    # fast sub-population of 8 (brackets of 2: top ranks 1-2, migration ranks 5-6, bottom
    # ranks 7-8) beside a slow one of 4 whose members are the offers, best first
    s = sched(12, frequencies=(1, 2), subpopulation_sizes=[8, 4])
    fast = {0: 100.0, 1: 90.0, 2: 80.0, 3: 70.0, 4: 50.0, 5: 40.0, 6: 1.0, 7: 0.0}
    d = s.on_generation(10.0, {**fast, 8: 60.0, 9: 45.0, 10: 5.0, 11: 4.0})
    # rank 5 (member 4, 50) takes the best offer (8, 60); rank 6 (member 5, 40) the next (9, 45)
    assert exploits(d) == {4: 8, 5: 9, 6: 0, 7: 1}
    s = sched(12, frequencies=(1, 2), subpopulation_sizes=[8, 4])
    d = s.on_generation(10.0, {**fast, 8: 45.0, 9: 44.0, 10: 5.0, 11: 4.0})
    # member 4 (50) beats the best offer (8, 45) and stays; the offer stays open for member 5
    assert exploits(d) == {5: 8, 6: 0, 7: 1}
    assert d[4].record.reason.endswith(
        "migration bracket, no member of another sub-population scores higher"
    )


def test_subpopulations_of_two_exploit_but_have_no_migration_bracket():
    s = sched(4, frequencies=(1, 2))
    d = s.on_generation(10.0, {0: 1.0, 1: 0.0, 2: 9.0, 3: 8.0})
    assert exploits(d) == {1: 0}  # member 1 is below all of the slow pair, yet only exploits
    d = s.on_generation(20.0, {0: 1.0, 1: 0.0, 2: 9.0, 3: 8.0})
    assert exploits(d) == {1: 0, 3: 2}


def test_min_mode_ranks_the_lowest_score_best():
    s = MFPBT(SPACE, perturbation_interval=10, seed=0, mode="min")
    s.initial_population(8)
    d = s.on_generation(10.0, {0: 0.0, 1: 1.0, 2: 9.0, 3: 10.0, 4: -5.0, 5: 2, 6: 3, 7: 4})
    assert exploits(d) == {2: 4, 3: 0}


def test_burn_in_and_max_time():
    s = MFPBT(SPACE, perturbation_interval=10, seed=0, burn_in_period=15, max_time=30)
    s.initial_population(8)
    assert all(
        isinstance(x, Continue) and x.record is None
        for x in s.on_generation(10.0, FAST | SLOW).values()
    )
    d = s.on_generation(20.0, {**FAST, **SLOW})  # the first counted interval
    assert exploits(d) == {2: 4, 3: 0}
    assert set(kinds(s.on_generation(30.0, {**FAST, **SLOW})).values()) == {"stop"}


def test_the_documented_config_runs_the_quickstart_with_mf_pbt():
    import re
    import tomllib
    from pathlib import Path

    from gpbt.config import load_config, validate_config

    root = Path(__file__).parents[1]
    text = (root / "docs" / "research" / "mf-pbt.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    quickstart = load_config(root / "examples" / "quickstart.toml", []).to_dict()
    spec = validate_config({**quickstart, **tomllib.loads(block)})
    s = spec.scheduler()
    assert isinstance(s, MFPBT) and s.frequencies == [1, 5] and s.migration == "asymmetric"
    s.initial_population(spec.population)
    assert s.subpopulations() == [[0, 1, 2, 3], [4, 5, 6, 7]]


# ------------------------------------------------------------------ determinism and state
def toy_records(seed, **options):
    s = make_scheduler(
        "mf-pbt", MovingOptimumToy().space, perturbation_interval=5, seed=seed, options=options
    )
    return run_toy(MovingOptimumToy(steps=100, interval=5), s, population=8, seed=seed).records


def test_same_seed_same_decisions():
    a = toy_records(1)
    assert a == toy_records(1)
    assert a != toy_records(2)
    assert sum(r["kind"] == "exploit" for r in a) > 10
    # every perturbed or migrated config stays inside the space
    lr = MovingOptimumToy().space.params["lr"]
    assert all(lr.low <= r["new_config"]["lr"] <= lr.high for r in a if r["new_config"])


def test_state_round_trip_continues_identically():
    toy = MovingOptimumToy(steps=100, interval=5)
    scores = [{i: float((3 * i + 7 * g) % 11) for i in range(8)} for g in range(1, 13)]
    a = MFPBT(toy.space, perturbation_interval=5, seed=4, frequencies=(1, 3))
    a.initial_population(8)
    for g in range(6):
        a.on_generation(5.0 * (g + 1), scores[g])
    state = json.loads(json.dumps(a.state_dict()))
    b = MFPBT(toy.space, perturbation_interval=5, seed=4, frequencies=(1, 3))
    b.load_state_dict(copy.deepcopy(state))
    for g in range(6, 12):
        da = a.on_generation(5.0 * (g + 1), scores[g])
        db = b.on_generation(5.0 * (g + 1), scores[g])
        assert [x.record.to_dict() for x in da.values()] == [
            x.record.to_dict() for x in db.values()
        ]
    assert a.state_dict() == b.state_dict()
    other = MFPBT(toy.space, perturbation_interval=5, seed=4, frequencies=(1, 4))
    with pytest.raises(ValueError, match=r"settings differ in \['frequencies'\]"):
        other.load_state_dict(state)


# ------------------------------------------------------------------ asynchronous
def test_asynchronous_members_decide_at_their_own_frequency_against_latest_scores():
    s = sched(8, frequencies=(1, 2))
    for i, score in {**FAST, **SLOW}.items():
        s.report(i, 5.0, score)
    # slow member 7 finishes its first interval: its sub-population rests
    d = s.on_report(7, 10.0, -1.0)
    assert (
        d.record.reason == "sub-population 1 (every 2 intervals) does not evolve after interval 1"
    )
    # fast member 2 (bracket) migrates at once from the best other member, 4
    d = s.on_report(2, 10.0, 1.0)
    assert isinstance(d, Exploit) and d.donor == 4 and d.config == s.config(4)
    # it now ranks with 4's score, so the fast bottom is member 3, which copies member 2
    # (rank 1 with the inherited 20.0)
    d = s.on_report(3, 10.0, 0.0)
    assert d.donor == 2
    # slow member 7's second interval: its sub-population evolves, it is at the bottom
    d = s.on_report(7, 20.0, -1.0)
    assert d.donor == 4 and "bottom quantile" in d.record.reason
    # the counts of intervals are part of the state
    assert s.state_dict()["members"]["7"]["extra"] == {"mf_pbt_intervals": 2}


def test_asynchronous_with_synch_asks_for_whole_generations():
    s = MFPBT(SPACE, perturbation_interval=10, seed=0, synch=True)
    s.initial_population(8)
    assert s.synchronous
    with pytest.raises(RuntimeError, match="on_generation"):
        s.on_ready(0, 10.0, 1.0)


# ------------------------------------------------------------------ a real run, replayed
@pytest.mark.slow
def test_a_vector_engine_run_is_replayed_identically(tmp_path):
    from gpbt.analysis.replay import replay
    from gpbt.config import validate_config
    from gpbt.engines.vector import run_vector
    from gpbt.store import load

    cfg = tiny_vector(method="mf-pbt", **{"mf-pbt": {"frequencies": [1, 2]}})
    run_vector(validate_config(cfg), tmp_path, supervise=False)
    exp = load(tmp_path)
    assert len(exp.decisions) == 4 * 4
    assert (exp.decisions["kind"] == "exploit").sum() > 0
    assert exp.decisions["extra.reason"].str.startswith("sub-population").all()
    ok, message = replay(tmp_path)
    assert ok, message
    assert "16 decisions re-derived identically" in message
