"""`start_points`: members 0, 1, ... start at given configs (Ray Tune's points_to_evaluate),
the rest of the population exactly as it would have been drawn, and one clear error for a
point that does not fit."""

from __future__ import annotations

import pytest

from gpbt.config import ConfigError, validate_config
from gpbt.core.methods import make_scheduler, tuning_methods
from gpbt.core.space import Space

SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
    "clip": {"type": "float", "low": 0.1, "high": 0.4},
    "epochs": {"type": "int", "low": 1, "high": 8},
}
BASE = {
    "env": "CartPole-v1",
    "method": "pbt",
    "population": 4,
    "total_steps": 1000,
    "perturbation_interval": 100,
    "space": SPACE,
}


@pytest.mark.parametrize("method", tuning_methods())
def test_members_start_at_the_points_and_the_rest_as_drawn(method):
    drawn = make_scheduler(method, SPACE, perturbation_interval=10, seed=3).initial_population(4)
    points = [{"lr": 1e-3}, {"lr": 1e-4, "clip": 0.3, "epochs": 4}]
    sched = make_scheduler(method, SPACE, perturbation_interval=10, seed=3, start_points=points)
    configs = sched.initial_population(4)
    assert configs[0] == {**drawn[0], "lr": 1e-3}  # the names a point leaves out: drawn
    assert configs[1] == {"lr": 1e-4, "clip": 0.3, "epochs": 4}
    assert configs[2:] == drawn[2:]  # the same seed draws the same values
    assert sched.configs()[0]["lr"] == 1e-3  # and the scheduler holds what it handed out
    # recorded with the settings, and a resume (a scheduler built from the same config)
    # restores the state as it was
    assert sched.describe()["start_points"] == points
    same = make_scheduler(method, SPACE, perturbation_interval=10, seed=3, start_points=points)
    same.load_state_dict(sched.state_dict())
    assert same.configs() == sched.configs()


@pytest.mark.parametrize(
    "points, message",
    [
        ([{"lrr": 1e-3}], "start_points[0]: parameter 'lrr' is not in the search space"),
        (
            [{"lr": 1e-3}, {"lr": 0.1}],
            "start_points[1]: parameter 'lr': value 0.1 is outside the search space "
            "(number in [1e-05, 0.001])",
        ),
        ([{"epochs": 2.5}], "start_points[0]: parameter 'epochs': value 2.5 is outside"),
        ([{}], "start_points[0] = {}: give a table of hyperparameter values"),
        ({"lr": 1e-3}, "start_points must be a list of tables"),
    ],
)
def test_a_point_that_does_not_fit_is_named(points, message):
    with pytest.raises(ValueError) as err:
        make_scheduler("pbt", SPACE, perturbation_interval=10, start_points=points)
    assert str(err.value).startswith(message)


def test_more_points_than_members_and_methods_that_do_not_search_are_refused():
    sched = make_scheduler(
        "random", SPACE, perturbation_interval=10, start_points=[{"lr": 1e-3}] * 3
    )
    with pytest.raises(ValueError, match="start_points has 3 entries for a population of 2"):
        sched.initial_population(2)
    with pytest.raises(ValueError, match="method 'default' trains every member at the same"):
        make_scheduler("default", SPACE, perturbation_interval=10, start_points=[{"lr": 1e-3}])


def test_a_config_with_start_points_builds_the_schedulers_every_engine_uses():
    spec = validate_config({**BASE, "start_points": [{"lr": 1e-3, "epochs": 8}]})
    first = spec.scheduler().initial_population(4)[0]
    assert (first["lr"], first["epochs"]) == (1e-3, 8)
    assert Space(SPACE).validate(first) == first
    # the stored config keeps them, so resume and replay rebuild the same population
    assert spec.to_dict()["start_points"] == [{"lr": 1e-3, "epochs": 8}]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"start_points": [{"lr": 2e-3}]},
            "start_points[0]: parameter 'lr': value 0.002 is outside the search space",
        ),
        (
            {"start_points": [{"lr": 1e-3}] * 5},
            "start_points has 5 entries for a population of 4; give at most one per member",
        ),
        ({"start_points": {"lr": 1e-3}}, "key 'start_points' = {'lr': 0.001} has the wrong type"),
        (
            {"start_points": [{"lr": 1e-3}], "method": "default"},
            "[default] method 'default' trains every member at the same values",
        ),
    ],
)
def test_config_errors_name_start_points(change, message):
    with pytest.raises(ConfigError) as err:
        validate_config({**BASE, **change})
    assert str(err.value).startswith(message)


@pytest.mark.slow
def test_a_vector_run_starts_there_and_replays(tmp_path):
    """A real (tiny) vector run: member 0 trains its first interval at the start point, and
    `gpbt replay` re-derives every decision from the stored config, start points included."""
    import copy

    from conftest import tiny_vector

    from gpbt.analysis.replay import replay
    from gpbt.engines.vector import run_vector
    from gpbt.store import load

    cfg = tiny_vector(method="pbt", start_points=[{"lr": 1e-3}])
    run_vector(validate_config(copy.deepcopy(cfg)), tmp_path, supervise=False)
    reports = load(tmp_path).reports
    first = reports[reports["time"] == reports["time"].min()].set_index("member")
    assert first.loc[0, "config.lr"] == 1e-3
    assert (first.drop(index=0)["config.lr"] != 1e-3).all()  # the others were drawn
    ok, message = replay(tmp_path)
    assert ok, message
