"""The shared rollout and returns module (gpbt.rl.rollout) against hand-computed numbers:
V-trace, GAE and the truncation bootstrap."""

import jax.numpy as jnp
import numpy as np

from gpbt.rl.rollout import vtrace_targets

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
