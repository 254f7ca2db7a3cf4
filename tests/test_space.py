import math

import numpy as np
import pytest

from gpbt.core.space import Choice, Float, Int, Space


def make_space():
    return Space(
        {
            "lr": Float(1e-5, 1e-3, log=True),
            "clip": Float(0.1, 0.5),
            "epochs": Int(5, 15),
            "minibatch": Choice([16, 32, 64, 128, 256]),
            "optim": {"kind": Choice(["adam", "sgd"], ordered=False)},
        }
    )


def test_nested_names_are_dotted_and_nest_back():
    space = make_space()
    assert space.names == ("lr", "clip", "epochs", "minibatch", "optim.kind")
    cfg = space.sample(np.random.default_rng(0))
    assert Space.nest(cfg)["optim"]["kind"] in ("adam", "sgd")
    assert space.validate(Space.nest(cfg)) == cfg


def test_sampling_is_seeded_and_inside_the_space():
    space = make_space()
    a = [space.sample(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(1)
    samples = [space.sample(rng) for _ in range(500)]
    for s in samples:
        space.validate(s)
    # log sampling: about half the draws below the geometric midpoint 1e-4
    below = np.mean([s["lr"] < 1e-4 for s in samples])
    assert 0.4 < below < 0.6
    assert {s["epochs"] for s in samples} == set(range(5, 16))


def test_unit_round_trip_log_int_and_ordered_choice():
    space = make_space()
    cfg = {"lr": 1e-4, "clip": 0.3, "epochs": 10, "minibatch": 64, "optim.kind": "sgd"}
    u = space.to_unit(cfg)
    assert u[0] == pytest.approx(0.5)  # log midpoint
    assert u[1] == pytest.approx(0.5)
    assert u[3] == pytest.approx(0.5)  # index 2 of 5
    back = space.from_unit(u)
    assert back["lr"] == pytest.approx(1e-4)
    assert back["epochs"] == 10 and back["minibatch"] == 64 and back["optim.kind"] == "sgd"
    assert space.from_unit(np.array([1.0, 1.0, 1.0, 1.0, 1.0]))["epochs"] == 15
    assert space.from_unit(np.zeros(5))["epochs"] == 5


def test_clip_pulls_values_back_into_bounds():
    space = make_space()
    cfg = {"lr": 1.0, "clip": -3.0, "epochs": 99, "minibatch": 16, "optim.kind": "adam"}
    clipped = space.clip(cfg)
    assert clipped["lr"] == 1e-3 and clipped["clip"] == 0.1 and clipped["epochs"] == 15


def test_diversity_is_mean_pairwise_unit_distance():
    space = Space({"a": Float(0, 1), "b": Float(0, 1)})
    assert space.diversity([{"a": 0, "b": 0}, {"a": 1, "b": 0}]) == pytest.approx(1.0)
    assert space.diversity([{"a": 0.5, "b": 0.5}] * 3) == 0.0


@pytest.mark.parametrize(
    "spec, needle",
    [
        ({"lr": Float(1e-3, 1e-5)}, "parameter 'lr': low (0.001) must be below high"),
        ({"lr": Float(0.0, 1.0, log=True)}, "parameter 'lr': log=true needs low > 0"),
        ({"e": Int(5, 5)}, "parameter 'e': low (5) must be below high"),
        ({"mb": Choice([])}, "parameter 'mb': a choice needs at least one value"),
        ({"mb": Choice([16, 32, 16])}, "parameter 'mb': value 16 is listed twice"),
        ({"x": 3.0}, "parameter 'x': unknown parameter type float"),
        ({"x": {"type": "gaussian", "low": 0}}, "parameter 'x': unknown type 'gaussian'"),
        ({"x": {"type": "float", "low": 0}}, "parameter 'x': missing 'high'"),
        ({"x": {"type": "float", "low": 0, "high": 1, "step": 2}}, "unknown key(s) ['step']"),
        ({}, "the search space is empty"),
    ],
)
def test_invalid_spaces_name_the_parameter_and_the_fix(spec, needle):
    with pytest.raises(ValueError) as err:
        Space(spec)
    assert needle in str(err.value)


def test_config_validation_errors():
    space = make_space()
    good = {"lr": 1e-4, "clip": 0.3, "epochs": 10, "minibatch": 64, "optim.kind": "sgd"}
    with pytest.raises(
        ValueError,
        match=r"parameter 'clip': value 0.9 is outside the search "
        r"space \(number in \[0.1, 0.5\]\)",
    ):
        space.validate({**good, "clip": 0.9})
    with pytest.raises(ValueError, match="parameter 'minibatch': value 48 is outside"):
        space.validate({**good, "minibatch": 48})
    with pytest.raises(ValueError, match="parameter 'epochs': value 7.5 is outside"):
        space.validate({**good, "epochs": 7.5})
    with pytest.raises(ValueError, match="parameter 'gamma' is not in the search space"):
        space.validate({**good, "gamma": 0.99})
    with pytest.raises(ValueError, match="parameter 'lr' is missing"):
        space.validate({k: v for k, v in good.items() if k != "lr"})
    with pytest.raises(ValueError, match="parameter 'clip': value nan is outside"):
        space.validate({**good, "clip": math.nan})


def test_from_dict_matches_typed_space():
    spec = {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
        "epochs": {"type": "int", "low": 5, "high": 15},
        "minibatch": {"type": "choice", "values": [16, 32, 64]},
    }
    space = Space.from_dict(spec)
    assert space.params["lr"] == Float(1e-5, 1e-3, log=True)
    assert space.params["epochs"] == Int(5, 15)
    assert space.params["minibatch"] == Choice([16, 32, 64])
    assert Space.from_dict(space.to_dict()).params == space.params


def test_nest_into_writes_dotted_values_into_a_copy_of_a_nested_config():
    base = {"env": "CartPole-v1", "optim": {"lr": 0.1, "eps": 1e-8}, "n": 3}
    out = Space.nest({"optim.lr": 0.5, "n.inner": 1, "new.k": 2}, into=base)
    assert out == {
        "env": "CartPole-v1",
        "optim": {"lr": 0.5, "eps": 1e-8},
        "n": {"inner": 1},  # a scalar in the way is replaced by the nested value
        "new": {"k": 2},
    }
    assert base["optim"]["lr"] == 0.1 and base["n"] == 3  # the original is untouched
