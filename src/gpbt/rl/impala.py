"""IMPALA (V-trace actor-critic) for a whole population in one jitted JAX program.

Espeholt et al. 2018 decouple acting from learning: many actors run the policy they last fetched
from the learner, so the learner trains on trajectories of a slightly older policy, and V-trace
corrects for that lag with truncated importance weights. This module keeps that algorithm but
runs it synchronously, for P members at once, as the vector engine needs (the same population
interface as :class:`gpbt.rl.ppo.PPO`: ``init / train / evaluate / gather / act``,
``hyperparameter_names``, ``hyperparameter_bounds``, ``hyperparameters_to_arrays``,
``compile_count``).

One update of one member
------------------------
1. Its actor plays ``unroll_length`` steps in each of its ``num_envs`` envs with the *actor*
   parameters (the learner's parameters of ``actor_lag`` updates ago, see below), recording the
   behaviour log-probability ``log mu(a|x)`` of every action taken.
2. The learner evaluates the same trajectories with its current parameters and computes V-trace
   targets (:func:`vtrace_targets`) with ``log rho = log pi(a|x) - log mu(a|x)``, truncated at
   ``rho_bar`` (in the TD errors and the policy gradient) and ``c_bar`` (in the trace).
3. Loss = policy gradient with V-trace advantages + ``vf_coef`` x baseline loss
   ``0.5 (v_s - V(x_s))^2`` - ``ent_coef`` x entropy; global-norm gradient clipping at
   ``max_grad_norm``; one RMSProp step. As in the IMPALA paper's own code and RLlib's TF
   IMPALA (the code the GPBT paper ran) the loss is *summed* over the batch, not averaged
   (``loss_reduction="mean"`` switches): the paper's RMSProp-epsilon range [0.01, 0.5] only
   matters when gradients are of the size a summed loss gives.

The actor lag
-------------
In distributed IMPALA the behaviour policy lags because actors fetch parameters asynchronously.
Here the lag is exact and deterministic: each member keeps a ring of its last ``actor_lag``
learner parameter snapshots, and the batch for update ``u`` is collected with the parameters
the learner had before update ``u - actor_lag`` (the initial parameters while ``u <
actor_lag``). After update ``u`` the parameters it started from overwrite the slot it read, so
the ring always holds exactly the snapshots still to be used. A fixed lag (rather than a copy
refreshed every ``lag`` updates, whose lag would cycle through ``0..lag-1``) makes the
off-policyness a controlled, reproducible quantity and the test of the correction sharp. The
ring costs ``actor_lag`` copies of the parameters per member and is part of the member's state,
so an exploit copies the donor's ring too: the copied member continues exactly as the donor
would. With ``actor_lag = 0`` the actor is the learner, every importance weight is 1 (up to
float rounding) and the update is on-policy n-step advantage actor-critic (A2C with n-step
bootstrapped targets), which the tests check.

Hyperparameters (all per member, traced: changing any of them never recompiles)
----------------------------------------------------------------------------
``lr`` RMSProp step size; ``rms_eps`` RMSProp epsilon, added *inside* the square root as in
TensorFlow's RMSProp that IMPALA and RLlib-TF used (``g / sqrt(ms + eps)``), so the paper's
[0.01, 0.5] floors the denominator at [0.1, 0.71]; ``ent_coef``; ``gamma``; ``rho_bar`` and
``c_bar`` (V-trace truncation levels, the paper's defaults are 1 and 1; the policy gradient
uses ``rho_bar`` as in the paper's eq. for the actor update); ``vf_coef`` (baseline cost, 0.5);
``max_grad_norm`` (40, as in the paper). RMSProp decay (0.99) and initial mean square are static.
The mean square starts at 1 (``rms_initial_scale``), as in TensorFlow 1's
``tf.train.RMSPropOptimizer`` that the IMPALA code and RLlib's TF IMPALA ran: started at 0 (the
PyTorch and optax convention), the first ~100 updates are near sign-like steps up to ~10x the
learning rate, and a large ``rms_eps`` wins early only by taming them.

Budget
------
Every update consumes ``num_envs * unroll_length`` env steps per member (the batch size is
static, so all members update in lockstep and nothing is masked). ``train(state, hp, n)`` runs
``ceil(n / batch)`` updates; ``metrics["env_steps"]`` is what each member consumed and
``state.total_env_steps`` (int32 [P]) the running total.

Other choices
-------------
A shared torso with a policy and a value head, as in IMPALA. ``torso="mlp"`` (the default):
a ReLU MLP on the flattened observation, 64x64 by default; on CPU it is several times faster than
a conv on MinAtar's 10x10 boards, and on Breakout it learned as well as 128 or 256x256 over 2M
steps in our runs, at 3-4x the speed of 256x256. ``"conv"``: the MinAtar paper's network (one
16-channel 3x3 conv, then the dense layers). ``"nature"``: the Atari DQN conv stack for 84x84
frames (set ``obs_scale = 1/255`` for uint8 pixels and e.g. ``hidden_sizes = [512]``).
Rewards are clipped to ``[-reward_clip, reward_clip]`` (1, as in the IMPALA Atari runs; a no-op
on MinAtar's 0/1 rewards). A time-limit truncation bootstraps with ``gamma * V(final_obs)``
computed by the learner parameters (the ones the update uses, so this is exact); it costs one
extra forward pass on the steps that have one. :meth:`IMPALA.evaluate` samples from the policy
by default (IMPALA reports the stochastic policy's return; a greedy MinAtar policy can stall);
``eval_greedy=True`` takes the argmax. Discrete actions only (Atari and MinAtar).
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
from gpbt.rl.rollout import MemberStep, collect_rollout, vtrace_targets

__all__ = ["IMPALA", "IMPALAConfig", "MemberState", "vtrace_targets"]

_HPS = ("lr", "rms_eps", "ent_coef", "gamma", "rho_bar", "c_bar", "vf_coef", "max_grad_norm")
_METRIC_NAMES = (
    "policy_loss",
    "value_loss",
    "entropy",
    "importance_weight",  # mean pi/mu of the actions taken (1 on-policy)
    "rho_clipped_fraction",  # share of steps whose weight rho_bar truncated
    "abs_log_rho",  # mean |log pi/mu|: how off-policy the batch was
)


@dataclass(frozen=True)
class IMPALAConfig:
    """Static sizes and choices: changing any of these compiles a new program.

    ``actor_lag`` is the number of learner updates the acting parameters lag behind (0 =
    on-policy). ``hidden_sizes`` are the dense layers of the torso (after the conv for
    ``"conv"`` / ``"nature"``). ``reward_clip = 0`` turns reward clipping off.
    """

    num_envs: int = 32
    unroll_length: int = 20
    actor_lag: int = 2
    torso: str = "mlp"
    hidden_sizes: tuple[int, ...] = (64, 64)
    obs_scale: float = 1.0
    loss_reduction: str = "sum"
    rms_decay: float = 0.99
    rms_initial_scale: float = 1.0
    reward_clip: float = 1.0
    bootstrap_truncation: bool = True
    eval_greedy: bool = False

    def __post_init__(self) -> None:
        for name in ("num_envs", "unroll_length"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"IMPALAConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.actor_lag, int | np.integer) or self.actor_lag < 0:
            raise ValueError(
                f"IMPALAConfig.actor_lag must be an integer >= 0, got {self.actor_lag!r}"
            )
        if self.torso not in ("mlp", "conv", "nature"):
            raise ValueError(
                f"IMPALAConfig.torso must be 'mlp', 'conv' or 'nature', got {self.torso!r}"
            )
        if self.loss_reduction not in ("sum", "mean"):
            raise ValueError(
                f"IMPALAConfig.loss_reduction must be 'sum' or 'mean', got {self.loss_reduction!r}"
            )
        if not 0.0 <= self.rms_decay < 1.0:
            raise ValueError(f"IMPALAConfig.rms_decay must be in [0, 1), got {self.rms_decay}")
        if self.rms_initial_scale < 0 or self.reward_clip < 0 or self.obs_scale <= 0:
            raise ValueError(
                "IMPALAConfig.rms_initial_scale and reward_clip must be >= 0 and obs_scale > 0"
            )
        object.__setattr__(
            self, "hidden_sizes", checked_hidden_sizes("IMPALAConfig", self.hidden_sizes)
        )


@struct.dataclass
class MemberState:
    """One member's full training state; the population state has a leading [P] on every leaf."""

    params: Any  # the learner's parameters
    rms: Any  # RMSProp running mean of squared gradients, same tree as params
    past_params: Any  # ring of actor_lag snapshots (leading axis actor_lag); None if lag 0
    env_state: Any
    obs: jax.Array  # current observation of every env, [E, *obs_shape]
    ep_return: jax.Array  # undiscounted return of the running episode, [E]
    rng: jax.Array  # raw uint32 key data (gathers and selects like any leaf)
    total_env_steps: jax.Array
    total_updates: jax.Array


class Network(nn.Module):
    """Shared torso, a policy head (logits) and a value head, as in IMPALA."""

    torso: str
    hidden_sizes: tuple[int, ...]
    num_actions: int
    obs_shape: tuple[int, ...]

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        batch = x.shape[: x.ndim - len(self.obs_shape)]
        orth = nn.initializers.orthogonal
        if self.torso == "mlp":
            x = x.reshape(batch + (-1,))
        else:
            x = x.reshape((-1,) + self.obs_shape)
            if self.torso == "conv":  # Young & Tian 2019 (MinAtar)
                convs = ((16, 3, 1),)
            else:  # Mnih et al. 2015 (Atari), IMPALA's shallow network's conv stack
                convs = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
            for features, size, stride in convs:
                x = nn.Conv(
                    features,
                    (size, size),
                    (stride, stride),
                    "VALID",
                    kernel_init=orth(math.sqrt(2)),
                )(x)
                x = nn.relu(x)
            x = x.reshape(batch + (-1,))
        for h in self.hidden_sizes:
            x = nn.relu(nn.Dense(h, kernel_init=orth(math.sqrt(2.0)))(x))
        # A small policy head starts near the uniform policy.
        logits = nn.Dense(self.num_actions, kernel_init=orth(0.01))(x)
        value = nn.Dense(1, kernel_init=orth(1.0))(x)[..., 0]
        return logits, value


def _action_logp(logits: jax.Array, action: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), -1)[..., 0]


def _entropy(logits: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(logp) * logp, -1)


class IMPALA(PopulationAgent):
    """Population IMPALA (V-trace) on one discrete-action :class:`~gpbt.rl.envs.Env`."""

    hyperparameter_names: tuple[str, ...] = _HPS

    def __init__(self, env: Env, config: IMPALAConfig | None = None) -> None:
        if not env.discrete:
            raise ValueError(
                f"IMPALA here supports discrete actions only (Atari, MinAtar); {env.name} has "
                "continuous actions: use agent = 'ppo'"
            )
        self.env = env
        self.config = cfg = config or IMPALAConfig()
        self.obs_shape = tuple(env.obs_shape)
        self.num_actions = int(env.num_actions)
        if cfg.torso != "mlp" and len(self.obs_shape) != 3:
            raise ValueError(
                f"torso={cfg.torso!r} needs image observations [H, W, C]; {env.name} has "
                f"shape {self.obs_shape}: use torso='mlp'"
            )
        self.network = Network(cfg.torso, cfg.hidden_sizes, self.num_actions, self.obs_shape)
        self.batch_size = self.max_update_steps = cfg.num_envs * cfg.unroll_length
        self.compile_count = 0
        self._params_jit = jax.jit(self._init_params)
        self._init_jit = jax.jit(jax.vmap(self._init_member))
        self._compile_entry_points()

    # ----------------------------------------------------------------------------------------
    # Hyperparameters
    # ----------------------------------------------------------------------------------------

    def default_hyperparameters(self) -> dict[str, float]:
        """The IMPALA paper's Atari settings (lr 6e-4, RMSProp eps 0.01, entropy 0.01, ...)."""
        return dict(lr=6e-4, rms_eps=0.01, ent_coef=0.01, gamma=0.99, rho_bar=1.0, c_bar=1.0,
                    vf_coef=0.5, max_grad_norm=40.0)  # fmt: skip

    def hyperparameter_bounds(self) -> dict[str, tuple[float, float]]:
        """Allowed ``[low, high]`` of every hyperparameter."""
        return {
            "lr": (0.0, 1.0),
            # > 0: with a zero-initialised mean square, eps = 0 would divide 0 by 0.
            "rms_eps": (1e-12, 10.0),
            "ent_coef": (0.0, 1.0),
            "gamma": (0.0, 1.0),
            "rho_bar": (0.0, 1e6),
            "c_bar": (0.0, 1e6),
            "vf_coef": (0.0, 100.0),
            "max_grad_norm": (0.0, 1e9),
        }

    def effective_hyperparameters(self, config: Mapping[str, Any]) -> dict[str, float]:
        """The values a member really trains with: defaults filled in, each one checked."""
        return {**self.default_hyperparameters(), **self._checked_values(config)}

    # ----------------------------------------------------------------------------------------
    # Init / gather
    # ----------------------------------------------------------------------------------------

    def _init_member(self, key: jax.Array, params: Any) -> MemberState:
        cfg = self.config
        _, k_env, k_rng = jax.random.split(key, 3)
        obs, env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, cfg.num_envs))
        past = None
        if cfg.actor_lag:
            # Every slot starts as the initial parameters: the first actor_lag batches are
            # collected with them, as actors that have not yet fetched an update would.
            past = jax.tree.map(lambda p: jnp.broadcast_to(p, (cfg.actor_lag,) + p.shape), params)
        return MemberState(
            params=params,
            rms=jax.tree.map(lambda p: jnp.full_like(p, cfg.rms_initial_scale), params),
            past_params=past,
            env_state=env_state,
            obs=obs,
            ep_return=jnp.zeros(cfg.num_envs),
            rng=jax.random.key_data(k_rng),
            total_env_steps=jnp.zeros((), jnp.int32),
            total_updates=jnp.zeros((), jnp.int32),
        )

    def _init_params(self, key: jax.Array) -> Any:
        k_net = jax.random.split(key, 3)[0]
        return self.network.init(k_net, jnp.zeros((1,) + self.obs_shape))

    def init(self, key: Any, population: int) -> MemberState:
        """A population of ``population`` members, each from its own split of ``key``."""
        if int(population) < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        keys = jax.random.split(as_key(key), int(population))
        # Network parameters member by member (one compiled init, called P times): the
        # orthogonal initialiser's QR decompositions, vmapped over members, reproducibly
        # deadlock XLA's CPU runtime on this machine (jax 0.10.2, 2 cores: all threads parked
        # in futex waits, 0% CPU), while the unbatched init is fine and costs milliseconds.
        per_member = [self._params_jit(k) for k in keys]
        params = jax.tree.map(lambda *xs: jnp.stack(xs), *per_member)
        return self._init_jit(keys, params)

    def actor_params(self, m: MemberState) -> Any:
        """The parameters one member acts with in its next update (learner's, ``actor_lag``
        updates ago). Works on a single member's state; vmap it for a population."""
        lag = self.config.actor_lag
        if not lag:
            return m.params
        slot = m.total_updates % lag
        return jax.tree.map(lambda r: r[slot], m.past_params)

    # ----------------------------------------------------------------------------------------
    # Policy
    # ----------------------------------------------------------------------------------------

    def _apply(self, params: Any, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.network.apply(params, obs * self.config.obs_scale)

    def _act_impl(self, state: MemberState, obs: jax.Array, key: jax.Array, greedy: bool):
        def one(member: MemberState, o: jax.Array) -> jax.Array:
            logits, _ = self._apply(member.params, o)
            return jnp.argmax(logits, -1) if greedy else jax.random.categorical(key, logits)

        return jax.vmap(one)(state, obs)

    # ----------------------------------------------------------------------------------------
    # Acting
    # ----------------------------------------------------------------------------------------

    def _member_step(self, m: MemberState, actor: Any):
        """One step of every env of one member with the actor's parameters."""
        cfg = self.config
        rng, k_act, k_env = jax.random.split(jax.random.wrap_key_data(m.rng), 3)
        logits, _ = self._apply(actor, m.obs)
        action = jax.random.categorical(k_act, logits)
        next_obs, env_state, reward, done, info = jax.vmap(self.env.step)(
            jax.random.split(k_env, cfg.num_envs), m.env_state, action
        )
        ep_return = m.ep_return + reward
        if cfg.reward_clip > 0:
            reward = jnp.clip(reward, -cfg.reward_clip, cfg.reward_clip)
        transition = {
            "obs": m.obs,
            "action": action,
            "behaviour_logp": _action_logp(logits, action),
            "reward": reward,
            "done": done.astype(jnp.float32),
        }
        m = m.replace(
            env_state=env_state,
            obs=next_obs,
            ep_return=jnp.where(done, 0.0, ep_return),
            rng=jax.random.key_data(rng),
        )
        ep_sum = jnp.sum(jnp.where(done, ep_return, 0.0))
        return MemberStep(
            m, transition, info["final_obs"], info["truncated"], ep_sum, jnp.sum(done)
        )

    def _collect(self, state: MemberState, actors: Any, hp: dict):
        """``unroll_length`` steps of the whole population -> batch ``[P, T, E, ...]``."""
        cfg = self.config
        return collect_rollout(
            self._member_step,
            state,
            cfg.unroll_length,
            actors,
            truncation_value=self._learner_value if cfg.bootstrap_truncation else None,
            gamma=hp["gamma"],
        )

    def _learner_value(self, m: MemberState, obs: jax.Array) -> jax.Array:
        """What a truncated step bootstraps with: the value under the learner's parameters, the
        ones this batch's update will use (the step's discount is 0, so V-trace then sees
        exactly the bootstrapped TD error)."""
        return self._apply(m.params, obs)[1]

    # ----------------------------------------------------------------------------------------
    # Learning
    # ----------------------------------------------------------------------------------------

    def _loss(self, params: Any, batch: dict, last_obs: jax.Array, hp: dict):
        cfg = self.config
        # One pass over the T unrolled observations and the one after them (bootstrap).
        obs = jnp.concatenate([batch["obs"], last_obs[None]], 0)
        logits, values = self._apply(params, obs)
        logits, bootstrap, values = logits[:-1], values[-1], values[:-1]
        logp = _action_logp(logits, batch["action"])
        log_rhos = logp - batch["behaviour_logp"]
        discounts = hp["gamma"] * (1.0 - batch["done"])
        vs, pg_adv = vtrace_targets(
            log_rhos, discounts, batch["reward"], values, bootstrap, hp["rho_bar"], hp["c_bar"]
        )
        reduce = jnp.sum if cfg.loss_reduction == "sum" else jnp.mean
        pg_terms = -logp * pg_adv
        v_terms = 0.5 * (vs - values) ** 2
        ent_terms = _entropy(logits)
        loss = (
            reduce(pg_terms) + hp["vf_coef"] * reduce(v_terms) - hp["ent_coef"] * reduce(ent_terms)
        )
        rhos = jnp.exp(log_rhos)
        aux = jnp.stack(
            [
                pg_terms.mean(),
                v_terms.mean(),
                ent_terms.mean(),
                rhos.mean(),
                (rhos > hp["rho_bar"]).mean(),
                jnp.abs(log_rhos).mean(),
            ]
        )
        return loss, jax.lax.stop_gradient(aux)

    def _learn_member(self, m: MemberState, batch: dict, hp: dict):
        """One V-trace update of one member on its batch, then the actor ring advances."""
        cfg = self.config
        grads, aux = jax.grad(self._loss, has_aux=True)(m.params, batch, m.obs, hp)
        norm = optax.tree.norm(grads)
        scale = jnp.minimum(1.0, hp["max_grad_norm"] / (norm + 1e-6))
        grads = jax.tree.map(lambda g: g * scale, grads)
        # RMSProp without momentum (IMPALA's), epsilon inside the square root (TF's form).
        d = cfg.rms_decay
        rms = jax.tree.map(lambda s, g: d * s + (1.0 - d) * g * g, m.rms, grads)
        params = jax.tree.map(
            lambda p, g, s: p - hp["lr"] * g * jax.lax.rsqrt(s + hp["rms_eps"]),
            m.params,
            grads,
            rms,
        )
        past = m.past_params
        if cfg.actor_lag:
            # The slot just read held the parameters of update u - lag; it now gets those of
            # update u (the ones this update started from), to be read at update u + lag.
            slot = m.total_updates % cfg.actor_lag
            past = jax.tree.map(lambda r, p: r.at[slot].set(p), past, m.params)
        new_m = m.replace(
            params=params, rms=rms, past_params=past, total_updates=m.total_updates + 1
        )
        return new_m, aux

    # ----------------------------------------------------------------------------------------
    # Train
    # ----------------------------------------------------------------------------------------

    def train(self, state: MemberState, hp: Any, env_steps_per_member: Any):
        budget = np.asarray(env_steps_per_member)
        if budget.ndim and np.any(budget != budget.flat[0]):
            # Every member has the same static batch and so always the same env-step count:
            # a per-member budget can only differ by a caller's mistake.
            raise ValueError(
                "IMPALA members update in lockstep (one static batch size), so their "
                f"env-step budgets must be equal, got {budget.tolist()}"
            )
        return super().train(state, hp, budget)

    def _train_impl(self, state: MemberState, hp: dict, budget: jax.Array):
        self.compile_count += 1  # runs only while tracing, i.e. once per compilation
        population = state.total_env_steps.shape[0]
        # The budgets are equal (checked in train); one trip count for the whole population.
        n_updates = (budget[0] + self.batch_size - 1) // self.batch_size

        def update(c):
            # Collect with the lagged actors, then learn: the V-trace targets are computed
            # inside the loss, from the same forward pass of the learner's parameters.
            st = c["state"]
            actors = jax.vmap(self.actor_params)(st)
            st, batch, ep_sum, ep_cnt = self._collect(st, actors, hp)
            st, aux = jax.vmap(self._learn_member)(st, batch, hp)
            return {
                "state": st,
                "i": c["i"] + 1,
                "ep_sum": c["ep_sum"] + ep_sum,
                "ep_cnt": c["ep_cnt"] + ep_cnt,
                "aux": c["aux"] + aux,
            }

        init = {
            "state": state,
            "i": jnp.zeros((), jnp.int32),
            "ep_sum": jnp.zeros(population),
            "ep_cnt": jnp.zeros(population, jnp.int32),
            "aux": jnp.zeros((population, len(_METRIC_NAMES))),
        }
        c = jax.lax.while_loop(lambda c: c["i"] < n_updates, update, init)
        n = jnp.where(n_updates > 0, n_updates, jnp.nan).astype(jnp.float32)
        aux = c["aux"] / n
        metrics = {
            "episode_return": c["ep_sum"] / jnp.where(c["ep_cnt"] > 0, c["ep_cnt"], jnp.nan),
            "episodes": c["ep_cnt"],
            "env_steps": jnp.full(population, n_updates * self.batch_size, jnp.int32),
            "total_env_steps": c["state"].total_env_steps,
            "updates": jnp.full(population, n_updates, jnp.int32),
            **{name: aux[:, i] for i, name in enumerate(_METRIC_NAMES)},
        }
        return c["state"], metrics

    # ----------------------------------------------------------------------------------------
    # Evaluate
    # ----------------------------------------------------------------------------------------

    def _eval_action(self, m: MemberState, obs: jax.Array, key: jax.Array) -> jax.Array:
        # The learner's parameters; sampled actions unless eval_greedy (see the module notes).
        logits, _ = self._apply(m.params, obs)
        if self.config.eval_greedy:
            return jnp.argmax(logits, -1)
        return jax.random.categorical(key, logits)
