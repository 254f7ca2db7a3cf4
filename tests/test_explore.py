"""PBT's explore step as explicit options (issue 25): the perturbation factors and the resample
rule ("prior", "local", "none"), their bounds, their drift, and how they are stored."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpbt.config import ConfigError, validate_config
from gpbt.core.methods import make_scheduler
from gpbt.core.space import Choice, Float, Int, Space
from gpbt.core.strategies import LOCAL_RESAMPLE_SD, ExploreContext, Perturb

SPACE = Space(
    {
        "lr": Float(1e-5, 1e-3, log=True),
        "clip": Float(0.1, 0.5),
        "epochs": Int(2, 8),
        "batch": Int(256, 2048, log=True),
        "mb": Choice([64, 128, 256]),
        "opt": Choice(["adam", "sgd"], ordered=False),
    }
)
WINNER = {"lr": 1e-4, "clip": 0.3, "epochs": 5, "batch": 512, "mb": 128, "opt": "adam"}


def step(strategy: Perturb, winner: dict, rng: np.random.Generator, space: Space = SPACE) -> dict:
    ctx = ExploreContext(space, rng, 0.0, 0, 1, dict(winner), dict(winner), {}, 1.0)
    return strategy.explore(ctx)[0]


def test_prior_is_the_step_as_it_was_before_the_option():
    # what the explore step gave before `resample` existed (commit 2d09521, same generator and
    # winner): a stored run resumes, and a suite's pbt row reruns, exactly as before
    rng = np.random.default_rng(7)
    assert [step(Perturb(), WINNER, rng), step(Perturb(resample="prior"), WINNER, rng)] == [
        {"lr": 8e-05, "clip": 0.4494213781585048, "epochs": 7, "batch": 410, "mb": 256,
         "opt": "adam"},
        {"lr": 8e-05, "clip": 0.36, "epochs": 6, "batch": 1724, "mb": 64, "opt": "adam"},
    ]  # fmt: skip


@pytest.mark.parametrize("rule", ["prior", "local", "none"])
def test_every_rule_stays_within_the_bounds_from_any_start(rule):
    strategy = Perturb((1.25, 0.8), resample_probability=0.5, resample=rule)
    rng = np.random.default_rng(0)
    edges = [
        {n: p.from_unit(u) for n, p in SPACE.params.items()} for u in (0.0, 1.0, 0.5)
    ]  # both ends and the middle of every range
    for start in edges:
        config = dict(start)
        for _ in range(200):
            config = step(strategy, config, rng)
            assert SPACE.validate(config) == config


def test_none_never_resamples_even_at_probability_one():
    strategy = Perturb((1.25, 0.8), resample_probability=1.0, resample="none")
    rng = np.random.default_rng(1)
    for _ in range(300):
        new = step(strategy, WINNER, rng)
        assert new["lr"] / WINNER["lr"] in (pytest.approx(1.25), pytest.approx(0.8))
        assert new["clip"] in (pytest.approx(0.375), pytest.approx(0.24))
        assert new["mb"] in (64, 256)  # an ordered choice moves one index, never redrawn
        assert new["opt"] == "adam"


def unit_steps(rule: str, n: int) -> np.ndarray:
    """The unit-space move of lr over n resamples (probability 1) from the range's middle."""
    strategy = Perturb(resample_probability=1.0, resample=rule)
    lr = SPACE.params["lr"]
    start = {**WINNER, "lr": lr.from_unit(0.5)}
    rng = np.random.default_rng(2)
    return np.array([lr.to_unit(step(strategy, start, rng)["lr"]) - 0.5 for _ in range(n)])


def test_local_draws_near_the_winner_and_prior_anywhere():
    n = 2000
    local, prior = unit_steps("local", n), unit_steps("prior", n)
    # the sample standard deviation of n normal draws has a standard error of sd / sqrt(2n)
    se = LOCAL_RESAMPLE_SD / math.sqrt(2 * n)
    assert abs(local.std() - LOCAL_RESAMPLE_SD) < 4 * se
    assert abs(local.mean()) < 4 * LOCAL_RESAMPLE_SD / math.sqrt(n)
    # a prior draw is uniform on [0, 1]: standard deviation 1/sqrt(12) = 0.289
    assert abs(prior.std() - 1 / math.sqrt(12)) < 0.02
    assert np.abs(prior).max() > 0.45 and np.abs(local).max() < 0.45


def test_local_reflects_at_the_ends_instead_of_piling_on_them():
    strategy = Perturb(resample_probability=1.0, resample="local")
    lr = SPACE.params["lr"]
    rng = np.random.default_rng(3)
    units = [lr.to_unit(step(strategy, {**WINNER, "lr": 1e-3}, rng)["lr"]) for _ in range(500)]
    at_top = sum(u > 1 - 1e-9 for u in units)
    assert at_top == 0  # clipping would put half the draws on the top edge
    assert 0.5 < np.mean(units) < 1.0


def mean_log_factor(factors: tuple[float, ...], n: int) -> tuple[float, float]:
    """Mean ln(new / old) of one explore step over n steps on a range too wide to clip, and
    its standard error from the sample."""
    space = Space({"x": Float(1e-30, 1e30, log=True)})
    strategy = Perturb(factors, resample_probability=0.0)
    rng = np.random.default_rng(4)
    logs = np.array([math.log(step(strategy, {"x": 1.0}, rng, space)["x"]) for _ in range(n)])
    return float(logs.mean()), float(logs.std(ddof=1) / math.sqrt(n))


def test_log_symmetric_factors_do_not_drift_and_rays_do():
    n = 4000
    sym, se_sym = mean_log_factor((1.25, 0.8), n)
    assert abs(sym) < 4 * se_sym  # zero drift within four standard errors
    ray, se_ray = mean_log_factor((1.2, 0.8), n)
    expected = (math.log(1.2) + math.log(0.8)) / 2  # -0.0204 per step
    assert abs(ray - expected) < 4 * se_ray
    assert ray + 4 * se_ray < 0  # the drift is there, and downward


def test_options_flow_through_make_scheduler_and_round_trip_through_the_state():
    options = {"perturbation_factors": [1.25, 0.8], "resample": "local"}
    sched = make_scheduler("pbt", SPACE, perturbation_interval=10, seed=5, options=options)
    described = sched.describe()["strategy_options"]
    assert described == {"factors": [1.25, 0.8], "resample_probability": 0.25, "resample": "local"}
    sched.initial_population(4)
    for member, score in enumerate([1.0, 2.0, 3.0, 4.0]):
        sched.report(member, 10, score)
    same = make_scheduler("pbt", SPACE, perturbation_interval=10, seed=5, options=options)
    same.load_state_dict(sched.state_dict())
    assert same.configs() == sched.configs()
    # a scheduler with another rule refuses the state rather than continue it differently
    other = make_scheduler("pbt", SPACE, perturbation_interval=10, seed=5,
                           options={**options, "resample": "prior"})  # fmt: skip
    with pytest.raises(ValueError, match="settings differ in \\['strategy_options'\\]"):
        other.load_state_dict(sched.state_dict())
    # today's default stores itself as it did before the option existed
    plain = make_scheduler("pbt", SPACE, perturbation_interval=10).describe()
    assert plain["strategy_options"] == {"factors": [1.2, 0.8], "resample_probability": 0.25}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"resample": "nearby"}, "resample='nearby': use one of ['prior', 'local', 'none']"),
        ({"resample": 1}, "method 'pbt' option 'resample' = 1 must be a string"),
        ({"perturbation_factors": [1.25, 0.0]}, "perturbation_factors=(1.25, 0.0): give one"),
        ({"perturbation_factors": []}, "perturbation_factors=(): give one or more positive"),
        ({"resample_probability": 1.5}, "resample_probability=1.5: must be between 0 and 1"),
        ({"resample_rule": "local"}, "method 'pbt' has no option 'resample_rule'"),
    ],
)
def test_bad_values_name_the_option(options, message):
    with pytest.raises(ValueError) as err:
        make_scheduler("pbt", SPACE, perturbation_interval=10, options=options)
    assert message in str(err.value)


def test_a_config_file_gives_the_option_and_one_error_for_a_bad_value():
    base = {
        "env": "CartPole-v1",
        "method": "pbt",
        "population": 4,
        "total_steps": 1000,
        "perturbation_interval": 100,
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    }
    explore = {"resample": "none", "perturbation_factors": [1.25, 0.8]}
    spec = validate_config({**base, "pbt": explore})
    assert spec.scheduler().describe()["strategy_options"]["resample"] == "none"
    with pytest.raises(ConfigError, match="resample='everywhere'"):
        validate_config({**base, "pbt": {"resample": "everywhere"}})
