import contextlib
import os

# JAX on CPU: keep tests deterministic and quiet, and share compiled programs between the test
# process and the CLI subprocesses it starts (the engine's persistent compilation cache).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _toml_value(value):
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return f"{{ {inner} }}"
    return json.dumps(value)  # numbers, strings, booleans and lists read back as TOML


def write_toml_file(path, cfg: dict) -> Path:
    """A config dict as a TOML file: top-level tables as [tables], deeper ones inline."""
    lines, tables = [], {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            tables[k] = v
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(*args, **kw) -> subprocess.CompletedProcess:
    """`gpbt ARGS` in a subprocess, as a user runs it; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "gpbt.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 600),
        **kw,
    )


@pytest.fixture
def write_toml():
    return write_toml_file


@pytest.fixture
def gpbt_cli():
    return run_cli


# The smallest vector-engine run that still exploits: CartPole, 4 PPO members, 5 intervals of
# 4096 env steps, two tuned hyperparameters. Tests take a copy and change what they need.
TINY_VECTOR = {
    "env": "CartPole-v1",
    "agent": "ppo",
    "method": "gpbt-pl",
    "population": 4,
    "total_steps": 4096 * 5,
    "perturbation_interval": 4096,
    "seed": 3,
    "final_eval_episodes": 4,
    "agent_options": {"num_envs": 8, "rollout_chunk": 16, "max_rollout_len": 64,
                      "minibatch_unit": 32, "max_epochs": 4},
    "hyperparameters": {"train_batch_size": 256, "num_epochs": 2, "minibatch_size": 64},
    "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
              "clip": {"type": "float", "low": 0.1, "high": 0.4}},
}  # fmt: skip


def tiny_vector(**changes) -> dict:
    """A fresh copy of TINY_VECTOR with `changes` applied (top-level keys)."""
    import copy

    cfg = copy.deepcopy(TINY_VECTOR)
    cfg.update(copy.deepcopy(changes))
    return cfg


def check_summary(summary, engine: str, population: int) -> None:
    """The engine protocol's promise: every engine returns the same Summary type, its common
    fields filled in the same way (gpbt.engines.protocol)."""
    import math

    from gpbt.engines.protocol import Summary

    assert isinstance(summary, Summary)
    assert summary.engine == engine and summary.finished
    assert summary.best_member in range(population)
    assert math.isfinite(summary.best_score) and math.isfinite(summary.population_mean)
    assert summary.score_basis and isinstance(summary.best_config, dict)
    assert summary.exploits >= 0 and summary.wall_seconds > 0
    assert summary["best_score"] == summary.best_score  # the old dict-style access still works
    # every member's last config, the best member's among them (the range-edge notes' input)
    assert len(summary.final_configs) == population
    assert summary.final_configs[summary.best_member] == summary.best_config
    assert set(summary.to_dict()) >= {"engine", "method", "best_member", "best_score",
                                      "population_mean", "exploits", "details"}  # fmt: skip


def explore_ctx(space, loser_cfg, winner_cfg, rng, loser_state=None, population=None):
    """An ExploreContext for a strategy's unit tests: member 0 (score 0) lost to member 1
    (score 1) at time 10."""
    from gpbt.core.strategies import ExploreContext

    return ExploreContext(
        space=space,
        rng=rng,
        time=10.0,
        loser=0,
        winner=1,
        loser_config=loser_cfg,
        winner_config=winner_cfg,
        loser_state=loser_state or {"velocity": {}},
        winner_score=1.0,
        population=population or {0: (loser_cfg, 0.0), 1: (winner_cfg, 1.0)},
    )


def load_benchmark_script(name: str):
    """`benchmarks/<name>.py` (a script, not a package module) imported as module `name`;
    registered in sys.modules because dataclasses look their module up."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def toy_cell_store(folder, method: str, seed: int = 0, steps: int = 80, interval: int = 4):
    """One bench cell's real store at `folder` (as a bench folder lays it out), filled by the
    lockstep loop on the quadratic toy at population 4: steps / interval generations; returns
    the folder."""
    from gpbt.core.methods import make_scheduler
    from gpbt.engines.lockstep import Lockstep
    from gpbt.engines.toys import QuadraticToy, ToyPopulation
    from gpbt.store.writer import ExperimentStore

    toy = QuadraticToy(steps=steps, interval=interval)
    scheduler = make_scheduler(method, toy.space, perturbation_interval=toy.interval, seed=seed)
    members = ToyPopulation(toy, 4, seed)
    configs = [members.complete(c) for c in scheduler.initial_population(4)]
    members.set_configs(configs)
    with ExperimentStore(folder) as store:
        Lockstep(scheduler, members, members.times(), store=store).run(configs)
    return Path(folder)


def count_reports(folder) -> int:
    """Reports in a (possibly live) experiment folder's store, read without the store's code."""
    db = Path(folder) / "experiment.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def start_run_held_at(args, folder, generation: int, timeout: float = 600) -> subprocess.Popen:
    """Start `gpbt <args>` (a vector run into `folder`) held still in `generation`'s training
    by the engine's test hook (generations count from 1), and return once it is there: every
    report of the generations before is written and no later one can be, so a test that kills
    it lands mid-run on any machine. A kill at a report count raced the run's remaining
    generations, which a fast machine could finish before the kill."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpbt.cli", *map(str, args), "--no-report"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "GPBT_TEST_HANG_AT": str(generation)},
    )  # fmt: skip
    deadline = time.time() + timeout
    while not (Path(folder) / "hang-once").exists():
        assert proc.poll() is None, f"the run ended before it reached generation {generation}"
        assert time.time() < deadline, f"the run did not reach generation {generation} in time"
        time.sleep(0.05)
    return proc


def wait_for_reports(folder, n: int, proc, timeout: float = 300) -> None:
    """Wait until the run `proc` (a Popen) has written `n` reports, failing if it ends first."""
    deadline = time.time() + timeout
    while count_reports(folder) < n:
        assert proc.poll() is None, "the run ended before it was killed"
        assert time.time() < deadline, f"no {n} reports within {timeout} s"
        time.sleep(0.05)


# A trainable for the local engine whose "weights" are one number growing by lr per step, so who
# trained what is arithmetic. Tests write it (and their own subclasses) into a small module at
# test time: a worker process then imports only that module and gpbt.engines, not pytest.
TOY_TRAINABLE = """import json, math, os, time
from pathlib import Path
from gpbt.engines.trainable import Trainable

class Toy(Trainable):
    def setup(self, config):
        self.w, self.t = 0.0, 0
    def step(self):
        time.sleep(self.config.get("sleep", 0.0))
        self.w += self.config["lr"]
        self.t += 1
        return {"steps": self.t, "score": self.w, "timesteps_total": self.t,
                "episode_reward_mean": self.w}
    def save(self, d):
        with open(os.path.join(d, "s.json"), "w") as f:
            json.dump([self.w, self.t], f)
    def restore(self, d):
        with open(os.path.join(d, "s.json")) as f:
            self.w, self.t = json.load(f)
    def reset_config(self, config):
        return True
"""


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A real, small file system at `path` for the block; skips where it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); the "
            "full-disk and read-only cases need root to mount one"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
