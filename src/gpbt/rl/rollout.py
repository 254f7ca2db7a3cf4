"""The population's rollout bookkeeping and return targets, shared by the built-in agents.

An agent in the style of PPO and IMPALA (members stacked on a leading ``[P]`` axis, trained in one
jitted program) writes its network, one member's env step and its loss. What every such agent
would otherwise copy lives here, written and tested once:

* :func:`collect_rollout`: ``num_steps`` env steps of the whole population in one ``lax.scan``.
  The agent gives one member's step (returning a :class:`MemberStep`); it gets back a
  :class:`Rollout`: the new state, the batch as ``[P, T, E, ...]`` arrays, and per member the sum
  and count of the episodes that ended. Along the way it adds the truncation bootstrap to the
  rewards, counts ``total_env_steps``, and, given an ``active`` mask, leaves the members that are
  not collecting exactly as they were.
* :func:`bootstrap_truncated`: add ``gamma * V(final observation)`` to the reward of a step a time
  limit cut, running the extra critic pass only when some member's env was cut.
* :func:`gae_advantages`: generalised advantage estimates and value targets (PPO's), over the
  first ``steps`` rows of a time-major rollout.
* :func:`vtrace_targets`: V-trace value targets and policy-gradient advantages (IMPALA's), whose
  on-policy limit is the n-step bootstrapped return.
* :func:`select_members`: member ``i`` from one population state or another (masking members
  that sit out a phase).

The return functions take one member's time-major arrays ``[T, ...]`` (any trailing batch
shape); ``jax.vmap`` them over members. A training step then reads collect -> targets -> update:
``collect_rollout``, then ``gae_advantages`` or ``vtrace_targets``, then the agent's own loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "MemberStep",
    "Rollout",
    "bootstrap_truncated",
    "collect_rollout",
    "gae_advantages",
    "select_members",
    "vtrace_targets",
]


class MemberStep(NamedTuple):
    """One env step of one member's ``E`` parallel envs, as a member step function returns it."""

    state: Any  # the member's state after the step
    transition: dict[str, jax.Array]  # what the batch keeps, leaves [E, ...]; needs "reward"
    final_obs: jax.Array  # [E, ...] the observation that ended each episode, as the value takes it
    truncated: jax.Array  # [E] bool: a time limit, not the task, ended the episode
    episode_return_sum: jax.Array  # the summed returns of the episodes that ended at this step
    episodes: jax.Array  # how many ended


class Rollout(NamedTuple):
    """What :func:`collect_rollout` gives back for the population."""

    state: Any  # every member's state after the rollout
    batch: dict[str, jax.Array]  # the transitions, [P, T, E, ...]
    episode_return_sum: jax.Array  # [P] summed returns of the episodes that ended
    episodes: jax.Array  # [P] int32, how many ended


def select_members(pred: jax.Array, new: Any, old: Any) -> Any:
    """Member ``i`` of ``new`` where ``pred[i]``, else member ``i`` of ``old`` (pytrees whose
    leaves have a leading ``[P]`` axis, ``pred`` ``[P]`` bool)."""
    return jax.vmap(lambda p, n, o: jax.tree.map(lambda a, b: jnp.where(p, a, b), n, o))(
        pred, new, old
    )


def collect_rollout(
    member_step: Callable[[Any, Any], MemberStep],
    state: Any,
    num_steps: int,
    member_args: Any = None,
    *,
    truncation_value: Callable[[Any, jax.Array], jax.Array] | None = None,
    gamma: jax.Array | None = None,
    active: jax.Array | None = None,
) -> Rollout:
    """``num_steps`` env steps of every member: ``member_step(member_state, member_args_i)``
    vmapped over the population, scanned over time.

    ``state`` holds every member (a ``flax.struct`` dataclass with a leading ``[P]`` axis and
    ``total_env_steps``, as `gpbt.rl.protocol` asks of every agent), and
    ``member_args`` is a pytree of ``[P]`` leaves handed to each member's step (its
    hyperparameters, the parameters it acts with). With ``truncation_value(member_state,
    final_obs) -> [E]`` (one member's value of the observations that ended its episodes, given
    its state after the step) the reward of a step a time limit cut gains ``gamma[i] *`` that
    value (:func:`bootstrap_truncated`); ``gamma`` is ``[P]``. Without it a truncation counts as
    a termination. ``active`` (``[P]`` bool) names the members that collect: the others come back
    unchanged, with no episodes and no env steps counted, and their truncations do not trigger
    the bootstrap's critic pass. Each collecting member's ``total_env_steps`` grows by
    ``num_steps * E``.
    """
    if truncation_value is not None and gamma is None:
        raise ValueError("collect_rollout: truncation_value needs gamma (the [P] discounts)")
    population = jax.tree.leaves(state)[0].shape[0]

    def step(carry, _):
        st, ep_sum, ep_cnt = carry
        st, tr, final_obs, truncated, d_sum, d_cnt = jax.vmap(member_step)(st, member_args)
        if truncation_value is not None:
            cut = truncated if active is None else truncated & active[:, None]
            tr["reward"] = bootstrap_truncated(
                tr["reward"],
                truncated,
                gamma,
                lambda: jax.vmap(truncation_value)(st, final_obs),
                jnp.any(cut),
            )
        return (st, ep_sum + d_sum, ep_cnt + d_cnt), tr

    init = (state, jnp.zeros(population), jnp.zeros(population, jnp.int32))
    (new_state, ep_sum, ep_cnt), batch = jax.lax.scan(step, init, None, length=num_steps)
    batch = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), batch)  # [T, P, ...] -> [P, T, ...]
    num_envs = batch["reward"].shape[2]
    new_state = new_state.replace(total_env_steps=new_state.total_env_steps + num_steps * num_envs)
    if active is None:
        return Rollout(new_state, batch, ep_sum, ep_cnt)
    new_state = select_members(active, new_state, state)
    return Rollout(new_state, batch, ep_sum * active, ep_cnt * active)


def bootstrap_truncated(
    reward: jax.Array,
    truncated: jax.Array,
    gamma: jax.Array,
    final_values: Callable[[], jax.Array],
    any_truncated: jax.Array,
) -> jax.Array:
    """Add gamma * V(final observation) to the rewards of steps a time limit cut: such an
    episode is not over, so its value must not be dropped. `reward` and `truncated` are
    [P, E], `gamma` [P]. Truncations are rare and happen on the same steps for the whole
    population, so the extra critic pass runs only when `any_truncated` (a population-level
    cond, not a per-member select)."""
    final_v = jax.lax.cond(
        any_truncated, lambda _: final_values(), lambda _: jnp.zeros_like(reward), None
    )
    return reward + jnp.where(truncated, gamma[:, None] * final_v, 0.0)


def gae_advantages(
    rewards: jax.Array,
    values: jax.Array,
    dones: jax.Array,
    last_value: jax.Array,
    gamma: jax.Array,
    lam: jax.Array,
    steps: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """GAE(gamma, lambda) advantages and value targets ``advantage + value`` of one rollout.

    ``rewards``, ``values`` (``V(x_t)``) and ``dones`` (1.0 where the episode ended after step
    ``t``) are time-major ``[T, B]``; ``last_value`` is ``V`` of the observation after the
    rollout, ``[B]``. Only the first ``steps`` rows (a traced int, at most ``T``) are the
    rollout: the value after row ``steps - 1`` is ``last_value``, and the backward pass runs
    ``steps`` iterations, so rows from ``steps`` on get advantage 0 (their targets are their
    values). With ``delta_t = r_t + gamma (1 - done_t) V(x_{t+1}) - V(x_t)``:

        A_t = delta_t + gamma lambda (1 - done_t) A_{t+1},   A_steps = 0.
    """
    rewards, values, dones, last_value = map(jnp.asarray, (rewards, values, dones, last_value))
    t_idx = jnp.arange(rewards.shape[0])
    next_v = jnp.concatenate([values[1:], last_value[None]], 0)
    next_v = jnp.where((t_idx == steps - 1)[:, None], last_value[None], next_v)
    not_done = 1.0 - dones
    delta = rewards + gamma * next_v * not_done - values

    # A data-dependent trip count: only this rollout's rows, not the whole buffer.
    def gae_step(i, carry):
        adv, last = carry
        t = steps - 1 - i
        a = delta[t] + gamma * lam * not_done[t] * last
        return jax.lax.dynamic_update_index_in_dim(adv, a, t, 0), a

    adv, _ = jax.lax.fori_loop(
        0, steps, gae_step, (jnp.zeros_like(delta), jnp.zeros(rewards.shape[1]))
    )
    return adv, adv + values


def vtrace_targets(
    log_rhos: jax.Array,
    discounts: jax.Array,
    rewards: jax.Array,
    values: jax.Array,
    bootstrap_value: jax.Array,
    rho_bar: float | jax.Array = 1.0,
    c_bar: float | jax.Array = 1.0,
    pg_rho_bar: float | jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """V-trace targets ``v_s`` and policy-gradient advantages (Espeholt et al. 2018, sec. 4).

    Time-major inputs ``[T, ...]`` (any trailing batch shape): ``log_rhos = log pi - log mu``
    of the actions taken, ``discounts = gamma * (1 - done)`` (0 where the episode ended after
    that step), ``rewards``, ``values = V(x_s)`` and ``bootstrap_value = V(x_T)`` (``[...]``).
    With ``rho_s = min(rho_bar, pi/mu)`` and ``c_i = min(c_bar, pi/mu)``:

        v_s - V(x_s) = rho_s delta_s + discount_s c_s (v_{s+1} - V(x_{s+1})),
        delta_s = r_s + discount_s V(x_{s+1}) - V(x_s),   v_T = V(x_T),
        advantage_s = min(pg_rho_bar, pi/mu) (r_s + discount_s v_{s+1} - V(x_s)).

    ``pg_rho_bar`` defaults to ``rho_bar``. With ``log_rhos = 0`` and both bars >= 1 this is the
    n-step bootstrapped return and the on-policy n-step advantage. No gradient flows through
    the result (targets are constants of the loss).
    """
    log_rhos, discounts, rewards, values, bootstrap_value = (
        jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
        for x in (log_rhos, discounts, rewards, values, bootstrap_value)
    )
    pg_rho_bar = rho_bar if pg_rho_bar is None else pg_rho_bar
    rhos = jnp.exp(log_rhos)
    clipped_rhos = jnp.minimum(rho_bar, rhos)
    cs = jnp.minimum(c_bar, rhos)
    next_values = jnp.concatenate([values[1:], bootstrap_value[None]], 0)
    deltas = clipped_rhos * (rewards + discounts * next_values - values)

    def backward(acc, x):
        delta, discount, c = x
        acc = delta + discount * c * acc
        return acc, acc

    _, vs_minus_v = jax.lax.scan(
        backward, jnp.zeros_like(bootstrap_value), (deltas, discounts, cs), reverse=True
    )
    vs = values + vs_minus_v
    next_vs = jnp.concatenate([vs[1:], bootstrap_value[None]], 0)
    pg_advantages = jnp.minimum(pg_rho_bar, rhos) * (rewards + discounts * next_vs - values)
    return vs, pg_advantages
