"""The shared rollout and returns module (gpbt.rl.rollout) against hand-computed numbers:
V-trace, GAE and the truncation bootstrap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from gpbt.rl.rollout import (
    MemberStep,
    bootstrap_truncated,
    collect_rollout,
    gae_advantages,
    select_members,
    vtrace_targets,
)

# ---------------------------------------------------------------------------------------------
# V-trace targets
# ---------------------------------------------------------------------------------------------


def test_vtrace_hand_example_with_truncation():
    # Three steps, one trajectory. pi/mu = 2.0, 0.5, 1.5; rho_bar = 1.2 truncates steps 0 and
    # 2 in the TD errors, c_bar = 0.8 truncates the traces of steps 0 and 2 (and 1 is 0.5).
    rhos = np.array([2.0, 0.5, 1.5])
    gamma = 0.9
    r = np.array([1.0, 0.0, 2.0])
    v = np.array([0.5, 1.0, -1.0])
    boot = 3.0
    vs, adv = vtrace_targets(
        jnp.log(rhos), jnp.full(3, gamma), r, v, jnp.asarray(boot), rho_bar=1.2, c_bar=0.8
    )
    # By hand, from the definition (not the recursion):
    # delta_s = min(1.2, rho_s) (r_s + gamma V(x_{s+1}) - V(x_s))
    d0 = 1.2 * (1.0 + 0.9 * 1.0 - 0.5)  # = 1.68
    d1 = 0.5 * (0.0 + 0.9 * -1.0 - 1.0)  # = -0.95
    d2 = 1.2 * (2.0 + 0.9 * 3.0 - -1.0)  # = 6.84
    c0, c1 = 0.8, 0.5  # min(c_bar, rho)
    v2 = -1.0 + d2
    v1 = 1.0 + d1 + 0.9 * c1 * d2
    v0 = 0.5 + d0 + 0.9 * c0 * d1 + 0.9**2 * c0 * c1 * d2
    np.testing.assert_allclose(vs, [v0, v1, v2], rtol=1e-6)
    # Policy-gradient advantages: min(rho_bar, rho_s) (r_s + gamma v_{s+1} - V(x_s)).
    a0 = 1.2 * (1.0 + 0.9 * v1 - 0.5)
    a1 = 0.5 * (0.0 + 0.9 * v2 - 1.0)
    a2 = 1.2 * (2.0 + 0.9 * boot + 1.0)
    np.testing.assert_allclose(adv, [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose([v0, v1, v2], [3.71216, 3.128, 5.84], atol=1e-5)


def _n_step_returns(r, discounts, boot):
    g = boot
    out = np.zeros_like(r)
    for t in reversed(range(len(r))):
        g = r[t] + discounts[t] * g
        out[t] = g
    return out


def test_vtrace_on_policy_is_n_step_actor_critic():
    # rho = 1 everywhere (lag 0): v_s is the n-step bootstrapped return to the end of the
    # unroll (cut at episode ends) and the advantage is that return minus V(x_s).
    rng = np.random.default_rng(0)
    t_len, batch = 7, 5
    r = rng.normal(size=(t_len, batch)).astype(np.float32)
    v = rng.normal(size=(t_len, batch)).astype(np.float32)
    boot = rng.normal(size=batch).astype(np.float32)
    done = rng.uniform(size=(t_len, batch)) < 0.2
    disc = (0.97 * (1 - done)).astype(np.float32)
    vs, adv = vtrace_targets(np.zeros_like(r), disc, r, v, boot, rho_bar=1.0, c_bar=1.0)
    want = np.stack([_n_step_returns(r[:, b], disc[:, b], boot[b]) for b in range(batch)], 1)
    np.testing.assert_allclose(vs, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, want - v, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# GAE
# ---------------------------------------------------------------------------------------------


def test_gae_hand_example_with_episode_end():
    # Three steps of one env; the episode ends after step 1, so step 1 neither bootstraps from
    # V(x_2) nor passes step 2's advantage back. gamma = 0.9, lambda = 0.8.
    r = jnp.array([[1.0], [0.0], [2.0]])
    v = jnp.array([[0.5], [1.0], [-1.0]])
    done = jnp.array([[0.0], [1.0], [0.0]])
    adv, target = gae_advantages(r, v, done, jnp.array([3.0]), 0.9, 0.8, 3)
    # delta_2 = 2 + 0.9 * 3 + 1 = 5.7; delta_1 = 0 - 1 = -1; delta_0 = 1 + 0.9 * 1 - 0.5 = 1.4
    # A_2 = 5.7; A_1 = -1 (episode ended); A_0 = 1.4 + 0.72 * -1 = 0.68
    np.testing.assert_allclose(adv[:, 0], [0.68, -1.0, 5.7], rtol=1e-6)
    np.testing.assert_allclose(target[:, 0], [1.18, 0.0, 4.7], rtol=1e-6)


def test_gae_uses_only_the_rollout_prefix():
    # A buffer of 3 rows holding a rollout of 2: the value after row 1 is last_value (not
    # V(x_2), a stale row), and row 2 gets no advantage (its target is its value).
    r = jnp.array([[1.0], [0.0], [2.0]])
    v = jnp.array([[0.5], [1.0], [-1.0]])
    adv, target = gae_advantages(r, v, jnp.zeros((3, 1)), jnp.array([3.0]), 0.9, 0.8, 2)
    # delta_1 = 0 + 0.9 * 3 - 1 = 1.7; delta_0 = 1.4; A_0 = 1.4 + 0.72 * 1.7 = 2.624
    np.testing.assert_allclose(adv[:, 0], [2.624, 1.7, 0.0], rtol=1e-6)
    np.testing.assert_allclose(target[:, 0], [3.124, 2.7, -1.0], rtol=1e-6)


def test_gae_with_lambda_one_is_the_n_step_return_vtrace_gives_on_policy():
    # Two return estimators that must agree: GAE(lambda = 1) targets and on-policy V-trace
    # targets are both the bootstrapped discounted return to the end of the rollout.
    rng = np.random.default_rng(1)
    t_len, batch = 6, 3
    r = rng.normal(size=(t_len, batch)).astype(np.float32)
    v = rng.normal(size=(t_len, batch)).astype(np.float32)
    boot = rng.normal(size=batch).astype(np.float32)
    done = (rng.uniform(size=(t_len, batch)) < 0.3).astype(np.float32)
    adv, target = gae_advantages(r, v, done, boot, 0.95, 1.0, t_len)
    vs, _ = vtrace_targets(np.zeros_like(r), 0.95 * (1 - done), r, v, boot)
    want = np.stack(
        [_n_step_returns(r[:, b], 0.95 * (1 - done[:, b]), boot[b]) for b in range(3)], 1
    )
    np.testing.assert_allclose(target, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target, vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, want - v, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Truncation bootstrap
# ---------------------------------------------------------------------------------------------


def test_bootstrap_truncated_adds_discounted_final_value_to_cut_steps_only():
    reward = jnp.array([[1.0, 2.0], [3.0, 4.0]])  # [P=2, E=2]
    truncated = jnp.array([[False, True], [False, False]])
    gamma = jnp.array([0.9, 0.5])
    final_v = jnp.array([[10.0, 20.0], [30.0, 40.0]])
    out = bootstrap_truncated(reward, truncated, gamma, lambda: final_v, jnp.any(truncated))
    np.testing.assert_allclose(out, [[1.0, 2.0 + 0.9 * 20.0], [3.0, 4.0]], rtol=1e-6)
    # The critic pass is skipped when the caller says nothing relevant was cut.
    skipped = bootstrap_truncated(reward, truncated, gamma, lambda: final_v, jnp.array(False))
    np.testing.assert_array_equal(skipped, reward)


# ---------------------------------------------------------------------------------------------
# The population rollout
# ---------------------------------------------------------------------------------------------


@struct.dataclass
class Counter:
    """A toy member: E = 2 envs whose episodes a time limit cuts after `limit` steps."""

    t: jax.Array  # [E] steps into the current episode
    total_env_steps: jax.Array


def counter_step(m: Counter, limit: jax.Array) -> MemberStep:
    t = m.t + 1
    cut = t >= limit
    transition = {"reward": jnp.ones(2), "t": t}
    # Reward 1 per step, so an episode's return is its length; the final obs is that length.
    return MemberStep(
        m.replace(t=jnp.where(cut, 0, t)),
        transition,
        t.astype(jnp.float32),
        cut,
        jnp.sum(jnp.where(cut, t, 0)).astype(jnp.float32),
        jnp.sum(cut),
    )


def counter_population():
    # Three members, env 1 of each one step ahead of env 0; member 2 will sit out.
    t0 = jnp.array([[0, 1], [0, 1], [0, 1]])
    return Counter(t=t0, total_env_steps=jnp.array([5, 5, 5], jnp.int32))


def test_collect_rollout_bootstraps_counts_and_freezes_inactive_members():
    state = counter_population()
    limit = jnp.array([2, 3, 1])
    out = collect_rollout(
        counter_step,
        state,
        4,
        limit,
        truncation_value=lambda m, final_obs: 100.0 + final_obs,
        gamma=jnp.array([0.5, 0.9, 0.7]),
        active=jnp.array([True, True, False]),
    )
    assert out.batch["reward"].shape == (3, 4, 2)  # [P, T, E]
    cut0, cut1 = 1.0 + 0.5 * 102.0, 1.0 + 0.9 * 103.0  # reward + gamma * V(final obs)
    np.testing.assert_allclose(
        out.batch["reward"][0], [[1.0, cut0], [cut0, 1.0], [1.0, cut0], [cut0, 1.0]], rtol=1e-6
    )
    np.testing.assert_allclose(
        out.batch["reward"][1], [[1.0, 1.0], [1.0, cut1], [cut1, 1.0], [1.0, 1.0]], rtol=1e-6
    )
    np.testing.assert_array_equal(out.batch["t"][1], [[1, 2], [2, 3], [3, 1], [1, 2]])
    np.testing.assert_array_equal(out.state.t, [[0, 1], [1, 2], [0, 1]])
    np.testing.assert_array_equal(out.state.total_env_steps, [13, 13, 5])  # + 4 steps x 2 envs
    np.testing.assert_array_equal(out.episodes, [4, 2, 0])
    np.testing.assert_allclose(out.episode_return_sum, [8.0, 6.0, 0.0])


def test_collect_rollout_without_a_value_treats_cuts_as_terminations():
    out = collect_rollout(counter_step, counter_population(), 3, jnp.array([2, 3, 1]))
    np.testing.assert_array_equal(out.batch["reward"], np.ones((3, 3, 2)))
    np.testing.assert_array_equal(out.episodes, [3, 2, 6])
    np.testing.assert_array_equal(out.state.total_env_steps, [11, 11, 11])
    with pytest.raises(ValueError, match="truncation_value needs gamma"):
        collect_rollout(
            counter_step, counter_population(), 3, jnp.array([2, 3, 1]),
            truncation_value=lambda m, o: o,
        )  # fmt: skip


def test_select_members_takes_each_member_from_one_side():
    new = {"w": jnp.ones((3, 2)), "b": jnp.full(3, 7)}
    old = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(3, jnp.int32)}
    out = select_members(jnp.array([True, False, True]), new, old)
    np.testing.assert_array_equal(out["w"], [[1, 1], [0, 0], [1, 1]])
    np.testing.assert_array_equal(out["b"], [7, 0, 7])
