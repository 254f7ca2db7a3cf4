"""The vector engine: a whole population in one jitted, vmapped JAX program, in lockstep.

Each generation: train every member up to the interval's end in its own env-step count (one
device call; whole updates overshoot, and the overshoot is carried into the next interval), read
the scores, ask the scheduler (`on_generation`), apply exploits as ONE gather along the
population axis (weights, optimiser state, normaliser statistics, env state; a copy gets a random
stream of its own), set the new hyperparameter arrays, continue. Hyperparameters are traced
arrays, so nothing recompiles. A copy reports its donor's score until it finishes an episode of
its own. How that program is laid out on the machine (lockstep or member by member, over every
core or device) is decided once per run from the `execution` and `devices` keys
(`gpbt.rl.execution`).

Crash safety: reports and decisions reach the experiment store as they happen; every
`checkpoint_interval` the population state, the scheduler state and the configs are written
atomically. Resuming truncates the store back to the last checkpoint and re-runs from there;
the run is deterministic, so the re-run writes exactly the rows it replaces.

The training process is supervised: `run_vector` starts it as a child process and renders the
live view from its events. A generation that makes no progress for `watchdog_seconds` (a rare
JAX hang at 0% CPU has been seen on this kind of machine) gets the child killed and restarted
from the last checkpoint instead of hanging the run.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import signal
import time
import traceback
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from gpbt.core.selection import pick, score_basis, select_then_test
from gpbt.core.space import Choice, Space
from gpbt.engines.lockstep import Lockstep, Trained
from gpbt.engines.protocol import Engine, OnEvent, Summary
from gpbt.engines.runner import run_with, spec_for
from gpbt.engines.supervisor import Watchdog, watch_child
from gpbt.errors import ConfigError, GpbtError, TrainingFailed
from gpbt.live_log import LiveLog
from gpbt.options import OPTIONAL, Option
from gpbt.spec import RunSpec
from gpbt.store import ExperimentStore
from gpbt.store.faults import storage_fault

# The vector engine's own config keys (gpbt.spec collects them; docs: README "The config file").
OPTIONS: dict[str, Option] = {
    "env": Option(
        str, help="`gpbt envs` lists them, or 'module:function' for your own", nonempty=True
    ),
    "agent": Option(str, "ppo", "ppo | impala, or 'module:Class' for your own", nonempty=True),
    "agent_options": Option(dict, {}, "the agent's static sizes (compile-time)"),
    "hyperparameters": Option(dict, {}, "fixed (not tuned) hyperparameter values"),
    "eval_episodes": Option(int, 0, "greedy evaluation episodes after every interval", at_least=0),
    "final_eval_episodes": Option(
        int, 32, "greedy selection evaluation of every member at the end", at_least=1
    ),
    # OPTIONAL, not a default: a default would enter every bench cell's config, and the
    # committed records, made before the key existed, would no longer match their cells
    "test_episodes": Option(
        int,
        OPTIONAL,
        "fresh greedy episodes the selected member's headline score is measured on (another "
        "key than the selection's); absent: as many as final_eval_episodes, no new compilation",
        at_least=1,
    ),
    "watchdog_seconds": Option((int, float), 600, "restart a generation stuck this long", above=0),
    "execution": Option(str, "auto", "auto | lockstep | per-member (docs/ppo.md)"),
    "devices": Option(int, 0, "devices to train on; 0: all (on CPU one per core)", at_least=0),
}
DEFAULTS = {"metric": "episode_return", "time_attr": "env_steps"}


@dataclass(frozen=True)
class VectorSettings:
    """This engine's own options of one run (`OPTIONS`, validated by the spec), read from the
    spec once: the spec's typed fields hold what every engine uses, and the preflight and the
    training loop read these fields instead of reaching back into the spec for each key."""

    env: str
    agent: str
    agent_options: dict[str, Any]
    hyperparameters: dict[str, Any]
    eval_episodes: int
    final_eval_episodes: int
    test_episodes: int | None  # None: as many as final_eval_episodes
    watchdog_seconds: float
    execution: str
    devices: int

    @classmethod
    def of(cls, spec: RunSpec) -> VectorSettings:
        values = {key: spec.get(key, OPTIONS[key].default) for key in OPTIONS}
        values["hyperparameters"] = dict(values["hyperparameters"])
        if values["test_episodes"] is OPTIONAL:
            values["test_episodes"] = None
        return cls(**values)


def check_config(cfg: dict[str, Any]) -> None:
    """What the vector engine needs beyond the key types (called by RunSpec.from_config)."""
    if cfg["metric"] not in ("episode_return", "eval_return"):
        raise ConfigError(
            f"metric = {cfg['metric']!r}: the vector engine scores members by "
            "'episode_return' (training episodes) or 'eval_return' (greedy "
            "evaluation, needs eval_episodes > 0)"
        )
    if cfg["metric"] == "eval_return" and cfg["eval_episodes"] < 1:
        raise ConfigError("metric = 'eval_return' needs eval_episodes >= 1, e.g. eval_episodes = 8")
    # The vector engine's clock is each member's env-step count, a whole number: a fraction
    # would be dropped without a word (an interval of 0.5 became 0, a division by zero).
    for key in ("total_steps", "perturbation_interval", "checkpoint_interval", "burn_in_period"):
        value = cfg.get(key)
        if value is not None and value != math.floor(value):
            whole = sorted({max(math.floor(value), 1), math.ceil(value)})
            raise ConfigError(
                f"{key} = {value!r}: the vector engine counts env steps, a whole number; use "
                + " or ".join(f"{key} = {n}" for n in whole)
            )
    generations = math.ceil(cfg["total_steps"] / cfg["perturbation_interval"])
    last_decision = (generations - 1) * cfg["perturbation_interval"]
    if generations > 1 and cfg["burn_in_period"] > last_decision:
        raise ConfigError(
            f"burn_in_period ({cfg['burn_in_period']}) is past the last decision, at "
            f"{last_decision:g} env steps (decisions come every perturbation_interval = "
            f"{cfg['perturbation_interval']} before total_steps = {cfg['total_steps']}): no "
            f"decision would ever be made; use burn_in_period <= {last_decision:g}"
        )
    from gpbt.rl.execution import STRATEGIES

    if cfg["execution"] not in STRATEGIES:
        raise ConfigError(
            f"execution = {cfg['execution']!r} is not known; use one of {list(STRATEGIES)} "
            "(auto picks lockstep or per-member from the search space)"
        )


# The final evaluation's two keys: members are chosen on the first and the chosen one is
# scored on the second, so its headline score does not reuse the episodes that picked it.
SELECTION_KEY, TEST_KEY = 99_991, 31_337
CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2
MAX_WATCHDOG_RESTARTS = 3


def _enable_compilation_cache() -> None:
    """Reuse compiled programs across runs (the PPO program takes tens of seconds to compile
    on CPU). Off with GPBT_JAX_CACHE=0; a user-set JAX cache dir wins."""
    import jax

    if os.environ.get("GPBT_JAX_CACHE", "1") == "0":
        return
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpbt" / "jax"
        jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def check_space_against_agent(space: Space, agent, fixed: dict[str, Any]) -> None:
    """Every tuned or fixed hyperparameter must be one the agent has, inside its bounds."""
    names = set(agent.hyperparameter_names)
    bounds = agent.hyperparameter_bounds()
    for source, keys in (("[space]", space.names), ("[hyperparameters]", fixed)):
        for key in keys:
            if key not in names:
                raise ConfigError(
                    f"{source} '{key}' is not a hyperparameter of this agent; "
                    f"known: {sorted(names)}"
                )
    for name, p in space.params.items():
        lo, hi = bounds[name]
        values = p.values if isinstance(p, Choice) else (p.low, p.high)
        for v in values:
            if not isinstance(v, int | float) or not lo <= v <= hi:
                raise ConfigError(
                    f"[space] '{name}': {v!r} is outside what the agent accepts "
                    f"[{lo:g}, {hi:g}] with these agent_options; narrow the "
                    "space or enlarge the agent's static sizes"
                )
    overlap = sorted(set(fixed) & set(space.names))
    if overlap:
        raise ConfigError(
            f"[hyperparameters] '{overlap[0]}' is also in [space]; a value is "
            "either tuned or fixed, remove it from one table"
        )
    try:
        agent.hyperparameters_to_arrays([fixed])
    except ValueError as err:
        raise ConfigError(f"[hyperparameters] {err}") from None


def largest_update(agent, space: Space, fixed: dict[str, Any]) -> int | None:
    """Env steps the largest update of any member consumes: PPO's `train_batch_size` at its
    largest (fixed, the top of its range, or the agent's default, as the agent snaps it), else
    the agent's `max_update_steps` (IMPALA's batch, a DQN's envs); None for an agent that
    says neither."""
    name = "train_batch_size"
    if name not in agent.hyperparameter_names:
        steps = getattr(agent, "max_update_steps", 0)
        return int(steps) if isinstance(steps, int) and steps > 0 else None
    if name in fixed:
        value = fixed[name]
    elif name in space.params:
        p = space.params[name]
        value = max(p.values) if isinstance(p, Choice) else p.high
    else:
        value = agent.default_hyperparameters()[name]
    return int(np.asarray(agent.hyperparameters_to_arrays([{**fixed, name: value}])[name])[0])


def check_interval_against_agent(spec: RunSpec, agent, fixed: dict[str, Any]) -> None:
    """An interval must hold at least one whole update of every member: a member trains whole
    updates, so with a shorter interval it trains in some intervals and not at all in the
    others, and is scored (and exploited) on the same weights again."""
    batch = largest_update(agent, spec.space, fixed)
    interval = spec.perturbation_interval
    if batch is not None and interval < batch:
        raise ConfigError(
            f"perturbation_interval = {interval:g} env steps is shorter than one update of "
            f"this agent (up to {batch} env steps per update): members "
            f"would not train at all in some intervals; use perturbation_interval >= {batch} "
            "or a smaller batch"
        )


def configure_devices(requested: int) -> None:
    """Set up JAX's devices for `devices = requested` (0: all), refusing more than there are.
    Before JAX starts its backend in this process: on CPU one device per core (or the
    configured count), so training can be spread over every core."""
    import jax

    from gpbt.rl.execution import available_cores, configure_host_devices

    cores = available_cores()
    # never ask XLA for more host devices than cores: `devices = 1000` would make 1000
    configure_host_devices(requested if requested <= cores else 0)
    if not requested:
        return
    platform = jax.default_backend()
    have = cores if platform == "cpu" else len(jax.devices())
    if requested > have:
        what = "CPU cores" if platform == "cpu" else f"{platform.upper()} devices"
        raise ConfigError(
            f"devices = {requested}, but this machine has {have} {what}; use devices = 0 "
            f"(all of them) or a number up to {have}"
        )


def available_memory() -> int | None:
    """Bytes of host memory available to a new allocation (Linux's MemAvailable: free memory
    plus the caches the kernel would drop), or None where the machine does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def check_memory(agent, population: int) -> None:
    """Refuse a population whose state cannot fit before any of it is allocated. The state's
    size comes from the agent's own `init`, traced without allocating (`jax.eval_shape`);
    training holds it at least twice (the state going in and the one coming out) and each
    checkpoint copies it to host memory once more. So this is a lower bound: a run refused
    here could never run, and one let through may still need more for its rollouts."""
    import jax

    try:
        shapes = jax.eval_shape(lambda key: agent.init(key, population), jax.random.key(0))
    except Exception:  # an agent of the protocol whose init cannot be traced: no estimate
        return
    state = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes))
    if jax.default_backend() == "cpu":
        need, have, where = 3 * state, available_memory(), "memory available"
    else:
        limits = [(d.memory_stats() or {}).get("bytes_limit") for d in jax.local_devices()]
        need, where = 2 * state, f"{jax.default_backend().upper()} memory"
        have = sum(limits) if limits and None not in limits else None
    if have is not None and need > have:
        gib = 1024**3
        raise ConfigError(
            f"population = {population} needs at least {need / gib:.1f} GiB "
            f"({state / population / 1024**2:.2f} MiB of state per member, held {need // state} "
            f"times), but this machine has {have / gib:.1f} GiB {where}; lower the population "
            "(or the agent's sizes in [agent_options])"
        )


def build_agent(settings: VectorSettings):
    """The agent a run trains, on the devices it asks for; an agent that cannot be built (an
    unknown env, bad agent options) is the config's error."""
    from gpbt.rl.agents import make_agent

    configure_devices(settings.devices)
    try:
        return make_agent(settings.agent, settings.env, settings.agent_options)
    except (ValueError, TypeError, ImportError) as err:
        raise ConfigError(str(err)) from None


@lru_cache(maxsize=64)
def _agent_defaults(agent: str, env: str, options: str) -> dict[str, Any]:
    """The agent's default hyperparameters (what `start_points = ["defaults"]` resolves to),
    built once per agent, env and options: a suite resolves them for every cell, and a PPO
    takes a tenth of a second or more to build. The space is checked against the agent by
    `preflight` when the run starts."""
    from gpbt.rl.agents import make_agent

    try:
        return make_agent(agent, env, json.loads(options)).default_hyperparameters()
    except (ValueError, TypeError, ImportError) as err:
        raise ConfigError(str(err)) from None


def preflight(spec: RunSpec, settings: VectorSettings | None = None):
    """Build the agent and check the space against it: every config error surfaces here, in
    the caller's process, before a folder is made or anything trains."""
    settings = settings or VectorSettings.of(spec)
    agent = build_agent(settings)
    check_space_against_agent(spec.space, agent, settings.hyperparameters)
    check_interval_against_agent(spec, agent, settings.hyperparameters)
    check_memory(agent, spec.population)
    return agent


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """(meta, leaves) of a population checkpoint written by `VectorRun._save_checkpoint`:
    meta holds generation, configs, scheduler state, scores; the leaves, in the order of
    `jax.tree_util.tree_leaves(state)`, carry the population on their first axis."""
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        n = sum(1 for k in data.files if k.startswith("leaf"))
        leaves = [data[f"leaf{i}"] for i in range(n)]
    return meta, leaves


def _write_npz(path: Path, meta: bytes, arrays: dict[str, np.ndarray]) -> None:
    """Write a checkpoint atomically and durably: a temporary file, fsynced, renamed over
    `path`, then the folder fsynced, since a rename lives in the folder and is not on disk
    until the folder is (docs/reliability.md): only then may the store name the file."""
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        _fsync_folder(folder.parent)  # the new folder's own entry
    tmp = path.with_suffix(".tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.frombuffer(meta, dtype=np.uint8), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    """Make the entries of `folder` (a rename, a new file) durable; POSIX only."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VectorRun:
    """One experiment folder driven by the vector engine (used inside the child process)."""

    def __init__(self, spec: RunSpec, folder: str | Path, emit=None, agent=None):
        """`agent`: the one `preflight` already made for this spec; without it the agent is
        built and checked here (`preflight`), before the store is opened: a config error
        writes nothing."""
        self.cfg = spec = spec_for(ENGINE, spec)
        self.settings = settings = VectorSettings.of(spec)
        self.folder = Path(folder)
        self.emit = emit or (lambda event: None)
        self.space = spec.space
        if agent is None:
            agent = preflight(spec, settings)
        self.agent = agent
        self.scheduler = spec.scheduler()
        self.population = spec.population
        self.interval = int(spec.perturbation_interval)
        self.total = int(spec.total_steps)
        self.generations = math.ceil(self.total / self.interval)
        every = max(1, round(spec.checkpoint_interval / self.interval))
        self.checkpoint_every = every
        self.store = ExperimentStore(self.folder)
        # one background thread writes checkpoint files while training goes on
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpbt-checkpoint")
        self._pending_checkpoint = None

    # ------------------------------------------------------------------ state on disk
    def member_hyperparameters(self) -> list[dict[str, Any]]:
        """What each member is given: the run's fixed `[hyperparameters]` under its config."""
        return [{**self.settings.hyperparameters, **c} for c in self.configs]

    def _hp(self):
        return self.agent.hyperparameters_to_arrays(self.member_hyperparameters())

    def _save_checkpoint(self, generation: int) -> None:
        """Snapshot the population now; write the file in the background.

        The device arrays are copied to host memory here (the next `train` call may reuse
        their buffers), and the scheduler state is serialised now; compressing, writing and
        fsyncing the file happen on the writer thread while the next interval trains, so a
        checkpoint costs the run a memory copy instead of a disk flush. The writer records
        the checkpoint in the store as soon as its file is durable, not later: a run stopped
        after generation g resumes from g, and one killed mid-write from the previous one.
        """
        import jax

        self._wait_for_checkpoint()  # one write in flight at a time, in order
        leaves = jax.tree_util.tree_leaves(self.state)
        arrays = {f"leaf{i}": np.array(x, copy=True) for i, x in enumerate(leaves)}
        meta = {
            "generation": generation,
            "configs": self.configs,
            "scheduler": self.scheduler.state_dict(),
            "scores": self.last_scores,
            "eval_key": int(self.eval_key_counter),
        }
        blob = json.dumps(meta).encode()
        path = self.folder / CHECKPOINT_DIR / f"gen{generation:06d}.npz"
        self._pending_checkpoint = self._writer.submit(
            self._write_checkpoint, generation, path, blob, arrays
        )

    def _wait_for_checkpoint(self, quiet: bool = False) -> None:
        """Wait for the checkpoint being written in the background. A failed write raises
        here, in the training loop; `quiet` (an exception is already on its way) skips it."""
        future, self._pending_checkpoint = self._pending_checkpoint, None
        if future is None:
            return
        if quiet and future.exception() is not None:
            return
        future.result()

    def _write_checkpoint(self, generation: int, path: Path, blob: bytes, arrays) -> None:
        """On the writer thread: write the file, record it in the store once it is durable,
        then drop the files older than the newest few."""
        _write_npz(path, blob, arrays)
        self.store.add_checkpoint(
            generation * self.interval,
            str(path.relative_to(self.folder)),
            members=list(range(self.population)),
            meta={"generation": generation},
        )
        # Keep the newest few: a resume starts from the latest one, or the one before it
        # when the latest cannot be read.
        for old in sorted(path.parent.glob("gen[0-9]*[0-9].npz"))[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)

    def _load_checkpoint(self, record: dict) -> int:
        import jax

        path = self.folder / record["path"]
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            template = self.agent.init(self._key(), self.population)
            treedef = jax.tree_util.tree_structure(template)
            n = treedef.num_leaves
            leaves = [jax.numpy.asarray(data[f"leaf{i}"]) for i in range(n)]
        self.state = jax.tree_util.tree_unflatten(treedef, leaves)
        self.configs = meta["configs"]
        self.scheduler.load_state_dict(meta["scheduler"])
        self.last_scores = {int(k): v for k, v in meta["scores"].items()}
        self.eval_key_counter = meta["eval_key"]
        return int(meta["generation"])

    def _restore_latest(self) -> int | None:
        """Load the newest checkpoint that can be read and return its generation (None: no
        checkpoint). One that is missing or damaged (a disk fault, a power cut) is passed over
        for the one before it, with a notice saying so: the run is deterministic, so the
        generations in between are trained again to the same result."""
        unreadable = []
        for record in reversed(self.store.checkpoints()):
            try:
                generation = self._load_checkpoint(record)
            except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
                unreadable.append(f"{record['path']} ({type(err).__name__}: {err})")
                continue
            if unreadable:
                self._notice(
                    f"checkpoint {'; '.join(unreadable)} cannot be read; resuming from "
                    f"{record['path']} (generation {generation}) instead"
                )
            return generation
        if unreadable:
            self._notice(
                f"no checkpoint can be read ({'; '.join(unreadable)}); starting again from "
                "generation 0, which trains to the same result"
            )
        return None

    def _notice(self, message: str) -> None:
        self.emit({"type": "notice", "message": message})

    def _key(self):
        import jax

        # Weights and env seeds come from the experiment seed alone, never from the method:
        # every method with the same seed starts from the same population.
        return jax.random.key(self.cfg.seed)

    # ------------------------------------------------------------------ the loop
    def start(self, resume: bool) -> int:
        """Initialise (or restore) and return the first generation still to train."""
        stored = self.store.read_config()
        if resume and stored is None:
            raise ConfigError(f"{self.folder} has no experiment to resume")
        self.store.write_config(self.cfg.to_dict())
        generation = self._restore_latest() if resume else None
        if generation is not None:
            removed = self.store.truncate_after(generation * self.interval)
            self.emit({"type": "resumed", "generation": generation, "removed": removed})
            self.emit({"type": "initialised", "generation": generation})
            return generation
        # A fresh start (or a resume before the first checkpoint): begin from scratch, and
        # drop anything a killed first attempt wrote.
        self.store.truncate_after(-1)
        self.configs = self.scheduler.initial_population(self.population)
        self.state = self.agent.init(self._key(), self.population)
        self.last_scores = {}
        self.eval_key_counter = 0
        self.emit({"type": "initialised", "generation": 0})
        return 0

    def run(self, resume: bool = False, started: float | None = None) -> Summary:
        """Train to the end and finish; `started` (a `time.time()`) is when the run began, for
        a supervisor that restarted it: the summary's wall time counts every attempt."""
        started = time.time() if started is None else started
        generation = self.start(resume)
        self._set_execution()
        self._hp_arrays = self._hp()
        compiles_at_start = self.agent.compile_count
        times = [g * self.interval for g in range(1, self.generations)] + [self.total]
        try:
            Lockstep(
                self.scheduler,
                self,
                times,
                store=self.store,
                emit=self.emit,
                checkpoint_every=self.checkpoint_every,
            ).run(self.configs, first=generation + 1)
        except BaseException:
            # Interrupted (Ctrl-C, an error): the checkpoint being written is finished and
            # recorded first, so a resume starts from the newest generation it covers.
            self._wait_for_checkpoint(quiet=True)
            raise
        self._wait_for_checkpoint()
        return self.finish(
            compilations_during_run=self.agent.compile_count - compiles_at_start,
            wall_seconds=time.time() - started,
            execution=self.execution,
        )

    # ------------------------------------------------------------------ the population
    # (gpbt.engines.lockstep.Population: the lockstep loop calls these)
    def train(self, generation: int, until: int) -> Trained:
        import jax

        # Each member trains up to `until` in its own total: a member whose whole updates
        # overshot the last interval's end trains that much less in this one, so over a
        # run every member gets the same env steps to within one of its batches.
        done = np.asarray(jax.device_get(self.state.total_env_steps), np.int64)
        steps = np.maximum(until - done, 0)
        if os.environ.get("GPBT_TEST_HANG_AT") == str(generation):
            marker = self.folder / "hang-once"
            if not marker.exists():
                marker.write_text("hung")
                time.sleep(3600)  # simulates a stuck XLA call for the watchdog test
        self.state, metrics = self.agent.train(self.state, self._hp_arrays, steps)
        metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        scores = self._scores(metrics)
        eval_returns = None
        if self.settings.eval_episodes > 0:
            eval_returns = np.asarray(
                self.agent.evaluate(
                    self.state, jax.random.key(10_000 + generation), self.settings.eval_episodes
                )
            )
            if self.cfg.metric == "eval_return":
                scores = {i: float(eval_returns[i]) for i in range(self.population)}
        self._generation_scores = scores
        env_steps_total = np.asarray(jax.device_get(self.state.total_env_steps))
        rows = []
        for i in range(self.population):
            m = {k: float(v[i]) for k, v in metrics.items()}
            m["env_steps_total"] = float(env_steps_total[i])
            if eval_returns is not None:
                m["eval_return"] = float(eval_returns[i])
            rows.append(m)
        return Trained(scores, rows)

    def copy_members(self, index: np.ndarray) -> None:
        import jax

        # A copy carries its donor's weights: until it finishes an episode of its own it
        # reports the donor's score, not the one it lost with (which would tell PB2 that the
        # new config made the score fall).
        scores = self._generation_scores
        self.last_scores.update({i: scores[int(j)] for i, j in enumerate(index) if j != i})
        self.state = jax.block_until_ready(self.agent.gather(self.state, index))

    def set_configs(self, configs: list[dict[str, Any]]) -> None:
        self.configs = list(configs)
        self._hp_arrays = self._hp()

    def save(self, generation: int, configs: list[dict[str, Any]]) -> None:
        self.configs = list(configs)
        self._save_checkpoint(generation)

    def _set_execution(self) -> None:
        """Decide once per run how the population trains (gpbt.rl.execution): a run whose
        space tunes a structural hyperparameter trains member by member on CPU, so that no
        member waits for another; otherwise in lockstep. Deciding from the space, not from
        the current configs, keeps one program for the whole run."""
        import jax

        from gpbt.rl.execution import resolve_strategy

        if not hasattr(self.agent, "set_execution"):  # an agent of the protocol, not ours
            self.execution = {"strategy": "the agent's own", "devices": None}
            return
        tuned = set(self.space.names) & set(self.agent.structural_hyperparameters)
        strategy = resolve_strategy(
            self.settings.execution,
            structural_varies=bool(tuned),
            platform=jax.default_backend(),
        )
        self.agent.set_execution(strategy, self.settings.devices)
        devices = self.agent.devices_for(strategy, self.population)
        self.execution = {"strategy": strategy, "devices": devices}

    def _scores(self, metrics: dict[str, np.ndarray]) -> dict[int, float]:
        """Mean return of the episodes finished this generation; a member that finished none
        keeps its previous score (long episodes can span an interval). NaN stays NaN."""
        out = {}
        for i in range(self.population):
            if metrics["episodes"][i] > 0:
                out[i] = float(metrics["episode_return"][i])
            else:
                out[i] = float(self.last_scores.get(i, math.nan))
        self.last_scores = dict(out)
        return out

    def _announce_evaluation(self, episodes: int) -> None:
        """Tell the supervisor an evaluation of `episodes` episodes per member starts, and how
        long it may take: not a generation's `watchdog_seconds`, but that many for every
        interval's worth of env steps the episodes can last (evaluating costs less than
        training), plus the time to compile the evaluation program."""
        from gpbt.engines.supervisor import STARTUP_ALLOWANCE_S

        env = getattr(self.agent, "env", None)
        # an agent that does not say how long its episodes last: one interval each
        longest = getattr(env, "max_episode_steps", None) or self.interval
        intervals = max(1, math.ceil(episodes * longest / self.interval))
        limit = self.settings.watchdog_seconds * intervals + STARTUP_ALLOWANCE_S
        self.emit({"type": "evaluating", "episodes": episodes, "watchdog_s": limit})

    def finish(self, **details: Any) -> Summary:
        """Select, then test (gpbt.core.selection): evaluate every member greedily on the
        selection key, pick the best, and score it on fresh test episodes (another key). The
        selection key is the one the final evaluation always used, so `final_best` (the
        selection maximum, a winner's curse) stays comparable with earlier runs. Records the
        summary, which marks the run done."""
        import jax

        n = self.settings.final_eval_episodes
        m = self.settings.test_episodes or n
        self._announce_evaluation(n)
        selection = np.asarray(self.agent.evaluate(self.state, jax.random.key(SELECTION_KEY), n))
        self._announce_evaluation(m)
        test = np.asarray(self.agent.evaluate(self.state, jax.random.key(TEST_KEY), m))
        chosen = select_then_test(selection, test)
        by_training = pick([self.last_scores.get(i, math.nan) for i in range(self.population)])
        self.store.set_state(
            "final_evaluation",
            {
                "episodes": n,
                "returns": [float(x) for x in selection],
                "test_episodes": m,
                "test_returns": [float(x) for x in test],
                "selected": chosen.member,
                "selected_by_training": by_training,
            },
        )
        best = chosen.member if chosen.member is not None else 0
        exploits = self.store.exploit_count()  # the whole run's, earlier attempts included
        finite = selection[np.isfinite(selection)]
        summary = Summary(
            engine="vector",
            method=self.cfg.method,
            folder=str(self.folder),
            best_member=best,
            best_score=chosen.test,
            score_basis=score_basis(n, m),
            population_mean=chosen.test_mean,
            best_config=self.configs[best],
            exploits=exploits,
            finished=True,
            wall_seconds=details.pop("wall_seconds", None),
            final_configs=[dict(self.configs[i]) for i in range(self.population)],
            hyperparameter_bounds=_bounds_of(self.agent),
            details={
                "final_eval_episodes": n,
                "test_episodes": m,
                # the winner's-curse figure earlier versions reported as the best score
                "final_best": float(finite.max()) if len(finite) else math.nan,
                "selection_score": chosen.selection,
                **details,
            },
        )
        self.store.set_state("summary", summary.to_dict())
        return summary


def _bounds_of(agent: Any) -> dict[str, tuple[float, float]]:
    """The agent's own hyperparameter limits (part of the agent protocol; preflight checks
    the space against them), as plain floats for the summary."""
    return {k: (float(lo), float(hi)) for k, (lo, hi) in agent.hyperparameter_bounds().items()}


# ---------------------------------------------------------------------- the supervisor
def _child(spec: RunSpec, folder: str, resume: bool, started: float, events: mp.Queue) -> None:
    from gpbt.engines.children import die_with_parent
    from gpbt.engines.supervisor import stop_gracefully_on_signals

    die_with_parent()  # a killed `gpbt run` must not leave this process writing to the store
    stop_gracefully_on_signals()  # Ctrl-C: finish and record the checkpoint being written

    def emit(event: dict) -> None:
        events.put(event)

    try:
        _enable_compilation_cache()
        # the spec is checked against the agent here (`preflight`), the one place that builds
        # it: a config error is reported before the store is opened, and the parent, which
        # holds the folder's lock, removes the folder it made for this run
        run = VectorRun(spec, folder, emit)
        summary = run.run(resume=resume, started=started)
        emit({"type": "done", "summary": summary})
    except ConfigError as err:
        emit({"type": "error", "kind": "config", "message": str(err)})
    except KeyboardInterrupt:
        emit({"type": "error", "kind": "interrupted", "message": "interrupted"})
    except BaseException as err:  # the parent must hear about every failure
        emit(
            {
                "type": "error",
                "kind": "failed",
                "message": failure_message(err, folder),
                "traceback": traceback.format_exc(),
            }
        )
    finally:
        # the run has ended and said how: a late Ctrl-C must not print a traceback here
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def failure_message(err: BaseException, folder: str | Path) -> str:
    """One line for an error raised while training. Not retried: the run is deterministic,
    so a retry from the last checkpoint meets the same error (only a death or a hang of the
    training process, which no exception reports, is retried). A full disk or an unwritable
    folder is the store's own one line (gpbt.store.faults), which says how to continue."""
    fault = storage_fault(err, folder, "training")
    if fault is not None:
        return str(fault)
    then = f"then `gpbt resume {folder}` continues from the last checkpoint"
    if isinstance(err, GpbtError):
        return str(err)
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})" if frame else ""
    return (
        f"training stopped on {type(err).__name__}: {err}{where}; not retried, since the run "
        f"is deterministic and would stop the same way again; once the cause is fixed, {then}"
    )


def run_vector(
    spec: RunSpec | dict[str, Any],
    folder: str | Path,
    *,
    resume: bool = False,
    on_event: OnEvent | None = None,
    supervise: bool = True,
) -> Summary:
    """Run (or resume) an experiment and return its `Summary` (`run_engine` with this
    engine). `spec` is a `RunSpec` (a plain config dict is validated into one). `on_event`
    gets the run's events as they happen (initialised, generation, resumed, restart).
    `supervise=False` runs in this process (no watchdog); tests and notebooks may prefer it.
    The folder is locked while the run is live: a second run or resume on it is refused.
    """
    return run_with(ENGINE, spec, folder, resume=resume, on_event=on_event, supervise=supervise)


def _prepare(
    spec: RunSpec, folder: Path, *, resume: bool, on_event: OnEvent | None, supervise: bool
):
    """The run trains in a watched child process (`_supervise`), which builds the agent and
    checks the spec against it (`preflight`) before it writes anything: the agent is built
    once, there, and this process does not wait for a build of its own before starting the
    child. With `supervise=False` the run trains here, checked before the folder is locked."""
    settings = VectorSettings.of(spec)
    agent = None if supervise else preflight(spec, settings)

    def run(live_log: LiveLog | None) -> Summary:
        events = partial(_dispatch, on_event, live_log)
        if not supervise:
            _enable_compilation_cache()
            return VectorRun(spec, folder, events, agent=agent).run(resume=resume)
        return _supervise(spec, folder, resume, events, settings.watchdog_seconds)

    return run


def _dispatch(on_event: OnEvent | None, live_log: LiveLog | None, event: dict) -> None:
    """An engine event to the caller's `on_event` and to the live log (TensorBoard, W&B); a
    notice (a checkpoint passed over) also to the `gpbt` logger, which without a logging
    setup prints it on stderr."""
    if event["type"] == "notice":
        logging.getLogger("gpbt").warning("gpbt: %s", event["message"])
    if on_event is not None:
        on_event(event)
    if live_log is not None and event["type"] == "initialised":
        # the child has checked the spec and made the population: the run will record, so
        # W&B starts now, a whole interval before the first rows reach it
        live_log.open()
    if live_log is not None and event["type"] == "generation":
        live_log.log_reports(event["reports"])
        live_log.log_decisions(event["decisions"])


def _supervise(
    spec: RunSpec, folder: Path, resume: bool, on_event: OnEvent, watchdog_seconds: float
) -> Summary:
    """Train in a watched child (gpbt.engines.supervisor); restart it from the last checkpoint
    when it dies or hangs, at most MAX_WATCHDOG_RESTARTS times, logging each restart. An error
    the child reports is not retried (`failure_message` says why)."""
    restarts = 0
    started = time.time()
    while True:
        end = watch_child(
            _child,
            (spec, str(folder), resume, started),
            watchdog=Watchdog(watchdog_seconds),
            on_event=on_event,
            final=("done", "error"),
        )
        outcome = end.final or {}
        if outcome.get("type") == "done":
            return outcome["summary"]
        if outcome.get("kind") == "config":
            raise ConfigError(outcome["message"])
        if outcome.get("kind") == "interrupted":  # the child alone was stopped (SIGTERM)
            raise KeyboardInterrupt
        if outcome.get("kind") == "failed":
            raise TrainingFailed(outcome["message"], detail=outcome.get("traceback", ""))
        restarts += 1
        reason = end.problem
        with ExperimentStore(folder) as store:
            log = store.get_state("restarts") or {"events": []}
            log["events"].append({"reason": reason, "at": time.time()})
            store.set_state("restarts", log)
        if restarts > MAX_WATCHDOG_RESTARTS:
            raise TrainingFailed(
                f"training stopped {restarts} times; last: {reason}; everything recorded is "
                f"kept in {folder}, and `gpbt resume {folder}` continues from the last checkpoint"
            )
        on_event({"type": "restart", "reason": reason, "restarts": restarts})
        resume = True


ENGINE = Engine(
    "vector",
    options=OPTIONS,
    defaults=DEFAULTS,
    check_config=check_config,
    prepare=_prepare,
    default_hyperparameters=lambda spec: dict(
        _agent_defaults(
            spec["agent"], spec["env"], json.dumps(spec["agent_options"], sort_keys=True)
        )
    ),
    supports=("export", "retrain", "replay", "animate", "agent-limits"),
    driver="lockstep",
    weights="jax-member",
)
