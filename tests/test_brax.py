"""brax continuous control through the registry (the `brax` extra; CI installs it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpbt.rl.envs import make_env

brax = pytest.importorskip("brax", reason="the brax extra is not installed")

pytestmark = pytest.mark.slow


def test_brax_env_resets_and_steps_under_jit():
    env = make_env("brax:inverted_double_pendulum")
    assert env.continuous and env.action_dim == 1 and env.obs_shape == (8,)
    obs, state = jax.jit(env.reset)(jax.random.key(0))
    step = jax.jit(env.step)
    total = 0.0
    for t in range(5):
        obs, state, reward, done, info = step(jax.random.key(t), state, jnp.zeros(1))
        total += float(reward)
    assert obs.shape == (8,) and np.isfinite(np.asarray(obs)).all()
    assert total > 0  # the pendulum is still up after five steps of no force: alive bonus
