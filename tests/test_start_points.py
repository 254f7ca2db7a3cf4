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
    "total_steps": 81_920,  # validated only, never trained
    "perturbation_interval": 8192,  # longer than one update of every agent config used here
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
            {"start_points": ["default"]},
            "start_points[0] = 'default': a start point is a table of values, e.g. {lr = 1e-3}, "
            'or "defaults" for the agent\'s defaults',
        ),
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


# A space that holds PPO's discrete- and continuous-action defaults (rl/ppo.py) strictly inside.
PPO_SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "clip": {"type": "float", "low": 0.1, "high": 0.4},
    "gamma": {"type": "float", "low": 0.9, "high": 0.999},
    "num_epochs": {"type": "int", "low": 1, "high": 12},
    "minibatch_size": {"type": "choice", "values": [64, 128, 256]},
}


@pytest.mark.parametrize(
    "env, lr, num_epochs", [("CartPole-v1", 1e-3, 4), ("Pendulum-v1", 3e-4, 10)]
)
def test_defaults_start_member_0_at_the_agents_own_defaults(env, lr, num_epochs):
    from gpbt.rl.agents import make_agent

    defaults = make_agent("ppo", env).default_hyperparameters()
    base = {**BASE, "env": env, "space": PPO_SPACE}
    spec = validate_config({**base, "start_points": ["defaults", {"lr": 1e-4}]})
    configs = spec.scheduler().initial_population(4)
    # discrete and continuous actions have their own defaults: each env gets its agent's
    assert (configs[0]["lr"], configs[0]["num_epochs"]) == (lr, num_epochs)
    assert configs[0] == {k: defaults[k] for k in PPO_SPACE}
    # as a drawn member holds them (the agent gives floats)
    assert type(configs[0]["num_epochs"]) is type(configs[0]["minibatch_size"]) is int
    assert configs[1]["lr"] == 1e-4
    drawn = validate_config(base).scheduler().initial_population(4)
    assert configs[2:] == drawn[2:]
    # the stored config holds the values: resume and replay rebuild them with no agent
    assert spec.to_dict()["start_points"] == [configs[0], {"lr": 1e-4}]


def test_defaults_leave_out_what_is_not_tuned():
    space = {k: v for k, v in PPO_SPACE.items() if k not in ("num_epochs", "minibatch_size")}
    spec = validate_config({**BASE, "env": "Pendulum-v1", "space": space,
                            "start_points": ["defaults"]})  # fmt: skip
    assert spec.to_dict()["start_points"] == [{"lr": 3e-4, "clip": 0.2, "gamma": 0.99}]


@pytest.mark.parametrize(
    "env, name, spec, message",
    [
        (
            "CartPole-v1",
            "lr",
            {"type": "float", "low": 1e-5, "high": 5e-4, "log": True},
            'start_points[0] = "defaults": the default lr = 0.001 lies outside its range '
            "[1e-05, 0.0005] in [space]; widen the range to hold it, or leave lr out of "
            "[space] (it then trains at its default)",
        ),
        (
            "Pendulum-v1",
            "num_epochs",
            {"type": "int", "low": 2, "high": 8},
            'start_points[0] = "defaults": the default num_epochs = 10 lies outside its '
            "range [2, 8] in [space]",
        ),
    ],
)
def test_a_default_outside_the_space_is_refused_not_clipped(env, name, spec, message):
    with pytest.raises(ConfigError) as err:
        validate_config({**BASE, "env": env, "space": {**PPO_SPACE, name: spec},
                         "start_points": ["defaults"]})  # fmt: skip
    assert str(err.value).startswith(message)


def test_defaults_need_an_agent_gpbt_knows():
    local = {**BASE, "engine": "local", "trainable": "my_module:Toy", "time_attr": "steps",
             "metric": "score", "start_points": ["defaults"]}  # fmt: skip
    local.pop("env")
    with pytest.raises(ConfigError) as err:
        validate_config(local)
    assert str(err.value).startswith(
        "start_points = [\"defaults\"] needs an agent whose defaults gpbt knows (engine 'vector')"
    )


def test_a_toy_suites_anchored_row_starts_at_the_toys_defaults():
    from gpbt.bench.suite import build_suite

    suite = build_suite(
        {
            "name": "t",
            "seeds": 1,
            "tasks": [{"name": "q", "toy": "quadratic"}],
            "methods": [{"name": "anchored", "method": "pbt", "start_points": ["defaults"]}],
        }
    )
    (cell,) = suite.cells()
    assert cell.row == "anchored" and cell.config["start_points"] == [{"h0": 0.5, "h1": 0.5}]
