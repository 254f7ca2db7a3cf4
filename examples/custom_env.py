"""Two environment factories for `env = "module:function"` in a vector-engine config.

    env = "examples.custom_env:corridor?length=8"   # run from the repository root
    env = "examples.custom_env:catch"

A factory may return a `gpbt.rl.envs.Env` (here `Corridor`, a pure-JAX environment written
from scratch), a gymnax `(env, params)` pair or a gymnax environment (here `catch`, bsuite's
Catch from gymnax), and takes the options written after `?` as keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from gpbt.rl.protocol import Env


@dataclass(frozen=True, eq=False, repr=False)
class Corridor(Env):
    """Walk right along a corridor of `length` cells to its end (+1, episode over); every
    other step costs 0.01. Observation: the one-hot position. Actions: 0 left, 1 right. The
    episode is cut (truncated, not terminated) after `max_episode_steps`."""

    length: int = 6

    def _obs(self, pos: jax.Array) -> jax.Array:
        return jax.nn.one_hot(pos, self.length, dtype=jnp.float32)

    def reset(self, key):
        state = (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))  # position, steps
        return self._obs(state[0]), state

    def step(self, key, state, action):
        pos, t = state
        pos = jnp.clip(pos + 2 * action.astype(jnp.int32) - 1, 0, self.length - 1)
        t = t + 1
        terminated = pos == self.length - 1
        truncated = (t >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        reward = jnp.where(terminated, 1.0, -0.01)
        final_obs = self._obs(pos)
        reset_obs, reset_state = self.reset(key)
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), reset_state, (pos, t))
        obs = jnp.where(done, reset_obs, final_obs)
        info = {"terminated": terminated, "truncated": truncated, "final_obs": final_obs}
        return obs, state, reward, done, info


def corridor(length: int = 6, max_steps: int = 20) -> Corridor:
    if length < 2 or max_steps < 1:
        raise ValueError(
            f"corridor needs length >= 2 and max_steps >= 1, got {length}, {max_steps}"
        )
    return Corridor(
        name=f"corridor-{length}",
        obs_shape=(length,),
        discrete=True,
        num_actions=2,
        action_dim=1,
        action_low=None,
        action_high=None,
        max_episode_steps=max_steps,
        options={"length": length, "max_steps": max_steps},
        length=length,
    )


def catch():
    import gymnax

    return gymnax.make("Catch-bsuite")  # (env, params): gpbt wraps it with from_gymnax
