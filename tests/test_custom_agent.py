"""Bring your own agent and environment to the vector engine: the public protocol, its
checker, examples/dqn_minatar.py (a DQN) on examples/custom_env.py and examples/a2c_gymnax.py
(an A2C written from docs/custom-agents.md alone), through the engine."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpbt.config import ConfigError, validate_config
from gpbt.engines.vector import VectorRun, run_vector
from gpbt.rl.agents import make_agent
from gpbt.rl.envs import make_env
from gpbt.rl.protocol import AgentProtocolError, check_agent, check_agent_runs
from gpbt.store import load

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DQN = "examples.dqn_minatar:DQN"
CORRIDOR = "examples.custom_env:corridor?length=5"
OPTIONS = {
    "num_envs": 4,
    "buffer_size": 512,
    "batch_size": 32,
    "learning_starts": 64,
    "hidden_sizes": [32],
}
TINY = {
    "env": CORRIDOR,
    "agent": DQN,
    "method": "gpbt-pl",
    "population": 4,
    "total_steps": 800,
    "perturbation_interval": 400,
    "seed": 1,
    "final_eval_episodes": 2,
    "agent_options": OPTIONS,
    "hyperparameters": {"epsilon_decay_steps": 400.0},
    "space": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "target_update_period": {"type": "int", "low": 5, "high": 50},
    },
}


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    # "examples.dqn_minatar" is importable from the repository root, as from the CLI there.
    monkeypatch.chdir(ROOT)


def tiny(**changes):
    cfg = copy.deepcopy(TINY)
    cfg.update(changes)
    return validate_config(cfg)


def _final_state(cfg, folder, generation=None):
    """The population state the engine checkpointed (the last one, or `generation`'s)."""
    run = VectorRun(cfg, folder)
    records = run.store.checkpoints()
    record = records[-1]
    if generation is not None:
        record = next(r for r in records if r["meta"]["generation"] == generation)
    run._load_checkpoint(record)
    run.store.close()
    return run.agent, run.state


# ------------------------------------------------------------------------- the checker
def test_check_agent_names_everything_missing(tmp_path, monkeypatch):
    (tmp_path / "half_agent.py").write_text(
        textwrap.dedent(
            """
            from gpbt.rl.protocol import PopulationAgent

            class Half(PopulationAgent):
                hyperparameter_names = ("lr",)

                def __init__(self, env):
                    self.env = env
                    self._compile_entry_points()

                def hyperparameter_bounds(self):
                    return {"lr": (0.0, 1.0)}

            class NotAnAgent:
                def __init__(self, env):
                    pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AgentProtocolError) as err:
        make_agent("half_agent:Half", CORRIDOR)
    message = str(err.value)
    assert message.startswith("agent 'half_agent:Half' does not follow the population-agent")
    for needle in ("init(key, population)", "_train_impl(state, hp, budget)",
                   "_eval_action(member, obs, key)", "_act_impl(state, obs, key, greedy)",
                   "default_hyperparameters()"):  # fmt: skip
        assert needle in message
    assert "hyperparameter_bounds()" not in message  # it is written
    with pytest.raises(AgentProtocolError) as err:
        make_agent("half_agent:NotAnAgent", CORRIDOR)
    assert "missing init(key, population), train(state, hp, env_steps_per_member)" in str(err.value)
    assert "hyperparameter_names must be a non-empty tuple of str" in str(err.value)


def test_the_dqn_example_follows_the_protocol_and_lr_0_freezes_its_weights():
    agent = make_agent(DQN, CORRIDOR, OPTIONS)
    check_agent(agent)
    metrics = check_agent_runs(agent, population=2, env_steps=128)
    assert metrics["gradient_updates"].tolist() == [17, 17]  # (128 - 64) / 4 + 1 updates
    state = agent.init(jax.random.key(0), 2)
    hp = agent.hyperparameters_to_arrays([{"lr": 0.0}, {"lr": 1e-3}])
    trained, _ = agent.train(state, hp, 256)
    same = [
        [bool(np.array_equal(a[i], b[i])) for a, b in zip(
            jax.tree.leaves(state.params), jax.tree.leaves(trained.params), strict=True
        )]
        for i in range(2)
    ]  # fmt: skip
    assert all(same[0]) and not any(same[1])
    assert np.asarray(trained.replay.size).tolist() == [256, 256]


A2C = "examples.a2c_gymnax:A2C"
A2C_OPTIONS = {"num_envs": 2, "num_steps": 4, "hidden_sizes": [16]}  # one update: 8 env steps


def _a2c_variant(**methods):
    """The example A2C with some of its hooks replaced (the broken agents a user might write)."""
    from examples.a2c_gymnax import A2C as Base

    return type("Variant", (Base,), methods)(make_env("CartPole-v1"), **A2C_OPTIONS)


def test_the_a2c_example_written_from_the_docs_passes_the_checker():
    agent = make_agent(A2C, "CartPole-v1", A2C_OPTIONS)
    metrics = check_agent_runs(agent)  # the documented call: default budget, 3 updates
    assert metrics["episodes"].shape == (2,) and np.all(metrics["episodes"] >= 0)
    assert {"loss", "value_loss", "entropy"} <= set(metrics)
    state = agent.init(jax.random.key(0), 3)
    hp = agent.hyperparameters_to_arrays([{}, {}, {}])
    state, _ = agent.train(state, hp, np.array([8, 24, 0]))  # 1, 3 and 0 updates of 8 steps
    assert np.asarray(state.total_env_steps).tolist() == [8, 24, 0]


def test_the_checker_fails_a_train_that_ignores_its_budget_an_untraceable_init_and_bad_act():
    def one_update(self, state, hp, budget):  # what an agent without the budget loop does
        return type(self).__mro__[1]._train_impl(self, state, hp, jnp.minimum(budget, 8))

    def host_init(self, key, population):  # NumPy on the key: runs eagerly, cannot trace
        np.asarray(jax.random.key_data(key))
        return type(self).__mro__[1].init(self, key, population)

    def one_action(self, state, obs, key, greedy):  # drops the batch axis
        return jnp.zeros(obs.shape[0], jnp.int32)

    agent = _a2c_variant(_train_impl=one_update, init=host_init, _act_impl=one_action)
    with pytest.raises(AgentProtocolError) as err:
        check_agent_runs(agent)
    message = str(err.value)
    assert "train(state, hp, [24, 24]) advanced total_env_steps by [8, 8], less than" in message
    assert "'The budget loop'" in message  # names the fix
    assert "init(key, 1) does not trace under jax.eval_shape" in message
    assert (
        "act(state, obs [2, 3, ...], key, greedy=True) returned shape (2,), not (2, 3)" in message
    )


def test_the_checker_fails_a_train_that_gives_every_member_the_largest_budget():
    def largest(self, state, hp, budget):
        budget = jnp.full_like(budget, budget.max())
        return type(self).__mro__[1]._train_impl(self, state, hp, budget)

    with pytest.raises(AgentProtocolError) as err:
        check_agent_runs(_a2c_variant(_train_impl=largest))
    assert ("train(state, hp, [48, 24]) advanced total_env_steps by [48, 48], a whole update "
            "(max_update_steps = 8) or more past a budget") in str(err.value)  # fmt: skip


def test_a_type_error_inside_the_constructor_is_not_called_an_agent_options_mistake(
    tmp_path, monkeypatch
):
    (tmp_path / "typo_agent.py").write_text(
        textwrap.dedent(
            """
            from examples.a2c_gymnax import A2C

            class Typo(A2C):
                def __init__(self, env, width=16):
                    super().__init__(env, hidden_sizes=(width + "0",))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError) as err:
        make_agent("typo_agent:Typo", "CartPole-v1", {"width": 8})
    message = str(err.value)
    assert "[agent_options]" not in message
    assert "Typo(env, **agent_options) raised TypeError inside the agent's own code" in message
    assert "typo_agent.py:6 in __init__" in message
    with pytest.raises(ValueError) as err:
        make_agent("typo_agent:Typo", "CartPole-v1", {"widht": 8})
    assert str(err.value).startswith("[agent_options] Typo(env, **agent_options) does not accept")
    assert "unexpected keyword argument 'widht'; its constructor takes width" in str(err.value)


# ------------------------------------------------------------------------- the engine
@pytest.mark.slow
def test_the_engine_tunes_a_user_agent_and_an_exploit_copies_its_whole_state(tmp_path):
    cfg = tiny()
    summary = run_vector(cfg, tmp_path, supervise=False)
    assert summary["compilations_during_run"] == 1  # once, though an exploit changed the hps
    exp = load(tmp_path)
    assert set(exp.reports["time"]) == {400, 800}
    assert {"metric.loss", "metric.epsilon", "metric.gradient_updates"} <= set(exp.reports.columns)
    exploits = exp.decisions[(exp.decisions["kind"] == "exploit") & (exp.decisions["time"] == 400)]
    assert len(exploits) >= 1
    agent, state = _final_state(cfg, tmp_path, generation=1)  # right after the gather
    assert np.asarray(state.replay.size).tolist() == [400] * 4  # the buffers hold data
    # A donor that was itself replaced at this boundary handed over its state from before
    # (all copies are one gather); the checkpoint only shows the others' donors as they were.
    losers = set(exploits["member"].astype(int))
    pairs = [(int(m), int(d)) for m, d in zip(exploits["member"], exploits["donor"], strict=True)
             if int(d) not in losers]  # fmt: skip
    assert pairs
    for loser, donor in pairs:
        for path, leaf in jax.tree_util.tree_leaves_with_path(state):
            name = jax.tree_util.keystr(path)
            x = np.asarray(leaf)
            if name == ".rng":
                assert not np.array_equal(x[loser], x[donor])  # a fresh random stream
            else:
                assert np.array_equal(x[loser], x[donor]), name  # weights, Adam, replay, envs
    later = exp.reports[exp.reports["time"] == 800].set_index("member")
    for _, d in exploits.iterrows():  # the copy trained on with its new config
        assert later.loc[int(d["member"]), "config.lr"] == pytest.approx(d["new_config.lr"])


@pytest.mark.slow
def test_a_config_value_reaches_training_lr_0_keeps_the_initial_weights(tmp_path):
    cfg = tiny(method="random", population=3, total_steps=400, seed=2,
               space={"lr": {"type": "choice", "values": [0.0, 0.003]}})  # fmt: skip
    run_vector(cfg, tmp_path, supervise=False)
    lrs = load(tmp_path).reports.sort_values("member")["config.lr"].tolist()
    assert 0.0 in lrs and 0.003 in lrs
    agent, state = _final_state(cfg, tmp_path)
    initial = agent.init(jax.random.key(cfg["seed"]), cfg["population"])
    for m, lr in enumerate(lrs):
        same = [
            np.array_equal(np.asarray(a)[m], np.asarray(b)[m])
            for a, b in zip(jax.tree.leaves(initial.params), jax.tree.leaves(state.params),
                            strict=True)
        ]  # fmt: skip
        assert all(same) if lr == 0.0 else not any(same), (m, lr)


def test_gpbt_run_trains_the_a2c_example_and_writes_its_report(tmp_path):
    # The README-style command at a tiny size, report included: the report plays a greedy
    # episode through the agent's act, so the whole documented protocol runs.
    out = tmp_path / "run"
    overrides = ["population=2", "total_steps=64", "perturbation_interval=32",
                 "final_eval_episodes=2"]  # fmt: skip
    overrides += [f"agent_options.{k}={v}" for k, v in A2C_OPTIONS.items()]
    result = subprocess.run(
        [sys.executable, "-m", "gpbt.cli", "run", "examples/a2c.toml", *overrides,
         "--out", str(out)],  # fmt: skip
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    exp = load(out)
    assert exp.config["agent"] == A2C
    assert sorted(exp.reports["time"].unique().tolist()) == [32, 64]
    assert {"metric.entropy", "metric.value_loss"} <= set(exp.reports.columns)
    assert (out / "report" / "report.html").exists()


@pytest.mark.slow
def test_gpbt_run_tunes_the_example_config(tmp_path):
    out = tmp_path / "run"
    overrides = [f"env={CORRIDOR}", "population=2", "total_steps=800",
                 "perturbation_interval=400", "final_eval_episodes=2",
                 "hyperparameters.epsilon_decay_steps=400"]  # fmt: skip
    overrides += [f"agent_options.{k}={v}" for k, v in OPTIONS.items()]
    result = subprocess.run(
        [sys.executable, "-m", "gpbt.cli", "run", "examples/dqn_minatar.toml", *overrides,
         "--out", str(out), "--no-report"],  # fmt: skip
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    exp = load(out)
    assert exp.config["agent"] == DQN and len(exp.reports) == 4


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "change, needle",
    [
        ({"agent": "no_such_module_q:DQN"}, "agent = 'no_such_module_q:DQN': no module named"),
        ({"agent": "examples.dqn_minatar:DQNN"}, "module 'examples.dqn_minatar' has no attribute"),
        ({"agent": "examples.custom_env:catch"}, "is a function, not a class; name the agent's"),
        ({"env": "examples.custom_env:corridor?lenght=3"}, "unexpected keyword argument 'lenght'"),
        ({"env": "examples.custom_env:nowhere"}, "has no attribute 'nowhere'"),
        ({"agent_options": {**OPTIONS, "buffer": 3}}, "[agent_options] DQN(env, **agent_options)"),
        ({"space": {"eps": {"type": "float", "low": 0.1, "high": 0.2}}},
         "[space] 'eps' is not a hyperparameter of this agent"),
    ],
)  # fmt: skip
def test_bad_agent_or_env_specs_fail_before_anything_trains(tmp_path, change, needle):
    with pytest.raises(ConfigError) as err:
        run_vector(tiny(**change), tmp_path / "run", supervise=False)
    assert needle in str(err.value)
    assert not (tmp_path / "run").exists()
