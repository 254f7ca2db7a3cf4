"""`env = "module:function"`: a user's environment factory in the vector engine."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpbt.rl.envs import GymnaxEnv, make_env

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_a_pure_jax_env_factory_with_options():
    env = make_env("examples.custom_env:corridor?length=4&max_steps=5")
    assert (env.name, env.obs_shape, env.num_actions, env.max_episode_steps) == (
        "corridor-4", (4,), 2, 5)  # fmt: skip
    obs, state = env.reset(jax.random.key(0))
    rewards, dones = [], []
    for _ in range(3):  # right, right, right: the end of a 4-cell corridor
        obs, state, r, d, info = env.step(jax.random.key(1), state, jnp.asarray(1))
        rewards.append(float(r))
        dones.append(bool(d))
    assert rewards == pytest.approx([-0.01, -0.01, 1.0]) and dones == [False, False, True]
    assert bool(info["terminated"]) and np.asarray(info["final_obs"]).tolist() == [0, 0, 0, 1]
    assert np.asarray(obs).tolist() == [1, 0, 0, 0]  # auto-reset to the start
    obs, state = env.reset(jax.random.key(0))
    for _ in range(5):  # walking into the wall until the time limit cuts the episode
        obs, state, r, d, info = env.step(jax.random.key(1), state, jnp.asarray(0))
    assert bool(d) and bool(info["truncated"]) and not bool(info["terminated"])


def test_a_factory_returning_gymnax_env_and_params_is_wrapped():
    env = make_env("examples.custom_env:catch")
    assert isinstance(env, GymnaxEnv)
    assert (env.obs_shape, env.num_actions, env.discrete) == ((10, 5), 3, True)
    obs, state = env.reset(jax.random.key(0))
    obs, state, reward, done, info = env.step(jax.random.key(1), state, jnp.asarray(1))
    assert obs.dtype == jnp.float32 and set(info) == {"terminated", "truncated", "final_obs"}


def test_a_factory_returning_something_else_is_refused(tmp_path, monkeypatch):
    (tmp_path / "odd_envs.py").write_text("def make():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="env = 'odd_envs:make': the factory returned int; "
                       "int is not a gymnax environment"):  # fmt: skip
        make_env("odd_envs:make")
