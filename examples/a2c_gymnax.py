"""A population A2C for gpbt's vector engine, written only against the documented agent
protocol (docs/custom-agents.md), on any discrete-action environment (gymnax's CartPole here).

    gpbt run examples/a2c.toml          # from the repository root

Every member is an advantage actor-critic (Mnih et al. 2016, synchronous): `num_envs` envs step
`num_steps` times with the member's own policy, n-step returns bootstrapped from the critic
train one shared network, and the batch is then thrown away (on-policy). Tuned per member, as
traced arrays: `lr` (Adam step size), `gamma` (discount), `entropy_coef`, `value_coef`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from gpbt.rl.protocol import PopulationAgent


@struct.dataclass
class A2CState:
    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array  # [E, *obs_shape]
    ep_return: jax.Array  # [E] return of the running episodes
    rng: jax.Array  # raw uint32 key data
    total_env_steps: jax.Array  # int32


class ActorCritic(nn.Module):
    hidden_sizes: tuple[int, ...]
    num_actions: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        for h in self.hidden_sizes:
            x = nn.tanh(nn.Dense(h)(x))
        return nn.Dense(self.num_actions)(x), nn.Dense(1)(x)[:, 0]  # logits, value


class A2C(PopulationAgent):
    hyperparameter_names = ("lr", "gamma", "entropy_coef", "value_coef")

    def __init__(
        self,
        env,
        num_envs: int = 8,
        num_steps: int = 16,
        hidden_sizes: Sequence[int] = (64, 64),
        max_grad_norm: float = 0.5,
    ) -> None:
        if not env.discrete:
            raise ValueError(f"A2C needs discrete actions; {env.name} has continuous ones")
        if min(num_envs, num_steps) < 1:
            raise ValueError(
                f"A2C: num_envs and num_steps must be >= 1, got {num_envs}, {num_steps}"
            )
        self.env, self.num_envs, self.num_steps = env, int(num_envs), int(num_steps)
        self.max_update_steps = self.num_envs * self.num_steps  # env steps of one update
        self.network = ActorCritic(tuple(int(h) for h in hidden_sizes), int(env.num_actions))
        # lr is per member and traced, so Adam gives the direction and we scale by hp["lr"].
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(max_grad_norm), optax.scale_by_adam()
        )
        self.compile_count = 0
        self._compile_entry_points()

    def default_hyperparameters(self) -> dict[str, float]:
        return {"lr": 7e-4, "gamma": 0.99, "entropy_coef": 0.01, "value_coef": 0.5}

    def hyperparameter_bounds(self) -> dict[str, tuple[float, float]]:
        return {"lr": (0.0, 1.0), "gamma": (0.0, 1.0), "entropy_coef": (0.0, 1.0),
                "value_coef": (0.0, 10.0)}  # fmt: skip

    def _init_member(self, key: jax.Array) -> A2CState:
        k_net, k_env, k_rng = jax.random.split(key, 3)
        params = self.network.init(k_net, jnp.zeros((1, *self.env.obs_shape)))
        obs, env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, self.num_envs))
        return A2CState(params, self.optimizer.init(params), env_state, obs,
                        jnp.zeros(self.num_envs), jax.random.key_data(k_rng),
                        jnp.zeros((), jnp.int32))  # fmt: skip

    def init(self, key: Any, population: int) -> A2CState:
        return jax.vmap(self._init_member)(jax.random.split(key, population))

    def _member_update(self, m: A2CState, hp: dict, active: jax.Array):
        """One rollout and one gradient step of one member; unchanged where not `active`."""
        rng, k_roll = jax.random.split(jax.random.wrap_key_data(m.rng))

        def env_step(carry, key):
            obs, env_state, ep_return = carry
            k_act, k_env = jax.random.split(key)
            logits, _ = self.network.apply(m.params, obs)
            action = jax.random.categorical(k_act, logits)
            next_obs, env_state, reward, done, info = jax.vmap(self.env.step)(
                jax.random.split(k_env, self.num_envs), env_state, action
            )
            # A cut episode (truncated) is bootstrapped from the observation that ended it.
            _, final_value = self.network.apply(m.params, info["final_obs"])
            reward_in = reward + hp["gamma"] * final_value * info["truncated"]
            ep_return = ep_return + reward
            finished = (jnp.sum(jnp.where(done, ep_return, 0.0)), jnp.sum(done))
            step = (obs, action, jax.lax.stop_gradient(reward_in), done)
            return (next_obs, env_state, jnp.where(done, 0.0, ep_return)), (step, finished)

        carry = (m.obs, m.env_state, m.ep_return)
        carry, (batch, (ret_sum, ret_count)) = jax.lax.scan(
            env_step, carry, jax.random.split(k_roll, self.num_steps)
        )
        obs, actions, rewards, dones = batch  # [T, E, ...]
        _, last_value = self.network.apply(m.params, carry[0])

        def discount(next_return, step):
            reward, done = step
            ret = reward + hp["gamma"] * (1.0 - done) * next_return
            return ret, ret

        _, returns = jax.lax.scan(discount, last_value, (rewards, dones), reverse=True)

        def loss_fn(params):
            flat = obs.reshape(-1, *self.env.obs_shape)
            logits, values = self.network.apply(params, flat)
            log_probs = jax.nn.log_softmax(logits)
            taken = jnp.take_along_axis(log_probs, actions.reshape(-1, 1), -1)[:, 0]
            advantage = jax.lax.stop_gradient(returns.reshape(-1) - values)
            value_loss = jnp.mean((returns.reshape(-1) - values) ** 2)
            entropy = -jnp.mean(jnp.sum(jnp.exp(log_probs) * log_probs, -1))
            loss = -jnp.mean(taken * advantage) + hp["value_coef"] * value_loss
            return loss - hp["entropy_coef"] * entropy, (value_loss, entropy)

        (loss, (value_loss, entropy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(m.params)
        step, opt_state = self.optimizer.update(grads, m.opt_state)
        params = jax.tree.map(lambda p, s: p - hp["lr"] * s, m.params, step)
        new = A2CState(params, opt_state, carry[1], carry[0], carry[2], jax.random.key_data(rng),
                       m.total_env_steps + self.max_update_steps)  # fmt: skip
        m = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, m)
        stats = jnp.stack([ret_sum.sum(), ret_count.sum(), loss, value_loss, entropy])
        return m, jnp.where(active, stats, 0.0)

    def _train_impl(self, state: A2CState, hp: dict, budget: jax.Array):
        self.compile_count += 1
        updates = (budget + self.max_update_steps - 1) // self.max_update_steps  # [P], ceil

        def body(carry):
            state, i, stats = carry
            state, s = jax.vmap(self._member_update)(state, hp, i < updates)
            return state, i + 1, stats + s

        stats = jnp.zeros((budget.shape[0], 5))
        state, _, stats = jax.lax.while_loop(
            lambda c: c[1] < updates.max(), body, (state, jnp.int32(0), stats)
        )
        ret_sum, count, loss, value_loss, entropy = stats.T
        done_updates = jnp.maximum(updates, 1)
        return state, {
            "episode_return": ret_sum / jnp.where(count > 0, count, jnp.nan),
            "episodes": count.astype(jnp.int32),
            "loss": loss / done_updates,
            "value_loss": value_loss / done_updates,
            "entropy": entropy / done_updates,
        }

    def _eval_action(self, member: A2CState, obs: jax.Array, key: jax.Array) -> jax.Array:
        logits, _ = self.network.apply(member.params, obs)
        return jnp.argmax(logits, -1)

    def _act_impl(self, state: A2CState, obs: jax.Array, key: jax.Array, greedy: bool):
        def one(member: A2CState, o: jax.Array) -> jax.Array:
            logits, _ = self.network.apply(member.params, o)
            return jnp.argmax(logits, -1) if greedy else jax.random.categorical(key, logits)

        return jax.vmap(one)(state, obs)
