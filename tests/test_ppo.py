"""Population PPO: learning, exploit (gather), per-member hyperparameters, no recompilation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpbt.rl.envs import make_env
from gpbt.rl.ppo import PPO, PPOConfig

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

# A small static config for the mechanics tests: one compilation serves all of them. Obs and
# reward normalisation are switched on so that their state is exercised on a discrete env too.
SMALL = PPOConfig(
    num_envs=4,
    rollout_chunk=8,
    max_rollout_len=32,
    minibatch_unit=16,
    max_epochs=4,
    hidden_sizes=(16, 16),
    normalize_obs=True,
    normalize_reward=True,
)


def leaves_equal(a, b):
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def member(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


@pytest.fixture(scope="module")
def small():
    agent = PPO(make_env("CartPole-v1"), SMALL)
    state = agent.init(jax.random.key(0), 3)
    hp = agent.hyperparameters_to_arrays([{}] * 3)
    state, _ = agent.train(state, hp, 64)  # compile once for the whole module
    return agent, state


# ---------------------------------------------------------------------------------------------
# Hyperparameter handling
# ---------------------------------------------------------------------------------------------


def test_hyperparameter_names_and_defaults(small):
    agent, _ = small
    assert agent.hyperparameter_names == (
        "lr", "clip", "gae_lambda", "gamma", "ent_coef", "vf_coef", "max_grad_norm",
        "train_batch_size", "num_epochs", "minibatch_size",
    )  # fmt: skip
    defaults = agent.default_hyperparameters()
    assert set(defaults) == set(agent.hyperparameter_names)
    bounds = agent.hyperparameter_bounds()
    for name, value in defaults.items():
        lo, hi = bounds[name]
        assert lo <= value <= hi, name
    assert bounds["train_batch_size"] == (32.0, 128.0)  # num_envs * [chunk, max_rollout_len]


def test_hyperparameters_to_arrays(small):
    agent, _ = small
    hp = agent.hyperparameters_to_arrays(
        [
            {"lr": 0.01},
            {"train_batch_size": 70, "minibatch_size": 40},
            {"train_batch_size": 64, "minibatch_size": 128},
        ]
    )
    assert set(hp) == set(agent.hyperparameter_names)
    assert all(v.shape == (3,) for v in hp.values())
    assert hp["lr"].dtype == jnp.float32 and hp["num_epochs"].dtype == jnp.int32
    np.testing.assert_allclose(hp["lr"], [0.01, *[agent.default_hyperparameters()["lr"]] * 2])
    # Snapped to multiples of num_envs*rollout_chunk (32) and minibatch_unit (16).
    assert int(hp["train_batch_size"][1]) == 64 and int(hp["minibatch_size"][1]) == 48
    # A minibatch larger than the batch is cut to the batch.
    assert int(hp["minibatch_size"][2]) == 64


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ({"train_batch_size": 60000}, r"'train_batch_size'.*\[32, 128\]"),
        ({"minibatch_size": 8}, r"'minibatch_size'.*\[16, 128\]"),
        ({"num_epochs": 0}, r"'num_epochs'.*\[1, 4\]"),
        ({"gamma": 1.5}, r"'gamma'.*\[0, 1\]"),
        ({"lr": float("nan")}, r"'lr'"),
        ({"learning_rate": 1e-3}, r"unknown PPO hyperparameter.*learning_rate"),
    ],
)
def test_bad_hyperparameters_are_named(small, bad, pattern):
    agent, _ = small
    with pytest.raises(ValueError, match=pattern):
        agent.hyperparameters_to_arrays([bad])


@pytest.mark.parametrize("name", ["CartPole-v1", "Pendulum-v1", "Breakout-MinAtar"])
@pytest.mark.parametrize("config", [SMALL, PPOConfig()])
def test_defaults_are_valid_under_any_static_config(name, config):
    agent = PPO(make_env(name), config)  # building the agent compiles nothing
    hp = agent.hyperparameters_to_arrays([{}])
    assert int(hp["minibatch_size"][0]) <= int(hp["train_batch_size"][0])


def test_config_is_validated():
    with pytest.raises(ValueError, match="max_rollout_len"):
        PPOConfig(rollout_chunk=16, max_rollout_len=100)
    with pytest.raises(ValueError, match="minibatch_unit"):
        PPOConfig(num_envs=2, rollout_chunk=4, minibatch_unit=64)


# ---------------------------------------------------------------------------------------------
# State, budget, determinism
# ---------------------------------------------------------------------------------------------


def test_init_gives_distinct_members(small):
    agent, _ = small
    state = agent.init(jax.random.key(3), 3)
    for leaf in jax.tree.leaves(state):
        assert leaf.shape[0] == 3
    kernels = [x for x in jax.tree.leaves(state.params) if x.ndim == 3]
    assert not np.array_equal(kernels[0][0], kernels[0][1])


def test_env_steps_are_counted_honestly(small):
    agent, state = small
    hp = agent.hyperparameters_to_arrays(
        [{"train_batch_size": 32}, {"train_batch_size": 96}, {"train_batch_size": 128}]
    )
    before = np.asarray(state.total_env_steps)
    state, m = agent.train(state, hp, 100)
    # Whole updates: ceil(100 / batch) * batch env steps each.
    np.testing.assert_array_equal(m["env_steps"], [128, 192, 128])
    np.testing.assert_array_equal(m["updates"], [4, 2, 1])
    np.testing.assert_array_equal(np.asarray(state.total_env_steps) - before, m["env_steps"])
    np.testing.assert_array_equal(m["total_env_steps"], state.total_env_steps)
    state, m = agent.train(state, hp, 0)
    np.testing.assert_array_equal(m["env_steps"], [0, 0, 0])
    assert np.all(np.isnan(m["episode_return"])) and np.all(m["episodes"] == 0)


def test_episode_statistics(small):
    agent, state = small
    hp = agent.hyperparameters_to_arrays([{}] * 3)
    state, m = agent.train(state, hp, 512)
    assert np.all(m["episodes"] > 0)
    # CartPole pays 1 per step, so a finished episode has return in [1, 500].
    assert np.all((m["episode_return"] >= 1) & (m["episode_return"] <= 500))
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        assert m[name].shape == (3,) and np.all(np.isfinite(m[name])), name


def test_same_key_same_result(small):
    agent, _ = small
    hp = agent.hyperparameters_to_arrays([{}, {"lr": 3e-3}, {"num_epochs": 2}])
    runs = []
    for _ in range(2):
        state = agent.init(jax.random.key(11), 3)
        state, m = agent.train(state, hp, 128)
        runs.append((state, m, agent.evaluate(state, jax.random.key(5), 3)))
    assert leaves_equal(runs[0][0], runs[1][0])
    assert leaves_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    other = agent.init(jax.random.key(12), 3)
    assert not leaves_equal(runs[0][0].params, other.params)


# ---------------------------------------------------------------------------------------------
# Exploit and per-member hyperparameters
# ---------------------------------------------------------------------------------------------


def test_gather_copies_the_donors_full_state(small):
    agent, _ = small
    state = agent.init(jax.random.key(1), 3)
    hp = agent.hyperparameters_to_arrays([{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-2}])
    state, _ = agent.train(state, hp, 256)
    # The same observations for every member.
    obs = jnp.broadcast_to(jax.random.normal(jax.random.key(2), (64, 4)), (3, 64, 4))

    new = agent.gather(state, jnp.asarray([2, 1, 2]))  # member 0 loses to member 2
    # (all but the random stream: see the next test)
    assert leaves_equal(member(new, 0).replace(rng=None), member(state, 2).replace(rng=None))
    assert leaves_equal(member(new, 1), member(state, 1))
    np.testing.assert_array_equal(new.obs_stats.mean[0], state.obs_stats.mean[2])
    np.testing.assert_array_equal(new.obs_stats.var[0], state.obs_stats.var[2])
    np.testing.assert_array_equal(new.ret_stats.var[0], state.ret_stats.var[2])
    assert not np.array_equal(state.obs_stats.mean[0], state.obs_stats.mean[2])

    for greedy in (True, False):
        acts = agent.act(new, obs, jax.random.key(4), greedy=greedy)
        np.testing.assert_array_equal(acts[0], acts[2])


def test_a_copy_draws_from_its_own_random_stream_and_runs_stay_deterministic(small):
    agent, _ = small
    state = agent.init(jax.random.key(1), 3)
    hp = agent.hyperparameters_to_arrays([{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-2}])
    state, _ = agent.train(state, hp, 256)
    new = agent.gather(state, jnp.asarray([2, 1, 2]))  # member 0 copies member 2
    # Everything is the donor's but the random stream; members that were not copied keep
    # theirs, and two gathers of the same state give the same streams.
    assert leaves_equal(member(new, 0).replace(rng=None), member(state, 2).replace(rng=None))
    assert not np.array_equal(new.rng[0], state.rng[2])
    np.testing.assert_array_equal(new.rng[1:], state.rng[1:])
    np.testing.assert_array_equal(agent.gather(state, jnp.asarray([2, 1, 2])).rng, new.rng)
    twice = agent.gather(state, jnp.asarray([2, 2, 2]))  # two copies of one donor differ too
    assert not np.array_equal(twice.rng[0], twice.rng[1])
    # Clone and donor, with the same hyperparameters, now collect different rollouts.
    same = agent.hyperparameters_to_arrays([{"lr": 1e-2}] * 3)
    trained, m = agent.train(new, same, 64)
    assert not np.array_equal(trained.obs[0], trained.obs[2])
    assert not leaves_equal(member(trained.params, 0), member(trained.params, 2))
    again, m2 = agent.train(agent.gather(state, jnp.asarray([2, 1, 2])), same, 64)
    assert leaves_equal(again, trained)


def test_an_updating_member_at_the_largest_batch_keeps_its_batch_while_others_collect(small):
    # Member 0 trains on the largest batch the buffer holds. Whether member 1 collects in
    # small batches (so it collects while member 0 updates) or updates in step with member
    # 0, member 0's own training must come out bit for bit the same.
    agent, _ = small
    state = agent.init(jax.random.key(5), 2)
    big = {"train_batch_size": agent.max_batch, "num_epochs": 4, "minibatch_size": 16}
    small_batch = {"train_batch_size": agent.batch_unit, "num_epochs": 1, "minibatch_size": 16}
    alone, _ = agent.train(state, [big, big], 2 * agent.max_batch)
    mixed, m = agent.train(state, [big, small_batch], 2 * agent.max_batch)
    assert m["updates"][1] > m["updates"][0]  # member 1 collected while member 0 updated
    assert leaves_equal(member(mixed, 0), member(alone, 0))


def test_learning_rate_applies_per_member(small):
    agent, _ = small
    state = agent.init(jax.random.key(7), 3)
    # Member 2 has a learning rate but a zero gradient-norm cap: from a fresh Adam state
    # that also freezes the weights.
    hp = agent.hyperparameters_to_arrays(
        [{"lr": 0.0}, {"lr": 1e-3}, {"lr": 1e-3, "max_grad_norm": 0.0}]
    )
    new, m = agent.train(state, hp, 64)
    assert np.all(m["sgd_steps"] > 0)
    assert leaves_equal(member(new.params, 0), member(state.params, 0))
    assert leaves_equal(member(new.params, 2), member(state.params, 2))
    assert not leaves_equal(member(new.params, 1), member(state.params, 1))
    # And on the next call the change applies at once.
    hp2 = agent.hyperparameters_to_arrays([{"lr": 1e-3}, {"lr": 0.0}, {"lr": 0.0}])
    newer, _ = agent.train(new, hp2, 64)
    assert not leaves_equal(member(newer.params, 0), member(new.params, 0))
    assert leaves_equal(member(newer.params, 1), member(new.params, 1))


def test_clip_applies(small):
    agent, _ = small
    state = agent.init(jax.random.key(8), 3)
    state, _ = agent.train(state, agent.hyperparameters_to_arrays([{}] * 3), 256)
    hp = agent.hyperparameters_to_arrays(
        [{"clip": c, "lr": 1e-2, "num_epochs": 4} for c in (0.01, 0.5, 0.01)]
    )
    # Same starting member for all three, so only the hyperparameters differ.
    state = agent.gather(state, jnp.asarray([0, 0, 0]))
    new, m = agent.train(state, hp, 128)
    assert m["clip_fraction"][0] > m["clip_fraction"][1]
    assert m["approx_kl"][0] < m["approx_kl"][1]
    assert m["clip_fraction"][2] > m["clip_fraction"][1]


def test_structural_hyperparameters_take_effect(small):
    agent, state = small
    configs = [
        {"train_batch_size": 128, "num_epochs": 1, "minibatch_size": 64},
        {"train_batch_size": 64, "num_epochs": 3, "minibatch_size": 16},
        {"train_batch_size": 96, "num_epochs": 2, "minibatch_size": 48},
    ]
    hp = agent.hyperparameters_to_arrays(configs)
    _, m = agent.train(state, hp, 256)
    for i, c in enumerate(configs):
        updates = math.ceil(256 / c["train_batch_size"])
        per_epoch = c["train_batch_size"] // c["minibatch_size"]
        assert m["updates"][i] == updates
        assert m["sgd_steps"][i] == updates * c["num_epochs"] * per_epoch
        assert m["env_steps"][i] == updates * c["train_batch_size"]


def test_no_recompilation_after_exploit_and_hyperparameter_change(small):
    agent, state = small
    hp = agent.hyperparameters_to_arrays([{}] * 3)
    state, _ = agent.train(state, hp, 64)
    count = agent.compile_count
    state = agent.gather(state, jnp.asarray([1, 1, 0]))
    new_hp = agent.hyperparameters_to_arrays(
        [
            {"lr": 5e-4, "clip": 0.3, "gae_lambda": 0.9, "gamma": 0.95, "ent_coef": 0.0,
             "vf_coef": 1.0, "max_grad_norm": 1.0, "train_batch_size": 128, "num_epochs": 4,
             "minibatch_size": 32},
            {"train_batch_size": 32, "num_epochs": 1, "minibatch_size": 16},
            {"gamma": 1.0, "minibatch_size": 128},
        ]
    )  # fmt: skip
    state, _ = agent.train(state, new_hp, 64)
    state, _ = agent.train(state, new_hp, 200)  # another budget is only another traced number
    state, _ = agent.train(state, [{"num_epochs": 2}] * 3, 64)  # list of dicts is accepted too
    assert agent.compile_count == count


def test_evaluate_and_act_shapes(small):
    agent, state = small
    returns = agent.evaluate(state, jax.random.key(0), 3)
    assert returns.shape == (3,) and np.all((returns >= 1) & (returns <= 500))
    obs = np.zeros((3, 4), np.float32)
    assert agent.act(state, obs, jax.random.key(0)).shape == (3,)
    assert agent.act(state, np.zeros((3, 5, 4), np.float32), greedy=False).shape == (3, 5)


def test_continuous_actions_are_clipped():
    config = PPOConfig(
        num_envs=4, rollout_chunk=8, max_rollout_len=8, minibatch_unit=16, hidden_sizes=(8,)
    )
    agent = PPO(make_env("Pendulum-v1"), config)
    state = agent.init(jax.random.key(0), 2)
    obs = 100.0 * jax.random.normal(jax.random.key(1), (2, 256, 3))
    for greedy in (True, False):
        acts = agent.act(state, obs, jax.random.key(2), greedy=greedy)
        assert acts.shape == (2, 256, 1)
        assert np.all(np.abs(np.asarray(acts)) <= 2.0)


# ---------------------------------------------------------------------------------------------
# Learning (default static config and default hyperparameters)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cartpole_is_solved():
    """Best of 2 members reaches a greedy evaluation return >= 450 within 200k steps each."""
    agent = PPO(make_env("CartPole-v1"), PPOConfig())
    hp = agent.hyperparameters_to_arrays([agent.default_hyperparameters()] * 2)
    state = agent.init(jax.random.key(0), 2)
    best = -np.inf
    for _ in range(4):
        state, _ = agent.train(state, hp, 50_000)
        best = max(best, float(agent.evaluate(state, jax.random.key(1), 10).max()))
        if best >= 450:
            break
    assert best >= 450, best
    assert agent.compile_count == 1


@pytest.mark.slow
def test_pendulum_improves():
    """Mean greedy return of 2 members improves by > 500 (from about -1300) in 160k steps."""
    agent = PPO(make_env("Pendulum-v1"), PPOConfig())
    hp = agent.hyperparameters_to_arrays([{}] * 2)
    state = agent.init(jax.random.key(0), 2)
    before = float(agent.evaluate(state, jax.random.key(1), 10).mean())
    state, _ = agent.train(state, hp, 160_000)
    after = float(agent.evaluate(state, jax.random.key(1), 10).mean())
    assert after > before + 500, (before, after)
