"""A population DQN for gpbt's vector engine, written only against the public agent protocol.

    gpbt run examples/dqn_minatar.toml          # from the repository root

Every member is a DQN (Mnih et al. 2015: epsilon-greedy acting, a replay buffer, a target
network, Huber loss on the one-step TD error, Adam) and the population is one pytree with a
leading axis [P], so `jax.vmap` trains all members in one jitted program. Tuned per member, as
traced arrays (a new value never recompiles):

    lr                    Adam step size (0 freezes the weights)
    gamma                 discount
    epsilon_end           the exploration rate epsilon decays to ...
    epsilon_decay_steps   ... linearly from 1 over this many of the member's env steps
    target_update_period  gradient updates between copies of the online net into the target

Static sizes are constructor arguments, set in a config's [agent_options]: `num_envs` (parallel
environments; one gradient update per step of all of them), `buffer_size`, `batch_size`,
`learning_starts` (transitions stored before the first update), `hidden_sizes`, `obs_dtype`
("uint8" stores MinAtar's 0/1 boards in a quarter of the memory), `eval_epsilon`,
`max_grad_norm`.

An exploit (`gather`, inherited from PopulationAgent) copies everything a member carries:
online and target weights, Adam moments, the replay buffer with its write pointer, the
environments, the step and update counters. The copy keeps its donor's epsilon schedule
position (it is a function of the inherited `total_env_steps`) and gets a fresh random stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from gpbt.rl.protocol import Env, PopulationAgent, as_key


@struct.dataclass
class Replay:
    """A ring buffer of one member's transitions (`next_obs` is the pre-reset observation)."""

    obs: jax.Array  # [N, *obs_shape]
    action: jax.Array  # [N] int32
    reward: jax.Array  # [N]
    next_obs: jax.Array  # [N, *obs_shape]
    terminated: jax.Array  # [N] 1.0 where the episode really ended (no bootstrap)
    ptr: jax.Array  # next row to write
    size: jax.Array  # rows filled so far


@struct.dataclass
class DQNState:
    """One member's state; the population state has a leading [P] on every leaf."""

    params: Any
    target_params: Any
    opt_state: Any
    replay: Replay
    env_state: Any
    obs: jax.Array  # [E, *obs_shape]
    ep_return: jax.Array  # [E] return of the running episodes
    rng: jax.Array  # raw uint32 key data: what gather derives a copy's fresh stream from
    total_env_steps: jax.Array  # int32
    updates: jax.Array  # int32 gradient updates so far (drives the target copies)


class QNetwork(nn.Module):
    hidden_sizes: tuple[int, ...]
    num_actions: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.reshape(obs.shape[0], -1)
        for h in self.hidden_sizes:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(self.num_actions)(x)


class DQN(PopulationAgent):
    """Population DQN on one discrete-action environment."""

    hyperparameter_names = (
        "lr",
        "gamma",
        "epsilon_end",
        "epsilon_decay_steps",
        "target_update_period",
    )
    int_hyperparameters = frozenset({"target_update_period"})

    def __init__(
        self,
        env: Env,
        num_envs: int = 8,
        buffer_size: int = 10_000,
        batch_size: int = 64,
        learning_starts: int = 1_000,
        hidden_sizes: Sequence[int] = (128, 128),
        obs_dtype: str = "float32",
        eval_epsilon: float = 0.0,
        max_grad_norm: float = 10.0,
    ) -> None:
        if not env.discrete:
            raise ValueError(f"DQN needs discrete actions; {env.name} has continuous ones")
        if min(num_envs, batch_size, learning_starts) < 1 or buffer_size < num_envs:
            raise ValueError(
                "DQN: num_envs, batch_size and learning_starts must be >= 1 and "
                f"buffer_size >= num_envs, got {num_envs}, {batch_size}, {learning_starts}, "
                f"{buffer_size}"
            )
        if obs_dtype not in ("float32", "uint8"):
            raise ValueError(f"DQN: obs_dtype must be 'float32' or 'uint8', got {obs_dtype!r}")
        self.env = env
        self.num_envs, self.buffer_size = int(num_envs), int(buffer_size)
        self.batch_size, self.learning_starts = int(batch_size), int(learning_starts)
        self.obs_dtype = jnp.dtype(obs_dtype)
        self.eval_epsilon = float(eval_epsilon)
        self.max_update_steps = self.num_envs  # env steps one update takes
        self.network = QNetwork(tuple(int(h) for h in hidden_sizes), int(env.num_actions))
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(max_grad_norm), optax.scale_by_adam()
        )
        self.compile_count = 0
        self._init_jit = jax.jit(jax.vmap(self._init_member))
        self._compile_entry_points()

    # -------------------------------------------------------------- hyperparameters
    def default_hyperparameters(self) -> dict[str, float]:
        return {
            "lr": 2.5e-4,
            "gamma": 0.99,
            "epsilon_end": 0.05,
            "epsilon_decay_steps": 100_000.0,
            "target_update_period": 250,
        }

    def hyperparameter_bounds(self) -> dict[str, tuple[float, float]]:
        return {
            "lr": (0.0, 1.0),
            "gamma": (0.0, 1.0),
            "epsilon_end": (0.0, 1.0),
            "epsilon_decay_steps": (1.0, 1e9),
            "target_update_period": (1, 1_000_000),
        }

    # -------------------------------------------------------------- init
    def _init_member(self, key: jax.Array) -> DQNState:
        k_net, k_env, k_rng = jax.random.split(key, 3)
        obs_shape = tuple(self.env.obs_shape)
        params = self.network.init(k_net, jnp.zeros((1, *obs_shape)))
        obs, env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, self.num_envs))
        n = self.buffer_size
        replay = Replay(
            obs=jnp.zeros((n, *obs_shape), self.obs_dtype),
            action=jnp.zeros(n, jnp.int32),
            reward=jnp.zeros(n),
            next_obs=jnp.zeros((n, *obs_shape), self.obs_dtype),
            terminated=jnp.zeros(n),
            ptr=jnp.zeros((), jnp.int32),
            size=jnp.zeros((), jnp.int32),
        )
        return DQNState(
            params=params,
            target_params=params,
            opt_state=self.optimizer.init(params),
            replay=replay,
            env_state=env_state,
            obs=obs,
            ep_return=jnp.zeros(self.num_envs),
            rng=jax.random.key_data(k_rng),
            total_env_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
        )

    def init(self, key: Any, population: int) -> DQNState:
        if int(population) < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        return self._init_jit(jax.random.split(as_key(key), int(population)))

    # -------------------------------------------------------------- one member
    def _q(self, params: Any, obs: jax.Array) -> jax.Array:
        return self.network.apply(params, obs.astype(jnp.float32))

    def _epsilon(self, hp: dict, steps: jax.Array) -> jax.Array:
        frac = jnp.clip(steps / hp["epsilon_decay_steps"], 0.0, 1.0)
        return 1.0 + frac * (hp["epsilon_end"] - 1.0)

    def _act_and_store(self, m: DQNState, hp: dict, active: jax.Array, keys):
        """One step of the member's envs; the transitions go into its replay buffer."""
        k_explore, k_random, k_env = keys
        q = self._q(m.params, m.obs)
        explore = jax.random.uniform(k_explore, (self.num_envs,)) < self._epsilon(
            hp, m.total_env_steps
        )
        random_action = jax.random.randint(k_random, (self.num_envs,), 0, q.shape[-1])
        action = jnp.where(explore, random_action, jnp.argmax(q, -1))
        obs, env_state, reward, done, info = jax.vmap(self.env.step)(
            jax.random.split(k_env, self.num_envs), m.env_state, action
        )
        ep_return = m.ep_return + reward
        finished_sum = jnp.sum(jnp.where(done, ep_return, 0.0))
        r = m.replay
        rows = (r.ptr + jnp.arange(self.num_envs)) % self.buffer_size

        def put(table: jax.Array, new: jax.Array) -> jax.Array:
            # An inactive member (its budget is spent) writes its old rows back unchanged.
            keep = active.reshape((1,) * new.ndim)
            return table.at[rows].set(jnp.where(keep, new.astype(table.dtype), table[rows]))

        replay = Replay(
            obs=put(r.obs, m.obs),
            action=put(r.action, action),
            reward=put(r.reward, reward),
            next_obs=put(r.next_obs, info["final_obs"]),
            terminated=put(r.terminated, info["terminated"].astype(jnp.float32)),
            ptr=jnp.where(active, (r.ptr + self.num_envs) % self.buffer_size, r.ptr),
            size=jnp.where(active, jnp.minimum(r.size + self.num_envs, self.buffer_size), r.size),
        )
        m = m.replace(
            replay=replay,
            env_state=_select(active, env_state, m.env_state),
            obs=jnp.where(active, obs, m.obs),
            ep_return=jnp.where(active, jnp.where(done, 0.0, ep_return), m.ep_return),
            total_env_steps=jnp.where(active, m.total_env_steps + self.num_envs, m.total_env_steps),
        )
        return m, jnp.where(active, finished_sum, 0.0), jnp.where(active, jnp.sum(done), 0)

    def _learn(self, m: DQNState, hp: dict, active: jax.Array, key: jax.Array):
        """One gradient step on a uniform minibatch, once the buffer holds learning_starts."""
        r = m.replay
        learn = active & (r.size >= self.learning_starts)
        idx = jax.random.randint(key, (self.batch_size,), 0, jnp.maximum(r.size, 1))
        next_q = self._q(m.target_params, r.next_obs[idx]).max(-1)
        target = r.reward[idx] + hp["gamma"] * (1.0 - r.terminated[idx]) * next_q

        def loss_fn(params):
            q = self._q(params, r.obs[idx])
            q_taken = jnp.take_along_axis(q, r.action[idx][:, None], -1)[:, 0]
            loss = optax.huber_loss(q_taken, jax.lax.stop_gradient(target)).mean()
            return loss, q_taken.mean()

        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(m.params)
        step, opt_state = self.optimizer.update(grads, m.opt_state)
        params = jax.tree.map(lambda p, s: p - hp["lr"] * s, m.params, step)
        updates = m.updates + learn.astype(jnp.int32)
        copy_target = learn & (updates % hp["target_update_period"] == 0)
        m = m.replace(
            params=_select(learn, params, m.params),
            opt_state=_select(learn, opt_state, m.opt_state),
            updates=updates,
            target_params=_select(copy_target, params, m.target_params),
        )
        return m, jnp.where(learn, loss, 0.0), jnp.where(learn, q_mean, 0.0), learn

    def _member_update(self, m: DQNState, hp: dict, active: jax.Array):
        rng, k_explore, k_random, k_env, k_sample = jax.random.split(
            jax.random.wrap_key_data(m.rng), 5
        )
        m, ep_sum, ep_cnt = self._act_and_store(m, hp, active, (k_explore, k_random, k_env))
        m, loss, q_mean, learned = self._learn(m, hp, active, k_sample)
        m = m.replace(rng=jnp.where(active, jax.random.key_data(rng), m.rng))
        return m, jnp.stack([ep_sum, ep_cnt, loss, q_mean, learned.astype(jnp.float32)])

    # -------------------------------------------------------------- the population
    def _train_impl(self, state: DQNState, hp: dict, budget: jax.Array):
        self.compile_count += 1  # runs only while tracing, i.e. once per compilation
        steps = (budget + self.num_envs - 1) // self.num_envs  # whole updates per member
        population = budget.shape[0]

        def body(c):
            st, i, acc = c
            st, stats = jax.vmap(self._member_update)(st, hp, i < steps)
            return st, i + 1, acc + stats

        init = (state, jnp.zeros((), jnp.int32), jnp.zeros((population, 5)))
        state, _, acc = jax.lax.while_loop(lambda c: c[1] < steps.max(), body, init)
        ep_sum, ep_cnt, loss_sum, q_sum, n_learn = acc.T
        per_update = jnp.where(n_learn > 0, n_learn, jnp.nan)
        metrics = {
            "episode_return": ep_sum / jnp.where(ep_cnt > 0, ep_cnt, jnp.nan),
            "episodes": ep_cnt.astype(jnp.int32),
            "env_steps": steps * self.num_envs,
            "total_env_steps": state.total_env_steps,
            "loss": loss_sum / per_update,
            "q_mean": q_sum / per_update,
            "gradient_updates": n_learn.astype(jnp.int32),
            "epsilon": jax.vmap(self._epsilon)(hp, state.total_env_steps),
        }
        return state, metrics

    def _eval_action(self, m: DQNState, obs: jax.Array, key: jax.Array) -> jax.Array:
        q = self._q(m.params, obs)
        k_explore, k_random = jax.random.split(key)
        explore = jax.random.uniform(k_explore, q.shape[:1]) < self.eval_epsilon
        return jnp.where(
            explore, jax.random.randint(k_random, q.shape[:1], 0, q.shape[-1]), q.argmax(-1)
        )

    def _act_impl(self, state: DQNState, obs: jax.Array, key: jax.Array, greedy: bool):
        # `act` for a trained population: DQN's policy is the greedy one.
        return jax.vmap(lambda m, o: self._q(m.params, o).argmax(-1))(state, obs)


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
