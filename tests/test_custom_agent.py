"""Bring your own agent and environment to the vector engine: the public protocol, its
checker, and examples/dqn_minatar.py (a DQN) on examples/custom_env.py, through the engine."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from gpbt.config import ConfigError, validate_config
from gpbt.engines.vector import VectorRun, run_vector
from gpbt.rl.agents import make_agent
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
                   "_eval_action(member, obs, key)", "default_hyperparameters()"):  # fmt: skip
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
