"""PPO for a whole population in one jitted JAX program, with every hyperparameter per member.

The vector engine trains P members in lockstep: one call of :meth:`PPO.train` runs all of them,
and exploiting or changing a member's hyperparameters between calls must cost nothing but new
arrays. So every PPO hyperparameter, the structural ones included, is an ``[P]`` array traced
into the program, never a Python constant, and changing any of them never recompiles.

Hyperparameters (names as in :attr:`PPO.hyperparameter_names`, units as stated)
------------------------------------------------------------------------------------
``lr`` Adam step size; ``clip`` PPO ratio clip; ``gae_lambda``; ``gamma``; ``ent_coef``;
``vf_coef``; ``max_grad_norm`` (global-norm gradient clip); and three structural ones:

``train_batch_size``
    env steps (summed over the member's ``num_envs`` parallel envs) collected per update, i.e.
    RLlib's ``train_batch_size``. Allowed: ``[num_envs*rollout_chunk, num_envs*max_rollout_len]``,
    snapped to the nearest multiple of ``num_envs*rollout_chunk``. The default static config
    gives ``[256, 4096]``: the paper's ``[1000, 60000]`` scaled by about 1/15 so that a population
    of 8 trains at >= 1e5 env steps/s on 2 CPU cores. Larger static sizes reach the paper's range
    (``num_envs=64, max_rollout_len=1024`` -> up to 65536) at proportional memory cost.
``num_epochs``
    SGD passes over each batch (RLlib's ``num_sgd_iter``); integer in ``[1, max_epochs]``.
``minibatch_size``
    samples per optimiser step (RLlib's ``sgd_minibatch_size``); a multiple of
    ``minibatch_unit`` (default 64, where the paper allows 16) in ``[minibatch_unit,
    num_envs*max_rollout_len]``, snapped to the nearest multiple. A minibatch larger than the
    member's batch is cut to the batch (a search space is a box, so the scheduler may propose
    such pairs; an error would kill the run for a harmless combination).

With the default static config a paper-style search space becomes: ``lr``, ``clip``,
``gae_lambda``, ``gamma``, ``num_epochs`` as in the paper; ``train_batch_size`` in
``[256, 4096]`` (log scale) for the paper's ``[1000, 60000]``; ``minibatch_size`` in
``{64, 128, 256}`` for ``{16..256}`` (``minibatch_unit=16`` restores 16 and 32, at a speed cost:
more, smaller sequential steps).

Out-of-range values raise ``ValueError`` naming the hyperparameter and its allowed range;
:meth:`PPO.hyperparameter_bounds` gives the ranges for building a search space and
:meth:`PPO.effective_hyperparameters` shows the snapped values.

How the structural hyperparameters work without recompiling
-----------------------------------------------------------
Each member runs its own PPO program (collect ``train_batch_size`` env steps, then
``num_epochs`` shuffled passes of optimiser steps, repeat) as a small state machine, and
``train`` is one ``while`` loop that advances every member by one unit per iteration:

* a member that is *collecting* steps its ``num_envs`` envs ``rollout_chunk`` times and appends
  them to a buffer with room for ``max_rollout_len`` steps; when the buffer holds its own
  ``train_batch_size`` it computes GAE on that prefix and switches to updating;
* a member that is *updating* processes ``micro_batches_per_round`` micro-batches of
  ``minibatch_unit`` samples; its own counters say which epoch and which minibatch it is in,
  when to reshuffle (new epoch), when to apply an optimiser step (every
  ``minibatch_size / minibatch_unit`` micro-batches) and when it is done (after
  ``num_epochs * floor(batch / minibatch_size)`` optimiser steps), and then it collects again.

Every shape is static (buffer, micro-batch); everything a hyperparameter decides is a traced
integer compared with a counter. Each phase (collect, GAE, reshuffle, micro-batch, optimiser
step) is one vmapped computation over all members behind a population-level ``lax.cond``: it
runs if any member needs it, and members that do not are masked (their state is selected back).

A minibatch of any size is the mean of its micro-batch gradients, then clipped and applied once:
exactly the minibatch gradient, because every loss term is a per-sample mean. Advantages are
therefore normalised over the whole batch, not per minibatch (CleanRL does the latter; the
difference is small). Samples beyond the last whole minibatch of an epoch are dropped, as in
RLlib; the batch is reshuffled every epoch, so they are used in other epochs. Each member's PPO
is exact: it collects its batch with its current policy, updates, and only then collects again.

What it costs
-------------
* Memory: the buffer always has room for ``max_rollout_len`` steps per env and member.
* Compute is paid for all P members in every vmapped step, so the call lasts as long as the
  member with the most work per env step, ``~ num_epochs / minibatch_unit`` micro-batches per
  env step (batch size and minibatch size hardly change it): a member with fewer epochs
  finishes early and then idles, masked. Every member pays for the maximum epochs of the
  population, not of the compiled program.
* When members are in different phases an iteration costs a chunk of env steps plus
  ``micro_batches_per_round`` micro-batches, about twice the cost of either. Measured on
  CartPole with 8 members (2 shared CPUs, default static config): default hyperparameters
  ~1.1e5 env steps/s; 8 members sampled from the paper's space (epochs 5-15, batch 256-4096,
  minibatch 64-256) ~2.4e4/s, against ~5.5e4/s for 8 identical members with their mean epochs
  (9): the slowest member (15 epochs) alone explains 1.7x of that 2.3x, phase mixing the rest.
  Before this design (one vmapped update per round, nested epoch/minibatch loops) the same
  heterogeneous population ran at ~6e3/s, because each loop level took its own maximum.
* A smaller minibatch adds optimiser steps (one Adam update of the small network each), not
  gradient work.
* The two costs above are lockstep's. :mod:`gpbt.rl.execution` can instead run this same
  program over a population of 1, member by member (``set_execution("per-member")``; the
  vector engine's ``execution = "auto"`` does so on CPU whenever the search space tunes a
  structural hyperparameter): each member's loops then run its own trip counts, at the price
  of vmap's batching, and the members are spread over every core. Both layouts run the same
  steps; their floats differ in the last bits (see that module).

Honest env-step budget (``time_attr`` = env steps per member)
-----------------------------------------------------------
``train(state, hp, n)`` runs each member for whole updates until it has consumed at least
``n`` env steps (``n`` one number or one per member): ``ceil(n / train_batch_size) *
train_batch_size`` (so a call always ends on an update boundary with an empty buffer;
hyperparameter changes and exploits between calls are therefore clean). A member that is done
sits out (its state is frozen and nothing is counted) until the slowest member is done.
``metrics["env_steps"]`` is the exact count each member consumed in this call and
``state.total_env_steps`` the running total (int32: fine up to 2.1e9). The vector engine
carries the overshoot: each interval it asks every member for what brings *its own* total to
the interval's end (``t - total_env_steps``), so over a run every member trains the nominal
budget to within one of its batches, whatever its batch size.

Other choices
-------------
MLPs (tanh, orthogonal init) on flattened observations: MinAtar boards are flattened rather
than convolved (a conv costs several times more on CPU for little gain on 10x10 boards). Actor
and critic are separate networks for vector observations and share their torso (all hidden
layers) for image-like ones (``shared_torso=None``): on MinAtar the 400-700 wide first layer is
most of the compute, and sharing it gave ~1.6x the env steps/s at about the same learning curve
on Breakout in our runs. Continuous actions: diagonal Gaussian with a state-independent learned
log-std; the sampled action is clipped to the bounds only when sent to the env (log-probs are of
the unclipped sample); greedy = clipped mean. Observation normalisation (running mean/var,
clipped to +-10) and reward scaling by the std of the running discounted return are on by
default for continuous actions, off for discrete; their statistics are part of each member's
state and are copied by :meth:`PPO.gather`. A time-limit truncation bootstraps with
``gamma * V(final_obs)``; the extra critic pass runs only on the (rare) steps where some env
of the population hit its time limit (``bootstrap_truncation=False`` treats a truncation as a
termination instead). Plain Adam (eps 1e-5) with the member's learning rate and no schedule: the
scheduler is what changes the learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from gpbt.rl.common import PopulationAgent, as_key, checked_hidden_sizes
from gpbt.rl.envs import Env
from gpbt.rl.rollout import MemberStep, collect_rollout, gae_advantages, select_members

__all__ = ["PPO", "PPOConfig", "MemberState"]

_FLOAT_HPS = ("lr", "clip", "gae_lambda", "gamma", "ent_coef", "vf_coef", "max_grad_norm")
_INT_HPS = ("train_batch_size", "num_epochs", "minibatch_size")
_LOSS_NAMES = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
# A member's phase inside one train call.
_COLLECT, _UPDATE, _DONE = 0, 1, 2


@dataclass(frozen=True)
class PPOConfig:
    """Static sizes: changing any of these compiles a new program (hyperparameters never do).

    num_envs: parallel envs per member. rollout_chunk: steps per env per round; the batch-size
    granularity is ``num_envs*rollout_chunk``. max_rollout_len: buffer length in steps per env;
    the largest batch is ``num_envs*max_rollout_len``. minibatch_unit: fixed micro-batch shape;
    minibatch sizes are its multiples. max_epochs: upper bound accepted for ``num_epochs`` (it
    costs nothing by itself). hidden_sizes / activation / shared_torso: the MLP(s);
    ``shared_torso=None`` shares for image-like observations only. normalize_obs /
    normalize_reward: ``None`` means on for continuous actions. bootstrap_truncation: value a
    time-limit cut with ``V(final_obs)`` instead of treating it as a termination.
    """

    num_envs: int = 16
    rollout_chunk: int = 16
    max_rollout_len: int = 256
    minibatch_unit: int = 64
    micro_batches_per_round: int = 4
    max_epochs: int = 20
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    shared_torso: bool | None = None
    normalize_obs: bool | None = None
    normalize_reward: bool | None = None
    bootstrap_truncation: bool = True
    obs_clip: float = 10.0
    reward_clip: float = 10.0
    adam_eps: float = 1e-5
    init_log_std: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "num_envs",
            "rollout_chunk",
            "max_rollout_len",
            "minibatch_unit",
            "micro_batches_per_round",
            "max_epochs",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"PPOConfig.{name} must be a positive integer, got {value!r}")
        if self.max_rollout_len % self.rollout_chunk:
            raise ValueError(
                f"PPOConfig.max_rollout_len ({self.max_rollout_len}) must be a multiple of "
                f"rollout_chunk ({self.rollout_chunk})"
            )
        if self.num_envs * self.rollout_chunk < self.minibatch_unit:
            raise ValueError(
                f"PPOConfig.minibatch_unit ({self.minibatch_unit}) must be at most "
                f"num_envs*rollout_chunk ({self.num_envs * self.rollout_chunk}), the smallest batch"
            )
        if self.activation not in ("tanh", "relu"):
            raise ValueError(
                f"PPOConfig.activation must be 'tanh' or 'relu', got {self.activation!r}"
            )
        object.__setattr__(
            self, "hidden_sizes", checked_hidden_sizes("PPOConfig", self.hidden_sizes)
        )


@struct.dataclass
class RunningStats:
    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> RunningStats:
        # A tiny prior count keeps the first update from dividing by zero (as SB3 does).
        return cls(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4, jnp.float32))

    def update(self, batch: jax.Array) -> RunningStats:
        # Chan et al.'s parallel merge: exact for any batch size, stable in float32.
        n = jnp.asarray(batch.shape[0], jnp.float32)
        b_mean, b_var = batch.mean(0), batch.var(0)
        total = self.count + n
        delta = b_mean - self.mean
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        return RunningStats(mean, m2 / total, total)


@struct.dataclass
class MemberState:
    """One member's full training state; the population state has a leading [P] on every leaf."""

    params: Any
    opt_state: Any
    obs_stats: RunningStats
    ret_stats: RunningStats
    env_state: Any
    obs: jax.Array  # raw (unnormalised) current observation of every env, [E, *obs_shape]
    ep_return: jax.Array  # undiscounted return of the running episode, [E]
    disc_return: jax.Array  # discounted return used by reward scaling, [E]
    rng: jax.Array  # raw uint32 key data (plain arrays gather and select like any leaf)
    total_env_steps: jax.Array
    total_updates: jax.Array


class _MLP(nn.Module):
    hidden_sizes: tuple[int, ...]
    activation: str
    out_dim: int
    out_scale: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = nn.tanh if self.activation == "tanh" else nn.relu
        for h in self.hidden_sizes:
            x = act(nn.Dense(h, kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)))(x))
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.orthogonal(self.out_scale))(x)


class ActorCritic(nn.Module):
    hidden_sizes: tuple[int, ...]
    activation: str
    discrete: bool
    out_dim: int
    init_log_std: float

    shared_torso: bool

    def setup(self) -> None:
        hidden = self.hidden_sizes
        if self.shared_torso:
            self.torso = _MLP(hidden[:-1], self.activation, hidden[-1], math.sqrt(2.0))
            hidden = ()
        # Small policy head: the initial policy is near uniform / near zero-mean.
        self.actor = _MLP(hidden, self.activation, self.out_dim, 0.01)
        self.critic = _MLP(hidden, self.activation, 1, 1.0)
        if not self.discrete:
            self.log_std = self.param(
                "log_std", nn.initializers.constant(self.init_log_std), (self.out_dim,)
            )

    def _features(self, x: jax.Array) -> jax.Array:
        if self.shared_torso:
            act = nn.tanh if self.activation == "tanh" else nn.relu
            return act(self.torso(x))
        return x

    def __call__(self, x: jax.Array):
        h = self._features(x)
        out = self.actor(h)
        log_std = None if self.discrete else jnp.broadcast_to(self.log_std, out.shape)
        return out, log_std, self.critic(h)[..., 0]

    def value(self, x: jax.Array) -> jax.Array:
        return self.critic(self._features(x))[..., 0]


_LOG_2PI = math.log(2.0 * math.pi)


def _log_prob(discrete: bool, out, log_std, action):
    if discrete:
        logp_all = jax.nn.log_softmax(out)
        return jnp.take_along_axis(logp_all, action[..., None].astype(jnp.int32), -1)[..., 0]
    z = (action - out) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, -1)


def _entropy(discrete: bool, out, log_std):
    if discrete:
        logp = jax.nn.log_softmax(out)
        return -jnp.sum(jnp.exp(logp) * logp, -1)
    return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), -1)


def _shuffle_prefix(key: jax.Array, n: int, n_valid: jax.Array) -> jax.Array:
    """A random permutation of ``range(n_valid)`` followed by ``n_valid..n-1`` in order.

    Sorting one packed uint32 (random high bits, index in the low bits) is several times faster
    on CPU than an argsort of float keys, and the per-epoch shuffle was the update's main fixed
    cost. Ties in the random bits keep index order: a negligible bias for >= 16 random bits.
    """
    idx_bits = max(1, (n - 1).bit_length())
    if idx_bits > 16:
        raise ValueError(f"rollout buffer of {n} samples is too large (max 65536)")
    low = jnp.uint32((1 << idx_bits) - 1)
    index = jnp.arange(n, dtype=jnp.uint32)
    bits = jax.random.bits(key, (n,), jnp.uint32) | low
    # Invalid samples get the largest random part, so they sort after every valid one.
    bits = jnp.where(index < n_valid, bits, jnp.uint32(0xFFFFFFFF))
    return (jnp.sort((bits & ~low) | index) & low).astype(jnp.int32)


class PPO(PopulationAgent):
    """Population PPO on one :class:`~gpbt.rl.envs.Env`; see the module docstring."""

    hyperparameter_names: tuple[str, ...] = _FLOAT_HPS + _INT_HPS
    int_hyperparameters = frozenset(_INT_HPS)
    structural_hyperparameters = frozenset(_INT_HPS)

    def __init__(self, env: Env, config: PPOConfig | None = None) -> None:
        self.env = env
        self.config = cfg = config or PPOConfig()
        self.discrete = bool(env.discrete)
        self.normalize_obs = (not self.discrete) if cfg.normalize_obs is None else cfg.normalize_obs
        self.normalize_reward = (
            (not self.discrete) if cfg.normalize_reward is None else cfg.normalize_reward
        )
        self.obs_shape = tuple(env.obs_shape)
        self.obs_dim = int(np.prod(self.obs_shape))
        out_dim = int(env.num_actions) if self.discrete else int(env.action_dim)
        self.shared_torso = (
            len(self.obs_shape) > 1 if cfg.shared_torso is None else bool(cfg.shared_torso)
        )
        self.network = ActorCritic(
            cfg.hidden_sizes,
            cfg.activation,
            self.discrete,
            out_dim,
            cfg.init_log_std,
            self.shared_torso,
        )
        self.optimizer = optax.scale_by_adam(eps=cfg.adam_eps)
        if not self.discrete:
            self._low = jnp.asarray(env.action_low, jnp.float32)
            self._high = jnp.asarray(env.action_high, jnp.float32)
        self.batch_unit = cfg.num_envs * cfg.rollout_chunk
        self.max_batch = self.max_update_steps = cfg.num_envs * cfg.max_rollout_len
        self.compile_count = 0
        self._init_jit = jax.jit(self._init_impl, static_argnums=1)
        self._compile_entry_points()

    # ----------------------------------------------------------------------------------------
    # Hyperparameters
    # ----------------------------------------------------------------------------------------

    def default_hyperparameters(self) -> dict[str, float]:
        """CleanRL/PureJaxRL-like defaults, one set for discrete and one for continuous actions."""
        if self.discrete:
            d = dict(lr=1e-3, clip=0.2, gae_lambda=0.95, gamma=0.99, ent_coef=0.01,
                     vf_coef=0.5, max_grad_norm=0.5, train_batch_size=512, num_epochs=4,
                     minibatch_size=128)  # fmt: skip
        else:
            d = dict(lr=3e-4, clip=0.2, gae_lambda=0.95, gamma=0.99, ent_coef=0.0,
                     vf_coef=0.5, max_grad_norm=0.5, train_batch_size=2048, num_epochs=10,
                     minibatch_size=256)  # fmt: skip
        # Keep the defaults valid under any static config.
        unit = self.config.minibatch_unit
        d["train_batch_size"] = min(max(d["train_batch_size"], self.batch_unit), self.max_batch)
        d["num_epochs"] = min(d["num_epochs"], self.config.max_epochs)
        d["minibatch_size"] = min(max(d["minibatch_size"], unit), d["train_batch_size"])
        d = self._snap(d)
        d["minibatch_size"] = min(d["minibatch_size"], d["train_batch_size"] // unit * unit)
        return {k: float(v) for k, v in d.items()}

    def hyperparameter_bounds(self) -> dict[str, tuple[float, float]]:
        """Allowed ``[low, high]`` of every hyperparameter under this static config."""
        cfg = self.config
        return {
            "lr": (0.0, 1.0),
            "clip": (0.0, 1.0),
            "gae_lambda": (0.0, 1.0),
            "gamma": (0.0, 1.0),
            "ent_coef": (0.0, 1.0),
            "vf_coef": (0.0, 100.0),
            "max_grad_norm": (0.0, 1e6),
            "train_batch_size": (float(self.batch_unit), float(self.max_batch)),
            "num_epochs": (1.0, float(cfg.max_epochs)),
            "minibatch_size": (float(cfg.minibatch_unit), float(self.max_batch)),
        }

    def _snap(self, cfg: Mapping[str, Any]) -> dict[str, float | int]:
        def note(name: str) -> str:
            if name not in _INT_HPS:
                return " for this PPOConfig"
            return (
                " for this PPOConfig (set by num_envs, rollout_chunk, max_rollout_len / "
                "minibatch_unit / max_epochs; see gpbt.rl.ppo)"
            )

        out: dict[str, float | int] = {}
        for name, x in self._checked_values(cfg, note).items():
            if name == "train_batch_size":
                u = self.batch_unit
                out[name] = int(min(max(math.floor(x / u + 0.5), 1) * u, self.max_batch))
            elif name == "minibatch_size":
                u = self.config.minibatch_unit
                out[name] = int(min(max(math.floor(x / u + 0.5), 1) * u, self.max_batch))
            elif name == "num_epochs":
                out[name] = int(math.floor(x + 0.5))
            else:
                out[name] = x
        return out

    def effective_hyperparameters(self, config: Mapping[str, Any]) -> dict[str, float | int]:
        """The values a member really trains with: defaults filled in, snapped and clamped."""
        full = {**self.default_hyperparameters(), **self._snap(config)}
        snapped = self._snap(full)
        unit = self.config.minibatch_unit
        snapped["minibatch_size"] = min(
            snapped["minibatch_size"], snapped["train_batch_size"] // unit * unit
        )
        return snapped

    def member_costs(self, hp: Mapping[str, np.ndarray], budget: np.ndarray) -> np.ndarray:
        """Rough relative work per member, for ordering only: per env step, collecting costs
        about two forward passes of one sample (env step, policy and value) and each epoch a
        forward and backward pass (about three)."""
        return budget * (2.0 + 3.0 * hp["num_epochs"])

    # ----------------------------------------------------------------------------------------
    # Init / gather
    # ----------------------------------------------------------------------------------------

    def _init_member(self, key: jax.Array) -> MemberState:
        cfg = self.config
        k_net, k_env, k_rng = jax.random.split(key, 3)
        params = self.network.init(k_net, jnp.zeros((1, self.obs_dim)))
        obs, env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, cfg.num_envs))
        zeros = jnp.zeros(cfg.num_envs)
        return MemberState(
            params=params,
            opt_state=self.optimizer.init(params),
            obs_stats=RunningStats.create(self.obs_shape),
            ret_stats=RunningStats.create(()),
            env_state=env_state,
            obs=obs,
            ep_return=zeros,
            disc_return=zeros,
            rng=jax.random.key_data(k_rng),
            total_env_steps=jnp.zeros((), jnp.int32),
            total_updates=jnp.zeros((), jnp.int32),
        )

    def _init_impl(self, key: jax.Array, population: int) -> MemberState:
        # lax.map, not vmap: a vmapped orthogonal init (batched QR) of a 400-wide MinAtar layer
        # hung XLA:CPU with jax 0.10.2; init runs once, so sequential costs nothing noticeable.
        state = jax.lax.map(self._init_member, jax.random.split(key, population))
        # Strong dtypes everywhere: train's output state must have exactly the input's types,
        # or feeding it back would compile a second program.
        return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), state)

    def init(self, key: Any, population: int) -> MemberState:
        """A population of ``population`` members, each from its own split of ``key``."""
        if int(population) < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        return self._init_jit(as_key(key), int(population))

    # ----------------------------------------------------------------------------------------
    # Policy
    # ----------------------------------------------------------------------------------------

    def _normalize(self, stats: RunningStats, obs: jax.Array) -> jax.Array:
        if self.normalize_obs:
            obs = (obs - stats.mean) / jnp.sqrt(stats.var + 1e-8)
            obs = jnp.clip(obs, -self.config.obs_clip, self.config.obs_clip)
        return obs.reshape(obs.shape[: obs.ndim - len(self.obs_shape)] + (self.obs_dim,))

    def _env_action(self, action: jax.Array) -> jax.Array:
        return action if self.discrete else jnp.clip(action, self._low, self._high)

    def _greedy(self, out: jax.Array) -> jax.Array:
        return jnp.argmax(out, -1) if self.discrete else jnp.clip(out, self._low, self._high)

    def _sample(self, key, out, log_std):
        if self.discrete:
            return jax.random.categorical(key, out)
        return out + jnp.exp(log_std) * jax.random.normal(key, out.shape)

    def _act_impl(self, state: MemberState, obs: jax.Array, key: jax.Array, greedy: bool):
        def one(member: MemberState, o: jax.Array) -> jax.Array:
            out, log_std, _ = self.network.apply(
                member.params, self._normalize(member.obs_stats, o)
            )
            if greedy:
                return self._greedy(out)
            return self._env_action(self._sample(key, out, log_std))

        return jax.vmap(one)(state, obs)

    # ----------------------------------------------------------------------------------------
    # Rollout
    # ----------------------------------------------------------------------------------------

    def _member_step(self, m: MemberState, hp: dict):
        """One env step of every env of one member (`collect_rollout` adds the truncation
        bootstrap)."""
        cfg = self.config
        rng, k_act, k_env = jax.random.split(jax.random.wrap_key_data(m.rng), 3)
        obs_stats = m.obs_stats.update(m.obs) if self.normalize_obs else m.obs_stats
        obs_n = self._normalize(obs_stats, m.obs)
        out, log_std, value = self.network.apply(m.params, obs_n)
        action = self._sample(k_act, out, log_std)
        logp = _log_prob(self.discrete, out, log_std, action)
        next_obs, env_state, reward, done, info = jax.vmap(self.env.step)(
            jax.random.split(k_env, cfg.num_envs), m.env_state, self._env_action(action)
        )
        ep_return = m.ep_return + reward
        ep_sum = jnp.sum(jnp.where(done, ep_return, 0.0))
        ret_stats, disc = m.ret_stats, m.disc_return
        train_reward = reward
        if self.normalize_reward:
            disc = disc * hp["gamma"] + reward
            ret_stats = ret_stats.update(disc)
            train_reward = jnp.clip(
                reward / jnp.sqrt(ret_stats.var + 1e-8), -cfg.reward_clip, cfg.reward_clip
            )
            disc = jnp.where(done, 0.0, disc)
        m = m.replace(
            obs_stats=obs_stats,
            ret_stats=ret_stats,
            env_state=env_state,
            obs=next_obs,
            ep_return=jnp.where(done, 0.0, ep_return),
            disc_return=disc,
            rng=jax.random.key_data(rng),
        )
        transition = {
            "obs": obs_n,
            "action": action,
            "logp": logp,
            "value": value,
            "reward": train_reward,
            "done": done.astype(jnp.float32),
        }
        final_obs_n = self._normalize(obs_stats, info["final_obs"])
        return MemberStep(m, transition, final_obs_n, info["truncated"], ep_sum, jnp.sum(done))

    def _collect_chunk(self, state: MemberState, hp: dict, active: jax.Array):
        """``rollout_chunk`` steps of the whole population; inactive members stay frozen.

        Returns the chunk as ``[P, rollout_chunk, num_envs, ...]`` arrays.
        """
        cfg = self.config
        return collect_rollout(
            self._member_step,
            state,
            cfg.rollout_chunk,
            hp,
            truncation_value=self._value if cfg.bootstrap_truncation else None,
            gamma=hp["gamma"],
            active=active,
        )

    def _value(self, m: MemberState, obs_n: jax.Array) -> jax.Array:
        """One member's critic on normalised observations (what a truncation bootstraps with)."""
        return self.network.apply(m.params, obs_n, method=ActorCritic.value)

    # ----------------------------------------------------------------------------------------
    # Update
    # ----------------------------------------------------------------------------------------

    def _loss(self, params, batch, hp):
        out, log_std, value = self.network.apply(params, batch["obs"])
        logp = _log_prob(self.discrete, out, log_std, batch["action"])
        log_ratio = logp - batch["logp"]
        ratio = jnp.exp(log_ratio)
        adv = batch["adv"]
        clip = hp["clip"]
        pg = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1.0 - clip, 1.0 + clip)).mean()
        v_loss = 0.5 * jnp.mean((value - batch["target"]) ** 2)
        entropy = _entropy(self.discrete, out, log_std).mean()
        loss = pg + hp["vf_coef"] * v_loss - hp["ent_coef"] * entropy
        aux = (
            pg,
            v_loss,
            entropy,
            jnp.mean((ratio - 1.0) - log_ratio),
            jnp.mean((jnp.abs(ratio - 1.0) > clip).astype(jnp.float32)),
        )
        return loss, aux

    def _schedule(self, hp: dict) -> dict:
        """Per-member loop sizes implied by the structural hyperparameters (all ``[P]`` ints)."""
        cfg = self.config
        unit = cfg.minibatch_unit
        steps = hp["train_batch_size"] // cfg.num_envs
        n_valid = steps * cfg.num_envs
        mb = jnp.maximum(jnp.minimum(hp["minibatch_size"], n_valid // unit * unit), unit)
        micro_per_mb = mb // unit
        micro_per_epoch = (n_valid // mb) * micro_per_mb
        return {
            "steps": steps,
            "n_valid": n_valid,
            "micro_per_mb": micro_per_mb,
            "micro_per_epoch": micro_per_epoch,
            "micro_total": hp["num_epochs"] * micro_per_epoch,
        }

    def _advantages(self, m: MemberState, buf: dict, hp: dict, steps: jax.Array):
        """GAE over one member's own rollout (first ``steps`` rows of its buffer), flattened."""
        cfg = self.config
        _, _, last_v = self.network.apply(m.params, self._normalize(m.obs_stats, m.obs))
        adv, target = gae_advantages(
            buf["reward"], buf["value"], buf["done"], last_v, hp["gamma"], hp["gae_lambda"], steps
        )
        target = target.reshape(-1)
        adv = adv.reshape(-1)
        valid = jnp.arange(adv.shape[0]) < steps * cfg.num_envs
        count = jnp.maximum(steps * cfg.num_envs, 1).astype(jnp.float32)
        mean = jnp.sum(jnp.where(valid, adv, 0.0)) / count
        std = jnp.sqrt(jnp.sum(jnp.where(valid, (adv - mean) ** 2, 0.0)) / count)
        return (adv - mean) / (std + 1e-8), target

    def _micro_grad(self, params, buf, adv, target, perm, offset, hp):
        """Gradient of one micro-batch: ``minibatch_unit`` samples at ``perm[offset:]``."""
        unit = self.config.minibatch_unit
        idx = jax.lax.dynamic_slice(perm, (offset,), (unit,))
        n_max = adv.shape[0]
        flat = {k: buf[k].reshape((n_max,) + buf[k].shape[2:]) for k in ("obs", "action", "logp")}
        batch = {k: v[idx] for k, v in flat.items()}
        batch["adv"], batch["target"] = adv[idx], target[idx]
        (_, aux), grads = jax.value_and_grad(self._loss, has_aux=True)(params, batch, hp)
        return grads, jnp.stack(aux)

    def _apply(self, params, opt_state, acc, micro_per_mb, hp):
        """One optimiser step on the mean of the accumulated micro-batch gradients."""
        g = jax.tree.map(lambda x: x / micro_per_mb, acc)
        scale = jnp.minimum(1.0, hp["max_grad_norm"] / (optax.tree.norm(g) + 1e-6))
        upd, opt_state = self.optimizer.update(jax.tree.map(lambda x: x * scale, g), opt_state)
        return jax.tree.map(lambda p, u: p - hp["lr"] * u, params, upd), opt_state

    # ----------------------------------------------------------------------------------------
    # Train
    # ----------------------------------------------------------------------------------------

    def _train_impl(self, state: MemberState, hp: dict, budget: jax.Array):
        self.compile_count += 1  # runs only while tracing, i.e. once per compilation
        cfg = self.config
        population = state.total_env_steps.shape[0]
        n_max = cfg.max_rollout_len * cfg.num_envs
        sched = self._schedule(hp)

        buf = jax.tree.map(
            lambda x: jnp.zeros((population, cfg.max_rollout_len) + x.shape[2:], x.dtype),
            jax.eval_shape(
                lambda s: self._collect_chunk(s, hp, jnp.ones(population, bool))[1], state
            ),
        )
        zi = jnp.zeros(population, jnp.int32)
        zf = jnp.zeros(population, jnp.float32)
        collecting = jnp.where(budget > 0, _COLLECT, _DONE) * jnp.ones(population, jnp.int32)
        carry = {
            "state": state,
            "buf": buf,
            "adv": jnp.zeros((population, n_max)),
            "target": jnp.zeros((population, n_max)),
            "perm": jnp.zeros((population, n_max), jnp.int32),
            "acc": jax.tree.map(jnp.zeros_like, state.params),
            "phase": collecting,
            "fill": zi,
            "k": zi,
            "consumed": zi,
            "ep_sum": zf,
            "ep_cnt": zi,
            "loss_sum": jnp.zeros((population, len(_LOSS_NAMES))),
            "n_micro": zi,
            "n_opt": zi,
            "updates": zi,
        }

        def collect(c):
            active = c["phase"] == _COLLECT
            st, chunk, ep_sum, ep_cnt = self._collect_chunk(c["state"], hp, active)

            # Only a collecting member's rows change. A member that is updating has its
            # fill at its batch's end; at the largest batch a write there would be clamped
            # back into its batch, so it writes back the rows it already holds (a select of
            # one chunk, not of the whole buffer).
            def write(x, y, f, a):
                n = y.shape[0]
                old = jax.lax.dynamic_slice_in_dim(x, f, n, 0)
                return jax.lax.dynamic_update_slice_in_dim(x, jnp.where(a, y, old), f, 0)

            buf = jax.vmap(lambda b, ch, f, a: jax.tree.map(lambda x, y: write(x, y, f, a), b, ch))(
                c["buf"], chunk, c["fill"], active
            )
            return {
                **c,
                "state": st,
                "buf": buf,
                "fill": c["fill"] + cfg.rollout_chunk * active,
                "consumed": c["consumed"] + cfg.rollout_chunk * cfg.num_envs * active,
                "ep_sum": c["ep_sum"] + ep_sum,
                "ep_cnt": c["ep_cnt"] + ep_cnt,
            }

        # The conds below take and return only what they change: a cond's operands are not
        # guaranteed to alias, and the rollout buffer is the largest array in the program.
        def targets(c, ready):
            # GAE for the members whose buffer just filled; they switch to updating.
            st = c["state"]
            small = {k: c["buf"][k] for k in ("value", "reward", "done")}

            def branch(args):
                st, small, adv0, target0 = args
                adv, target = jax.vmap(self._advantages)(st, small, hp, sched["steps"])
                return (
                    jnp.where(ready[:, None], adv, adv0),
                    jnp.where(ready[:, None], target, target0),
                )

            adv, target = jax.lax.cond(
                jnp.any(ready), branch, lambda a: a[2:], (st, small, c["adv"], c["target"])
            )
            return {
                **c,
                "adv": adv,
                "target": target,
                "phase": jnp.where(ready, _UPDATE, c["phase"]),
                "k": jnp.where(ready, 0, c["k"]),
            }

        def shuffle(args, new_epoch):
            rng, perm = args
            keys = jax.vmap(lambda r: jax.random.split(jax.random.wrap_key_data(r)))(rng)
            new_perm = jax.vmap(_shuffle_prefix, in_axes=(0, None, 0))(
                keys[:, 1], n_max, sched["n_valid"]
            )
            new_rng = jax.vmap(jax.random.key_data)(keys[:, 0])
            return (
                jnp.where(new_epoch[:, None], new_rng, rng),
                jnp.where(new_epoch[:, None], new_perm, perm),
            )

        def apply(args, ready):
            params, opt_state, acc = args
            new_params, new_opt = jax.vmap(self._apply)(
                params, opt_state, acc, sched["micro_per_mb"], hp
            )
            return (
                select_members(ready, new_params, params),
                select_members(ready, new_opt, opt_state),
                select_members(ready, jax.tree.map(jnp.zeros_like, acc), acc),
            )

        def micro_step(c):
            updating = c["phase"] == _UPDATE
            r = c["k"] % sched["micro_per_epoch"]
            new_epoch = updating & (r == 0)
            rng, perm = jax.lax.cond(
                jnp.any(new_epoch),
                shuffle,
                lambda a, _: a,
                (c["state"].rng, c["perm"]),
                new_epoch,
            )
            c = {**c, "state": c["state"].replace(rng=rng), "perm": perm}
            grads, aux = jax.vmap(self._micro_grad, in_axes=(0, 0, 0, 0, 0, 0, 0))(
                c["state"].params,
                c["buf"],
                c["adv"],
                c["target"],
                c["perm"],
                r * cfg.minibatch_unit,
                hp,
            )
            c = {
                **c,
                "acc": select_members(updating, jax.tree.map(jnp.add, c["acc"], grads), c["acc"]),
                "loss_sum": c["loss_sum"] + jnp.where(updating[:, None], aux, 0.0),
                "n_micro": c["n_micro"] + updating,
            }
            ready = updating & ((r + 1) % sched["micro_per_mb"] == 0)
            st = c["state"]
            params, opt_state, acc = jax.lax.cond(
                jnp.any(ready), apply, lambda a, _: a, (st.params, st.opt_state, c["acc"]), ready
            )
            k = c["k"] + updating
            finished = updating & (k >= sched["micro_total"])
            st = st.replace(
                params=params, opt_state=opt_state, total_updates=st.total_updates + finished
            )
            return {
                **c,
                "state": st,
                "acc": acc,
                "n_opt": c["n_opt"] + ready,
                "k": jnp.where(finished, 0, k),
                "phase": jnp.where(finished, _COLLECT, c["phase"]),
                "fill": jnp.where(finished, 0, c["fill"]),
                "updates": c["updates"] + finished,
            }

        def update_round(c):
            # Up to micro_batches_per_round micro-batches of every updating member.
            c, _ = jax.lax.while_loop(
                lambda cj: (
                    (cj[1] < cfg.micro_batches_per_round) & jnp.any(cj[0]["phase"] == _UPDATE)
                ),
                lambda cj: (micro_step(cj[0]), cj[1] + 1),
                (c, jnp.zeros((), jnp.int32)),
            )
            return c

        def body(c):
            # Every member advances by one unit of its own program per iteration: a chunk of
            # env steps if it is collecting, micro_batches_per_round micro-batches if it is
            # updating (the two take similar time). Each part runs only if some member needs
            # it, so a population whose members are all in the same phase pays for one.
            c = jax.lax.cond(jnp.any(c["phase"] == _COLLECT), collect, lambda c: c, c)
            c = targets(c, (c["phase"] == _COLLECT) & (c["fill"] >= sched["steps"]))
            c = update_round(c)
            done = (c["phase"] == _COLLECT) & (c["fill"] == 0) & (c["consumed"] >= budget)
            return {**c, "phase": jnp.where(done, _DONE, c["phase"])}

        c = jax.lax.while_loop(lambda c: jnp.any(c["phase"] != _DONE), body, carry)
        n_micro = c["n_micro"].astype(jnp.float32)
        losses = c["loss_sum"] / jnp.where(n_micro > 0, n_micro, jnp.nan)[:, None]
        metrics = {
            "episode_return": c["ep_sum"] / jnp.where(c["ep_cnt"] > 0, c["ep_cnt"], jnp.nan),
            "episodes": c["ep_cnt"],
            "env_steps": c["consumed"],
            "total_env_steps": c["state"].total_env_steps,
            "updates": c["updates"],
            "sgd_steps": c["n_opt"],
            **{name: losses[:, i] for i, name in enumerate(_LOSS_NAMES)},
        }
        return c["state"], metrics

    # ----------------------------------------------------------------------------------------
    # Evaluate
    # ----------------------------------------------------------------------------------------

    def _eval_action(self, m: MemberState, obs: jax.Array, key: jax.Array) -> jax.Array:
        out, _, _ = self.network.apply(m.params, self._normalize(m.obs_stats, obs))
        return self._greedy(out)  # the deterministic policy: argmax, or the mean action
