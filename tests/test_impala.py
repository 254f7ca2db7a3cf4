"""IMPALA: the actor lag, exploit via gather, and learning MinAtar Breakout beyond a random
policy (the V-trace targets themselves are tested in test_rollout.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpbt.rl.envs import make_env
from gpbt.rl.impala import IMPALA, IMPALAConfig

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

# ---------------------------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------------------------

SMALL = dict(num_envs=4, unroll_length=5, hidden_sizes=(32,))


@pytest.fixture(scope="module")
def breakout():
    return make_env("breakout")


def test_lag_zero_is_on_policy_and_lag_makes_it_off_policy(breakout):
    on = IMPALA(breakout, IMPALAConfig(actor_lag=0, **SMALL))
    hp = on.hyperparameters_to_arrays([{"lr": 3e-3}] * 2)
    st, m = on.train(on.init(jax.random.key(0), 2), hp, 20 * 6)
    # Behaviour = target policy: every importance weight is 1 up to float rounding.
    assert np.all(np.asarray(m["abs_log_rho"]) < 1e-5)
    np.testing.assert_allclose(m["importance_weight"], 1.0, atol=1e-5)
    off = IMPALA(breakout, IMPALAConfig(actor_lag=2, **SMALL))
    st, m = off.train(off.init(jax.random.key(0), 2), hp, 20 * 6)
    assert np.all(np.asarray(m["abs_log_rho"]) > 1e-4)


def test_actor_lag_ring_serves_parameters_from_lag_updates_ago(breakout):
    lag = 2
    agent = IMPALA(breakout, IMPALAConfig(actor_lag=lag, **SMALL))
    st = agent.init(jax.random.key(1), 2)
    hp = agent.hyperparameters_to_arrays([{"lr": 1e-2}] * 2)
    history = [st.params]  # learner parameters before update u
    actors = [jax.vmap(agent.actor_params)(st)]  # parameters update u acts with
    for _ in range(5):
        st, m = agent.train(st, hp, agent.batch_size)
        assert list(np.asarray(m["updates"])) == [1, 1]
        history.append(st.params)
        actors.append(jax.vmap(agent.actor_params)(st))
    for u, actor in enumerate(actors):
        want = history[max(u - lag, 0)]
        jax.tree.map(np.testing.assert_array_equal, actor, want)
    np.testing.assert_array_equal(st.total_env_steps, [5 * agent.batch_size] * 2)


def test_exploit_copies_state_and_new_hyperparameters_apply(breakout):
    agent = IMPALA(breakout, IMPALAConfig(actor_lag=1, **SMALL))
    st = agent.init(jax.random.key(2), 3)
    hp = agent.hyperparameters_to_arrays([{"lr": 1e-3}, {"lr": 2e-3}, {"lr": 3e-3}])
    st, _ = agent.train(st, hp, 40)
    copied = agent.gather(st, [0, 1, 1])
    no_rng = (copied.replace(rng=None), st.replace(rng=None))
    for leaf, src in zip(*map(jax.tree.leaves, no_rng), strict=True):
        np.testing.assert_array_equal(leaf[2], src[1])
        np.testing.assert_array_equal(leaf[0], src[0])
    # the copy acts from a random stream of its own
    np.testing.assert_array_equal(copied.rng[:2], st.rng[:2])
    assert not np.array_equal(copied.rng[2], st.rng[1])
    # Members 1 and 2 are identical now; only member 2's learning rate changes (to 0): it must
    # keep its learner parameters while member 1 moves, and no recompilation may happen.
    compiles = agent.compile_count
    hp2 = agent.hyperparameters_to_arrays([{"lr": 1e-3}, {"lr": 2e-3}, {"lr": 0.0}])
    after, _ = agent.train(copied, hp2, 20)
    assert agent.compile_count == compiles
    jax.tree.map(np.testing.assert_array_equal, _member(after.params, 2), _member(copied.params, 2))
    moved = jax.tree.map(
        lambda a, b: float(jnp.abs(a[1] - b[1]).max()), after.params, copied.params
    )
    assert max(jax.tree.leaves(moved)) > 0


def test_rmsprop_starts_its_mean_square_at_one_as_tf(breakout):
    # TF 1's RMSProp (IMPALA's, RLlib-TF's): ms starts at 1, ms' = 0.99 ms + 0.01 g^2,
    # p' = p - lr g / sqrt(ms' + eps). Started at 0 the first steps are ~sign(g) * 10 lr.
    agent = IMPALA(breakout, IMPALAConfig(**SMALL))
    st = agent.init(jax.random.key(4), 1)
    assert all(np.all(np.asarray(x) == 1.0) for x in jax.tree.leaves(st.rms))
    lr, eps = 1e-3, 0.01
    hp = agent.hyperparameters_to_arrays([{"lr": lr, "rms_eps": eps}])
    after, _ = agent.train(st, hp, agent.batch_size)
    for ms, p0, p1 in zip(
        jax.tree.leaves(after.rms),
        jax.tree.leaves(st.params),
        jax.tree.leaves(after.params),
        strict=True,
    ):
        ms = np.asarray(ms, np.float64)
        assert ms.min() >= 0.99 - 1e-6
        # abs(g) from the float32 mean square, good to about 3e-3
        g = np.sqrt(np.maximum(ms - 0.99, 0.0) / 0.01)
        step = np.abs(np.asarray(p1, np.float64) - np.asarray(p0, np.float64))
        np.testing.assert_allclose(step, lr * g / np.sqrt(ms + eps), rtol=2e-2, atol=5e-6)
        assert step.max() < 5 * lr  # no sign-like first step


def _member(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def test_hyperparameter_validation(breakout):
    agent = IMPALA(breakout, IMPALAConfig(**SMALL))
    with pytest.raises(ValueError, match="budgets must be equal, got \\[640, 1280\\]"):
        agent.train(agent.init(jax.random.key(0), 2), [{}, {}], [640, 1280])
    assert set(agent.hyperparameter_names) >= {
        "lr",
        "rms_eps",
        "ent_coef",
        "gamma",
        "rho_bar",
        "c_bar",
    }
    with pytest.raises(ValueError, match="rms_eps"):
        agent.hyperparameters_to_arrays([{"rms_eps": -1.0}])
    with pytest.raises(ValueError, match="unknown"):
        agent.hyperparameters_to_arrays([{"clip": 0.2}])
    with pytest.raises(ValueError, match="discrete"):
        IMPALA(make_env("pendulum"))


@pytest.mark.parametrize(
    "game, torso",
    [("breakout", "conv"), ("spaceinvaders", "mlp"), ("asterix", "mlp"), ("freeway", "mlp")],
)
def test_every_minatar_game_trains(game, torso):
    agent = IMPALA(make_env(game), IMPALAConfig(torso=torso, **SMALL))
    st, m = agent.train(agent.init(jax.random.key(3), 2), [{}, {"lr": 1e-3}], 40)
    assert np.all(np.isfinite(np.asarray(m["policy_loss"])))
    np.testing.assert_array_equal(st.total_env_steps, [40, 40])


@pytest.mark.slow
def test_learns_minatar_breakout_beyond_random(breakout):
    # Default network and sizes (actor lag 2, so V-trace is correcting all along); two seeds.
    agent = IMPALA(breakout)
    st = agent.init(jax.random.key(0), 2)
    hp = agent.hyperparameters_to_arrays([{"lr": 3e-3}] * 2)
    random_return = float(np.mean(agent.evaluate(st, jax.random.key(7), 32)))
    st, m = agent.train(st, hp, 500_000)
    trained = np.asarray(agent.evaluate(st, jax.random.key(7), 32))
    # An untrained (near-uniform) policy scores about 0.5 on MinAtar Breakout; these runs
    # reach about 4 after 500k steps.
    assert random_return < 1.5
    assert np.all(trained > max(2.0, 2 * random_return)), (random_return, trained)
    assert np.all(np.asarray(m["rho_clipped_fraction"]) > 0)
