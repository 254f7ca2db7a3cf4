"""Issue 15: the pairwise variants beyond the paper (PairwiseLearning's anchor, spread_jitter and
escape_distance, GPBT's copy_margin). Each test pins a decision or the arithmetic against a
reference generator drawn in the documented order."""

import json
import math

import numpy as np
import pytest
from conftest import explore_ctx

from gpbt.core import GPBT, Continue, Exploit, PairwiseLearning
from gpbt.core.methods import make_scheduler
from gpbt.core.space import Choice, Float, Int, Space
from gpbt.core.strategies import UNIFORM_SD, unit_matrix
from gpbt.engines.toys import MovingOptimumToy, run_toy

SPACE = Space(
    {
        "lr": Float(1e-4, 1e-1, log=True),
        "clip": Float(0.1, 0.5),
        "epochs": Int(1, 10),
        "batch": Int(256, 2048, log=True),
        "mb": Choice([16, 32, 64, 128]),
        "act": Choice(["relu", "tanh"], ordered=False),
    }
)


ctx = explore_ctx


def test_unit_matrix_matches_space_to_unit():
    rng = np.random.default_rng(3)
    configs = [SPACE.sample(rng) for _ in range(50)]
    got = unit_matrix(SPACE, configs)
    want = np.stack([SPACE.to_unit(c) for c in configs])
    assert got.shape == (50, 6)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_defaults_describe_the_paper_method_unchanged():
    assert set(PairwiseLearning().options()) == {
        "w_inertia",
        "w_winner",
        "w_center",
        "velocity_clamp",
        "resample_probability",
        "space",
    }
    assert "copy_margin" not in GPBT(SPACE, perturbation_interval=1).describe()
    opts = PairwiseLearning(anchor="winner", spread_jitter=0.1, escape_distance=0.2).options()
    assert (opts["anchor"], opts["spread_jitter"], opts["escape_distance"]) == ("winner", 0.1, 0.2)
    assert GPBT(SPACE, perturbation_interval=1, copy_margin=0.5).describe()["copy_margin"] == 0.5


def test_anchor_winner_steps_from_the_winner_away_from_the_loser():
    space = Space({"x": Float(0.0, 10.0)})
    rng = np.random.default_rng(7)
    new, state = PairwiseLearning(anchor="winner").explore(ctx(space, {"x": 2.0}, {"x": 5.0}, rng))
    ref = np.random.default_rng(7)
    ref.uniform()  # the resample draw
    _, r2, _ = ref.uniform(size=3)
    assert state["velocity"]["x"] == pytest.approx(r2 * 0.3)
    assert new["x"] == pytest.approx(5.0 + 10.0 * r2 * 0.3)
    assert new["x"] > 5.0  # beyond the winner, in the direction loser -> winner


def test_anchor_winner_clips_at_the_bound():
    space = Space({"x": Float(0.0, 1.0)})
    for s in range(20):
        new, _ = PairwiseLearning(anchor="winner").explore(
            ctx(space, {"x": 0.0}, {"x": 0.95}, np.random.default_rng(s))
        )
        assert 0.95 <= new["x"] <= 1.0


def test_spread_jitter_size_follows_the_population_spread():
    space = Space({"x": Float(0.0, 1.0)})
    loser, winner = {"x": 0.4}, {"x": 0.6}
    # collapsed population (sd 0.1 in unit space): sigma = s * (1 - 0.1 / sd_uniform)
    collapsed = {0: (loser, 0.0), 1: (winner, 1.0)}
    new, state = PairwiseLearning(spread_jitter=0.2).explore(
        ctx(space, loser, winner, np.random.default_rng(11), population=collapsed)
    )
    ref = np.random.default_rng(11)
    ref.uniform()
    _, r2, _ = ref.uniform(size=3)
    z = ref.standard_normal()
    sigma = 0.2 * (1.0 - 0.1 / UNIFORM_SD)
    assert new["x"] == pytest.approx(0.4 + r2 * 0.2 + sigma * z)
    assert state["velocity"]["x"] == pytest.approx(r2 * 0.2)  # the jitter is not momentum
    # a population spread at least as wide as a fresh one: no jitter, plain PL
    wide = {i: ({"x": v}, 0.0) for i, v in enumerate([0.0, 1.0, 0.0, 1.0])}
    wide[0], wide[1] = (loser, 0.0), (winner, 1.0)
    assert np.std([0.4, 0.6, 0.0, 1.0]) > UNIFORM_SD
    new, _ = PairwiseLearning(spread_jitter=0.2).explore(
        ctx(space, loser, winner, np.random.default_rng(11), population=wide)
    )
    assert new["x"] == pytest.approx(0.4 + r2 * 0.2)


def test_escape_redraws_only_the_parameters_the_pair_agrees_on():
    space = Space({"a": Float(0.0, 1.0), "b": Float(0.0, 1.0)})
    loser, winner = {"a": 0.50, "b": 0.2}, {"a": 0.52, "b": 0.8}
    rng = np.random.default_rng(5)
    new, state = PairwiseLearning(escape_distance=0.05).explore(
        ctx(space, loser, winner, rng, loser_state={"velocity": {"a": 0.3, "b": 0.0}})
    )
    ref = np.random.default_rng(5)
    ref.uniform()  # a: resample draw
    ref.uniform(size=3)  # a: r1, r2, r3
    fresh = ref.uniform()  # a: the fresh draw (Float.sample)
    ref.uniform()  # b: resample draw
    _, q2, _ = ref.uniform(size=3)
    assert new["a"] == pytest.approx(fresh)
    assert state["velocity"]["a"] == 0.0
    assert new["b"] == pytest.approx(0.2 + q2 * 0.6)
    # agreeing exactly (an integer both members hold) escapes too; a gap of e or more does not
    far = {"a": 0.60, "b": 0.2}
    new2, _ = PairwiseLearning(escape_distance=0.05).explore(
        ctx(space, loser, far, np.random.default_rng(5))
    )
    assert 0.5 <= new2["a"] <= 0.6


def test_local_escape_restarts_near_the_winner():
    space = Space({"a": Float(0.0, 1.0)})
    loser, winner = {"a": 0.50}, {"a": 0.52}
    new, state = PairwiseLearning(escape_distance=0.05, escape_step=0.1).explore(
        ctx(space, loser, winner, np.random.default_rng(9), loser_state={"velocity": {"a": 0.2}})
    )
    ref = np.random.default_rng(9)
    ref.uniform(size=4)  # resample draw, r1, r2, r3
    z = ref.standard_normal()
    assert new["a"] == pytest.approx(min(max(0.52 + 0.1 * z, 0.0), 1.0))
    assert state["velocity"]["a"] == 0.0
    with pytest.raises(ValueError, match="escape_step needs escape_distance"):
        PairwiseLearning(escape_step=0.1)
    with pytest.raises(ValueError, match="escape_step"):
        PairwiseLearning(escape_distance=0.1, escape_step=0.0)


def test_escape_and_jitter_refuse_the_raw_space_and_bad_values():
    with pytest.raises(ValueError, match="unit space"):
        PairwiseLearning(space="raw", escape_distance=0.1)
    with pytest.raises(ValueError, match="unit space"):
        PairwiseLearning(space="raw", spread_jitter=0.1)
    with pytest.raises(ValueError, match="spread_jitter"):
        PairwiseLearning(spread_jitter=-0.1)
    with pytest.raises(ValueError, match="escape_distance"):
        PairwiseLearning(escape_distance=1.5)
    with pytest.raises(ValueError, match="anchor"):
        PairwiseLearning(anchor="mean")


def test_new_options_keep_unordered_choices_and_bounds():
    rng = np.random.default_rng(0)
    pl = PairwiseLearning(anchor="winner", spread_jitter=0.3, escape_distance=0.2)
    configs = [SPACE.sample(rng) for _ in range(8)]
    pop = {i: (c, float(i)) for i, c in enumerate(configs)}
    for s in range(30):
        new, _ = pl.explore(ctx(SPACE, configs[0], configs[7], np.random.default_rng(s), None, pop))
        assert SPACE.validate(new) == new
        assert new["act"] == configs[7]["act"]


# ----------------------------------------------------------------------------- copy margin
def test_copy_margin_async_pair_copies_only_a_clear_lead():
    sched = GPBT(Space({"x": Float(0.0, 1.0)}), perturbation_interval=10, seed=0, copy_margin=1.0)
    sched.initial_population(3)
    scores = {1: 0.5, 2: 0.5}
    for m, s in scores.items():
        sched.report(m, 10, s)
    # population scores 0, 0.5, 0.5: sd = 0.2357; a lead of 0.5 > 1.0 * sd copies
    d = sched.on_ready(0, 10, 0.0)
    assert isinstance(d, Exploit)
    sched2 = GPBT(Space({"x": Float(0.0, 1.0)}), perturbation_interval=10, seed=0, copy_margin=3.0)
    sched2.initial_population(3)
    for m, s in scores.items():
        sched2.report(m, 10, s)
    d = sched2.on_ready(0, 10, 0.0)  # margin 3 * 0.2357 = 0.71 > 0.5: both keep their weights
    assert isinstance(d, Continue) and "margin" in d.record.reason


@pytest.mark.parametrize("pairing", ["random", "sync"])
def test_copy_margin_lockstep_pairs_within_the_margin_continue(pairing):
    space = Space({"x": Float(0.0, 1.0)})
    # two tight clusters far apart: only cross-cluster pairs differ by more than the margin
    scores = {0: 0.0, 1: 0.01, 2: 10.0, 3: 10.01}
    copied = kept = 0
    for seed in range(20):
        sched = GPBT(space, pairing=pairing, perturbation_interval=10, seed=seed, copy_margin=0.5)
        sched.initial_population(4)
        out = sched.on_generation(10, scores)
        for m, d in out.items():
            if isinstance(d, Exploit):
                assert scores[d.donor] - scores[m] > 0.5 * np.std(list(scores.values()))
                copied += 1
            elif d.record.partner is not None and scores[d.record.partner] > scores[m]:
                # lost a pair by no more than the margin: kept its weights
                assert abs(scores[d.record.partner] - scores[m]) < 1.0
                kept += 1
    assert copied > 0 and kept > 0


def test_copy_margin_zero_is_the_paper_rule_and_bad_values_refused():
    a = make_scheduler("gpbt-pl", SPACE, perturbation_interval=10, seed=2)
    b = make_scheduler(
        "gpbt-pl", SPACE, perturbation_interval=10, seed=2, options={"copy_margin": 0}
    )
    a.initial_population(6)
    b.initial_population(6)
    rng = np.random.default_rng(0)
    for t in (10, 20, 30):
        scores = {i: float(rng.normal()) for i in range(6)}
        da, db = a.on_generation(t, scores), b.on_generation(t, scores)
        assert [(d.kind, getattr(d, "config", None)) for d in da.values()] == [
            (d.kind, getattr(d, "config", None)) for d in db.values()
        ]
    with pytest.raises(ValueError, match="copy_margin"):
        GPBT(SPACE, copy_margin=-1)
    with pytest.raises(ValueError, match="copy_margin"):
        GPBT(SPACE, copy_margin=math.nan)
    with pytest.raises(ValueError, match="pairs"):
        GPBT(SPACE, pairing="truncation", copy_margin=0.5)


def test_copy_margin_ignores_failed_scores():
    sched = GPBT(Space({"x": Float(0.0, 1.0)}), perturbation_interval=10, seed=0, copy_margin=1.0)
    sched.initial_population(4)
    for m, s in {1: 1.0, 2: 1.0, 3: float("nan")}.items():
        sched.report(m, 10, s)
    # the NaN member is the worst score (-inf) but does not blow the spread up to inf
    assert math.isfinite(sched._margin())
    assert isinstance(sched.on_ready(3, 20, float("nan")), Exploit)  # -inf loses to anything


# ----------------------------------------------------------------------------- persistence
@pytest.mark.parametrize(
    "options",
    [
        {"anchor": "winner"},
        {"spread_jitter": 0.2},
        {"escape_distance": 0.1},
        {"escape_distance": 0.1, "escape_step": 0.1},
        {"copy_margin": 0.5},
        {"copy_margin": 0.5, "pairing": "sync", "spread_jitter": 0.1, "escape_distance": 0.1},
    ],
)
def test_variants_restore_and_continue_identically(options):
    def build():
        return make_scheduler("gpbt-pl", SPACE, perturbation_interval=10, seed=4, options=options)

    def drive(s, times, seed):
        rng = np.random.default_rng(seed)
        out = []
        for t in times:
            if s.synchronous:
                ds = s.on_generation(t, {i: float(rng.normal()) for i in range(6)})
                out.append({i: (d.kind, getattr(d, "config", None)) for i, d in ds.items()})
            else:
                for i in rng.permutation(6):
                    d = s.on_report(int(i), t, float(rng.normal()))
                    out.append((int(i), d.kind, getattr(d, "config", None)))
        return out

    a = build()
    a.initial_population(6)
    drive(a, [10, 20, 30], 1)
    saved = json.loads(json.dumps(a.state_dict()))
    b = build()
    b.load_state_dict(saved)
    assert drive(a, [40, 50, 60], 2) == drive(b, [40, 50, 60], 2)


# ----------------------------------------------------------------------------- behaviour
def test_escape_keeps_the_population_spread_where_pl_collapses_it():
    toy = MovingOptimumToy()
    div = {}
    for name, options in (("pl", {}), ("escape", {"escape_distance": 0.1})):
        div[name] = np.mean(
            [
                run_toy(
                    toy,
                    make_scheduler(
                        "gpbt-pl",
                        toy.space,
                        perturbation_interval=toy.interval,
                        seed=s,
                        options=options,
                    ),
                    8,
                    s,
                ).diversity[-1]
                for s in range(30)
            ]
        )
    assert div["escape"] > 2 * div["pl"]


# ----------------------------------------------------------------------------- named method
def test_gpbt_pl_escape_is_gpbt_pl_with_its_frozen_options():
    from gpbt.core.methods import ESCAPE_OPTIONS

    assert ESCAPE_OPTIONS == {"escape_distance": 0.1, "copy_margin": 0.5}
    named = make_scheduler("gpbt-pl-escape", SPACE, perturbation_interval=10, seed=3)
    plain = make_scheduler(
        "gpbt-pl", SPACE, perturbation_interval=10, seed=3, options=dict(ESCAPE_OPTIONS)
    )
    d = named.describe()
    assert d["method"] == "gpbt-pl-escape" and d["pairing"] == "random"
    assert d["copy_margin"] == 0.5 and d["strategy_options"]["escape_distance"] == 0.1
    assert d["strategy_options"]["w_inertia"] == 1.0 and d["strategy_options"]["space"] == "unit"
    named.initial_population(8)
    plain.initial_population(8)
    rng = np.random.default_rng(1)
    exploits = 0
    for t in range(10, 210, 10):
        scores = {i: float(rng.normal()) for i in range(8)}
        a, b = named.on_generation(t, scores), plain.on_generation(t, scores)
        assert [(x.kind, getattr(x, "config", None)) for x in a.values()] == [
            (x.kind, getattr(x, "config", None)) for x in b.values()
        ]
        exploits += sum(x.kind == "exploit" for x in a.values())
    assert exploits > 0
    # the paper's method is not touched by it
    assert "copy_margin" not in make_scheduler("gpbt-pl", SPACE, perturbation_interval=1).describe()


def test_gpbt_pl_escape_keeps_its_strategy_and_is_a_config_method():
    from gpbt.config import validate_config

    with pytest.raises(ValueError, match="strategy cannot be changed"):
        make_scheduler(
            "gpbt-pl-escape", SPACE, perturbation_interval=1, options={"strategy": "copy"}
        )
    with pytest.raises(ValueError, match="method 'gpbt-pl-escape' has no option 'w_intertia'"):
        make_scheduler("gpbt-pl-escape", SPACE, perturbation_interval=1, options={"w_intertia": 1})
    cfg = validate_config(
        {
            "env": "CartPole-v1",
            "method": "gpbt-pl-escape",
            "population": 4,
            "total_steps": 1000,
            "perturbation_interval": 100,
            "space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}},
            "gpbt-pl-escape": {"copy_margin": 1.0},
        }
    )
    assert cfg["method"] == "gpbt-pl-escape"
    assert cfg.scheduler().describe()["copy_margin"] == 1.0  # the table overrides
