"""The environment registry and the uniform Env interface, on the real Gymnax environments."""

import importlib.util
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpbt.rl import envs
from gpbt.rl.envs import Env, known_envs, make_env, register_env

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

GYMNAX = [
    "CartPole-v1",
    "Acrobot-v1",
    "Pendulum-v1",
    "MountainCarContinuous-v0",
    "Breakout-MinAtar",
    "SpaceInvaders-MinAtar",
    "Asterix-MinAtar",
    "Freeway-MinAtar",
]
BRAX = ["inverted_double_pendulum", "hopper", "halfcheetah", "ant"]
HAVE_BRAX = importlib.util.find_spec("brax") is not None


@pytest.fixture
def private_registry(monkeypatch):
    monkeypatch.setattr(envs, "_REGISTRY", dict(envs._REGISTRY))
    monkeypatch.setattr(envs, "_ALIASES", dict(envs._ALIASES))


def test_known_envs_lists_every_supported_name():
    names = known_envs()
    for name in GYMNAX:
        assert name in names
    for name in BRAX:
        assert f"brax:{name}" in names


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as err:
        make_env("NoSuchEnv-v9")
    message = str(err.value)
    assert "NoSuchEnv-v9" in message
    for name in ("CartPole-v1", "Breakout-MinAtar", "brax:hopper"):
        assert name in message


def test_typo_gets_a_suggestion():
    with pytest.raises(ValueError, match="Did you mean 'CartPole-v1'"):
        make_env("CartPol-v1")


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("cartpole", "CartPole-v1"),
        ("CARTPOLE-V1", "CartPole-v1"),
        ("minatar/breakout", "Breakout-MinAtar"),
        ("minatar:spaceinvaders", "SpaceInvaders-MinAtar"),
        ("Breakout", "Breakout-MinAtar"),
        ("pendulum", "Pendulum-v1"),
    ],
)
def test_aliases(alias, canonical):
    assert make_env(alias).name == canonical


@pytest.mark.parametrize("name", ["brax:hopper", "hopper", "brax/ant?backend=spring"])
def test_brax_without_brax_gives_install_hint(name, monkeypatch):
    # Whether or not brax is installed here, make it unimportable (None in sys.modules).
    monkeypatch.setitem(sys.modules, "brax", None)
    monkeypatch.setitem(sys.modules, "brax.envs", None)
    with pytest.raises(ImportError, match=r"pip install 'gpbt\[brax\]'"):
        make_env(name)


def test_brax_backend_is_validated():
    with pytest.raises(ValueError, match="backend 'bogus'.*generalized"):
        make_env("brax:hopper?backend=bogus")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_BRAX, reason="brax is not installed")
def test_brax_env_resets_steps_and_truncates():
    env = make_env("brax:inverted_double_pendulum?backend=spring&episode_length=3")
    assert env.options["backend"] == "spring" and not env.discrete
    num = 2
    obs, state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), num))
    assert obs.shape == (num, *env.obs_shape)
    step = jax.jit(jax.vmap(env.step))
    action = jnp.zeros((num, env.action_dim))
    for t in range(3):
        obs, state, reward, done, info = step(
            jax.random.split(jax.random.key(t), num), state, action
        )
        assert reward.shape == (num,) and done.dtype == jnp.bool_
    # Nothing falls over in 3 steps of zero torque: the episode ends by the time limit.
    assert np.all(np.asarray(info["truncated"])) and not np.any(np.asarray(info["terminated"]))
    assert np.all(np.asarray(done))
    assert np.all(np.asarray(state[1]) == 0)  # step counter restarted with the new episode
    assert not np.allclose(obs, info["final_obs"])


def test_gymnax_envs_take_no_options():
    with pytest.raises(ValueError, match="takes no options"):
        make_env("CartPole-v1?foo=1")
    with pytest.raises(ValueError, match="key=value"):
        make_env("CartPole-v1?foo")


@pytest.mark.parametrize("name", GYMNAX)
def test_gymnax_env_resets_and_steps(name):
    env = make_env(name)
    assert isinstance(env, Env)
    if env.discrete:
        assert env.num_actions >= 2 and env.action_dim == 1 and env.action_low is None
    else:
        assert env.num_actions is None and env.action_low.shape == (env.action_dim,)
        assert np.all(env.action_low < env.action_high)

    num = 4
    obs, state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), num))
    assert obs.shape == (num, *env.obs_shape) and obs.dtype == jnp.float32

    def act(key):
        if env.discrete:
            return jax.random.randint(key, (num,), 0, env.num_actions)
        return jax.random.uniform(
            key, (num, env.action_dim), minval=env.action_low, maxval=env.action_high
        )

    step = jax.jit(jax.vmap(env.step))
    key = jax.random.key(1)
    for _ in range(3):
        key, k_act, k_step = jax.random.split(key, 3)
        obs, state, reward, done, info = step(jax.random.split(k_step, num), state, act(k_act))
        assert obs.shape == (num, *env.obs_shape)
        assert reward.shape == (num,) and reward.dtype == jnp.float32
        assert done.shape == (num,) and done.dtype == jnp.bool_
        assert set(info) >= {"terminated", "truncated", "final_obs"}
        assert info["final_obs"].shape == obs.shape
        np.testing.assert_array_equal(done, info["terminated"] | info["truncated"])


def test_auto_reset_and_final_obs():
    env = make_env("CartPole-v1")
    obs, state = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    for t in range(500):
        prev = obs
        obs, state, reward, done, info = step(jax.random.key(t), state, jnp.asarray(0))
        if bool(done):
            break
        np.testing.assert_array_equal(info["final_obs"], obs)
    assert bool(done) and bool(info["terminated"]) and not bool(info["truncated"])
    # Always pushing left tips the pole over: the final observation is beyond the limits,
    # the returned one is a fresh start near zero.
    assert np.abs(np.asarray(info["final_obs"]) - np.asarray(prev)).max() < 1.0
    assert np.abs(np.asarray(obs)).max() <= 0.05 + 1e-6
    assert int(state.time) == 0


def test_register_env_is_open(private_registry):
    base = make_env("CartPole-v1")

    def factory(scale=1.0):
        assert scale == 2.5
        return base

    register_env("MyCartPole-v0", factory, aliases=("mine",))
    assert "MyCartPole-v0" in known_envs()
    assert make_env("mine?scale=2.5") is base
    assert make_env("MyCartPole-v0", scale=2.5) is base
    with pytest.raises(ValueError, match="already registered"):
        register_env("MyCartPole-v0", factory)
    with pytest.raises(ValueError, match="already registered"):
        register_env("Other-v0", factory, aliases=("cartpole",))
    register_env("MyCartPole-v0", lambda: base, overwrite=True)
    assert make_env("mycartpole-v0") is base


def test_factory_must_return_env(private_registry):
    register_env("Bad-v0", lambda: object())
    with pytest.raises(TypeError, match="expected a gpbt.rl.envs.Env"):
        make_env("Bad-v0")


# ------------------------------------------------------------------------------ gpbt envs
@pytest.mark.parametrize("name", [n for n in known_envs() if not n.startswith("brax:")])
def test_builtin_env_facts_are_those_of_the_built_env(name):
    assert envs.BUILTIN_INFO[name] == envs.EnvInfo.of(make_env(name))


def test_describe_env_builds_what_the_table_does_not_know(private_registry):
    register_env("Corridor-x", lambda length=3: CORRIDOR_LIKE(length))
    info = envs.describe_env("Corridor-x?length=7")
    assert (info.obs_shape, info.action, info.max_episode_steps) == ((7,), "discrete, 2 actions", 9)
    assert envs.describe_env("pendulum").action == "continuous, dim 1"


def CORRIDOR_LIKE(length):  # noqa: N802 - reads as the env it builds
    return Env("corridor", (length,), True, 2, 1, None, None, 9)


def test_gpbt_envs_lists_facts_without_building_brax():
    code = (
        "import sys; from gpbt.cli import main; main(['envs']); "
        "print('brax imported:', 'brax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["name", "observation", "action", "space", "episode", "length"]
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in lines[1:] if line.strip()}
    assert rows["CartPole-v1"] == "(4,) discrete, 2 actions 500 steps"
    assert rows["Breakout-MinAtar"] == "(10, 10, 4) discrete, 3 actions 1000 steps"
    assert rows["brax:hopper"] == "(11,) continuous, dim 3 1000 steps"
    assert lines[-1] == "brax imported: False"


def test_an_env_whose_optional_dependency_is_missing_is_named_before_it_is_built(monkeypatch):
    from gpbt.bench.runner import _available
    from gpbt.bench.suite import load_suite

    brax_cell = next(c for c in load_suite("long-brax").cells() if c.kind == "vector")
    minatar_cell = next(c for c in load_suite("long-impala").cells() if c.kind == "vector")
    monkeypatch.setitem(sys.modules, "brax", None)  # as on an install without gpbt[brax]
    why = envs.missing_dependency("hopper")  # an alias resolves to the Brax env it names
    assert why == (
        "environment 'brax:hopper' needs the optional Brax dependency, which is not "
        "installed: pip install 'gpbt[brax]'"
    )
    assert _available(brax_cell) == envs.missing_dependency(brax_cell.config["env"])
    assert "pip install 'gpbt[brax]'" in _available(brax_cell)
    # gymnax envs and IMPALA need nothing optional; an unknown name is left to make_env
    assert envs.missing_dependency("Breakout-MinAtar") is None
    assert _available(minatar_cell) is None
    assert envs.missing_dependency("no-such-env") is None
