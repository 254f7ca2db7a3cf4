"""Execution strategies (lockstep, per-member) and sharding over devices: same member
trajectories whatever the layout, one compilation per program shape, and the vector engine's
watchdog and resume paths under each strategy. Sized for a 2-core CI; no wall-clock checks."""

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import run_cli, start_run_held_at, tiny_vector, write_toml_file

from gpbt.config import ConfigError, validate_config
from gpbt.engines.vector import run_vector
from gpbt.rl.execution import STRATEGIES, available_cores, resolve_strategy
from gpbt.store import load

# The checks that need several devices run in a fresh process: JAX's CPU device count is fixed
# when its backend starts, and this test process may have started it already. Three devices,
# so that neither population below divides evenly over them.
SHARDED = textwrap.dedent(
    """
    import json, sys
    from gpbt.rl.execution import configure_host_devices
    assert configure_host_devices(3) == 3
    import jax, numpy as np
    from gpbt.rl.envs import make_env
    from gpbt.rl.impala import IMPALA, IMPALAConfig
    from gpbt.rl.ppo import PPO, PPOConfig

    def same(a, b):
        return all(np.array_equal(x, y, equal_nan=True)
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    def maxdiff(a, b):
        return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)) if x.size)

    small = PPOConfig(num_envs=4, rollout_chunk=8, max_rollout_len=32, minibatch_unit=16,
                      max_epochs=4, hidden_sizes=(16, 16), normalize_obs=True,
                      normalize_reward=True)
    agent = PPO(make_env("CartPole-v1"), small)
    P = 7
    configs = [
        {"train_batch_size": 32, "num_epochs": 1, "minibatch_size": 16},
        {"train_batch_size": 96, "num_epochs": 3, "minibatch_size": 48},
        {"train_batch_size": 128, "num_epochs": 4, "minibatch_size": 16},
        {"train_batch_size": 64, "num_epochs": 2, "minibatch_size": 32, "lr": 3e-3},
        {"train_batch_size": 32, "num_epochs": 4, "minibatch_size": 32},
        {"train_batch_size": 128, "num_epochs": 1, "minibatch_size": 128},
        {"train_batch_size": 64, "num_epochs": 3, "minibatch_size": 16, "clip": 0.1},
    ]
    budgets = [[100, 200, 300, 256, 64, 128, 0], [64] * P, [300, 0, 96, 128, 256, 32, 200]]
    out = {}

    def run(strategy, devices, exploit=None):
        agent.set_execution(strategy, devices)
        state, calls = agent.init(jax.random.key(0), P), []
        for i, budget in enumerate(budgets):
            state, m = agent.train(state, configs, budget)
            calls.append((state, m))
            if i == 0 and exploit is not None:
                state = agent.gather(state, exploit)
        return calls

    # per-member on 1 device and on 3; then a member trained alone
    traces, copies = agent.compile_count, agent.device_compiles
    pm1 = run("per-member", 1)
    pm3 = run("per-member", 0)
    out["per_member_traces"] = agent.compile_count - traces
    out["per_member_device_copies"] = agent.device_compiles - copies
    out["per_member_same_on_1_and_3_devices"] = same(pm1, pm3)
    # the row-slicing helper: one program, though the first call gets a fresh population
    out["slice_programs"] = agent._runner._take._cache_size()
    agent.set_execution("lockstep", 1)
    alone, member = jax.tree.map(lambda x: x[2:3], agent.init(jax.random.key(0), P)), []
    for budget in budgets:
        alone, m = agent.train(alone, configs[2:3], budget[2])
        member.append(same(alone, jax.tree.map(lambda x: x[2:3], pm3[len(member)][0])))
    out["per_member_is_the_member_alone"] = member

    # lockstep unsharded and over 3 devices (3 shards of 3, two padding rows)
    ls1 = run("lockstep", 1)
    traces = agent.compile_count
    ls3 = run("lockstep", 0)
    out["lockstep_sharded_traces"] = agent.compile_count - traces
    out["lockstep_same_sharded"] = same(ls1, ls3)
    out["plan"] = agent.execution_plan(agent.hyperparameters_to_arrays(configs))

    # lockstep against per-member: same steps, floats within the documented drift
    for k in ("env_steps", "updates", "sgd_steps", "episodes", "total_env_steps"):
        out["counts_equal_" + k] = all(
            np.array_equal(a[1][k], b[1][k]) for a, b in zip(ls1, pm1))
    out["first_call_returns_equal"] = bool(np.array_equal(
        ls1[0][1]["episode_return"], pm1[0][1]["episode_return"], equal_nan=True))
    out["first_call_param_diff"] = maxdiff(ls1[0][0].params, pm1[0][0].params)

    # exploits (a gather) and new configs between calls never compile again
    traces, copies = agent.compile_count, agent.device_compiles
    run("per-member", 0, exploit=[1, 1, 2, 0, 4, 4, 2])
    run("lockstep", 0, exploit=[6, 1, 2, 3, 4, 5, 6])
    configs.reverse()
    run("per-member", 0)
    out["traces_after_exploits_and_new_configs"] = agent.compile_count - traces
    out["copies_after_exploits_and_new_configs"] = agent.device_compiles - copies

    # IMPALA: lockstep over devices, the padding row trains the shared budget and is dropped
    impala = IMPALA(make_env("Breakout-MinAtar"),
                    IMPALAConfig(num_envs=4, unroll_length=5, hidden_sizes=(16,)))
    hp = [{"lr": 1e-3 * (i + 1)} for i in range(5)]
    runs = []
    for devices in (1, 0):
        impala.set_execution("lockstep", devices)
        s = impala.init(jax.random.key(1), 5)
        s, m = impala.train(s, hp, 40)
        runs.append((s, m))
    out["impala_same_sharded"] = same(runs[0], runs[1])
    out["impala_env_steps"] = np.asarray(runs[1][1]["env_steps"]).tolist()
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def sharded():
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED], capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


@pytest.mark.slow
def test_per_member_gives_the_same_bits_on_any_number_of_devices(sharded):
    # 7 members over 3 devices: the queue hands members to whichever device is free, so
    # assignment varies from run to run; the results must not.
    assert sharded["per_member_same_on_1_and_3_devices"]


@pytest.mark.slow
def test_per_member_trains_each_member_exactly_as_alone(sharded):
    assert sharded["per_member_is_the_member_alone"] == [True, True, True]


@pytest.mark.slow
def test_lockstep_over_uneven_shards_matches_one_device(sharded):
    assert sharded["plan"] == ["lockstep", 3]  # 7 members: shards of 3, two padding rows
    assert sharded["lockstep_same_sharded"]
    assert sharded["impala_same_sharded"]
    assert sharded["impala_env_steps"] == [40] * 5  # two 20-step updates each, pads dropped


@pytest.mark.slow
def test_lockstep_and_per_member_run_the_same_steps(sharded):
    for k in ("env_steps", "updates", "sgd_steps", "episodes", "total_env_steps"):
        assert sharded["counts_equal_" + k], k
    assert sharded["first_call_returns_equal"]
    # XLA compiles batched and single-member float code differently (docs/ppo.md): after one
    # call the weights differ by float rounding only.
    assert sharded["first_call_param_diff"] < 1e-5


@pytest.mark.slow
def test_one_compilation_per_program_shape(sharded):
    # per-member: one trace (a population of 1 is one shape for every member), one compiled
    # copy per device; sharded lockstep: one more shape (the shard)
    assert sharded["per_member_traces"] == 1
    assert sharded["per_member_device_copies"] == 3
    assert sharded["lockstep_sharded_traces"] == 1
    # no hidden recompile at the second call (a fresh population is not committed to a
    # device; the trained one is)
    assert sharded["slice_programs"] == 1
    # exploits, config changes, other budgets: nothing new
    assert sharded["traces_after_exploits_and_new_configs"] == 0
    assert sharded["copies_after_exploits_and_new_configs"] == 0


def test_auto_chooses_per_member_only_for_varying_structures_on_cpu():
    assert resolve_strategy("auto", structural_varies=True, platform="cpu") == "per-member"
    assert resolve_strategy("auto", structural_varies=False, platform="cpu") == "lockstep"
    assert resolve_strategy("auto", structural_varies=True, platform="gpu") == "lockstep"
    explicit = resolve_strategy("per-member", structural_varies=False, platform="gpu")
    assert explicit == "per-member"
    with pytest.raises(ValueError, match="execution = 'buckets' is not known"):
        resolve_strategy("buckets", structural_varies=True, platform="cpu")


# ---------------------------------------------------------------------------------------------
# The vector engine under each strategy
# ---------------------------------------------------------------------------------------------

MIXED = {
    "env": "CartPole-v1",
    "agent": "ppo",
    "method": "pbt",
    "population": 4,
    "total_steps": 2048 * 4,
    "perturbation_interval": 2048,
    "seed": 5,
    "final_eval_episodes": 2,
    "agent_options": {
        "num_envs": 8,
        "rollout_chunk": 16,
        "max_rollout_len": 64,
        "minibatch_unit": 32,
        "max_epochs": 4,
        "hidden_sizes": [16, 16],
    },
    "space": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "train_batch_size": {"type": "choice", "values": [128, 256, 512]},
        "num_epochs": {"type": "int", "low": 1, "high": 4},
    },
}


def mixed(**changes):
    cfg = copy.deepcopy(MIXED)
    cfg.update(changes)
    return validate_config(cfg)


def table(folder):
    df = load(folder).reports
    configs = sorted(c for c in df.columns if c.startswith("config."))
    return df[["member", "time", "score", *configs, "metric.env_steps_total"]].reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def mixed_reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    summary = run_vector(mixed(), folder, supervise=False)
    return folder, summary


def test_config_names_the_strategies():
    assert validate_config(copy.deepcopy(MIXED))["execution"] == "auto"
    with pytest.raises(ConfigError, match=r"execution = 'fast' is not known; use one of"):
        validate_config({**copy.deepcopy(MIXED), "execution": "fast"})
    with pytest.raises(ConfigError, match="key 'devices' = -1 must be >= 0 \\(devices to"):
        validate_config({**copy.deepcopy(MIXED), "devices": -1})
    assert set(STRATEGIES) == {"auto", "lockstep", "per-member"}


@pytest.mark.slow
def test_a_mixed_structure_run_trains_member_by_member_and_compiles_once(mixed_reference):
    folder, summary = mixed_reference
    assert summary["execution"]["strategy"] == "per-member"
    exp = load(folder)
    assert (exp.decisions["kind"] == "exploit").any()
    assert exp.reports["config.train_batch_size"].nunique() > 1
    assert summary["compilations_during_run"] == 1


@pytest.mark.slow
def test_per_member_run_killed_and_resumed_on_every_core_matches_the_reference(
    mixed_reference, tmp_path
):
    # The CLI's training process gets one device per core; the reference ran in this process
    # with whatever devices it has. Per-member results do not depend on the device count.
    cfg_path = write_toml_file(tmp_path / "mixed.toml", MIXED)
    folder = tmp_path / "run"
    proc = start_run_held_at(["run", cfg_path, "--out", folder], folder, generation=3)
    os.killpg(proc.pid, signal.SIGKILL)  # two generations in, the third training
    proc.wait()
    assert len(load(folder).reports) == 8
    result = run_cli("resume", folder, "--no-report", timeout=900)
    assert result.returncode == 0, result.stderr
    after = table(folder)
    assert not after.duplicated(["member", "time"]).any()
    assert after.equals(table(mixed_reference[0]))


@pytest.mark.slow
def test_watchdog_restarts_a_hung_sharded_lockstep_run(tmp_path):
    # Lockstep over every core (4 members: two shards of two on a 2-core machine) against
    # the same run unsharded in this process: a hang is restarted from the checkpoint and
    # the result is the unsharded run's, bit for bit.
    homogeneous = tiny_vector(total_steps=4096 * 4)
    reference = tmp_path / "reference"
    run_vector({**homogeneous, "devices": 1}, reference, supervise=False)
    cfg_path = write_toml_file(
        tmp_path / "h.toml", {**homogeneous, "execution": "lockstep", "watchdog_seconds": 20}
    )
    folder = tmp_path / "run"
    env = {**os.environ, "GPBT_TEST_HANG_AT": "3"}
    result = run_cli("run", cfg_path, "--out", folder, "--no-report", env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    restarts = load(folder).state("restarts")
    assert [e["reason"] for e in restarts["events"]] == ["no progress for 20 s"]
    # the summary's device count: a shard holds two members or more, and the CLI's training
    # process has one device per core
    shards = max(1, min(available_cores(), homogeneous["population"] // 2))
    execution = load(folder).state("summary")["details"]["execution"]
    assert execution == {"strategy": "lockstep", "devices": shards}
    assert table(folder).equals(table(reference))
