"""How a population's training program runs on the machine: which members share one vmapped
program, and on which devices.

A population agent writes one program, ``_train_impl(state[P], hp[P], budget[P])``, vmapped over
its members. How that program is run is a separate choice, made here:

``lockstep``
    the whole population (or an equal share of it per device) in one vmapped program. Every
    vmapped phase is paid for all members of the program, so it runs at the pace of the member
    with most work and members in different phases pay for both; the best layout when members
    share their structural hyperparameters, and on accelerators, where a batch is nearly free.
``per-member``
    one compiled single-member program (the same ``_train_impl`` over a population of 1),
    called once per member: its ``while`` loops run exactly that member's own trip counts, so
    nobody waits for anybody. It loses vmap's batching of small operations (on CPU a member
    alone runs at about 0.75x its share of a homogeneous lockstep population), and wins as soon
    as members' structures differ. Its program has one shape whatever the population, so it
    compiles once for every member, population size and exploit.
``auto``
    lockstep on accelerators and for populations whose structural hyperparameters are all
    equal; per-member on CPU when they may differ (the engine decides once per run, from the
    search space, so a run never switches program half way; `PopulationAgent.train` decides
    per call from the members' current values).

Devices: every strategy spreads its work over ``devices`` devices (the backend's devices, or on
CPU one XLA host device per core: :func:`configure_host_devices` must run before JAX starts
its backend; the vector engine does so in its training process). Lockstep splits the
population into equal shards of at least two members (padded with a copy of the last member
that trains nothing and is dropped), one per device; per-member keeps a queue of members,
longest estimated work first, that one host thread per device drains, so a device that finishes
early takes the next member. The same compiled program runs on every device (XLA compiles one
copy per device, from one trace, so :attr:`compile_count` counts it once; :attr:`device_compiles`
counts the copies). The state is gathered back onto the first device after every call, so
exploits, evaluation and checkpoints see one ordinary array per leaf.

Why not one SPMD program (``shard_map``) over a device mesh: it compiles once, but XLA:CPU
compiles a partitioned program differently from a single-device one, and a member's results
then depend (in the last bits, then chaotically) on how many devices the machine has. Separate
single-device programs give the same bits on every device, for any device count, any padding
and any assignment of members to devices: a run resumed on a machine with another core count
continues exactly.

Equivalence (checked by the tests): per-member equals a member trained alone (lockstep over a
population of 1), bit for bit, whatever the device count; lockstep over shards of two or more
members equals unsharded lockstep bit for bit. Lockstep and per-member run the same steps in the
same order with the same random streams (env steps, updates and optimiser steps are
identical), but XLA:CPU simplifies the batched and the single-member program differently (a
division by a per-member scalar becomes a multiplication by its reciprocal in one of them), so
their weights differ by float rounding after the first update and their trajectories drift
apart over a run; docs/ppo.md gives the measured size.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "STRATEGIES",
    "PopulationRunner",
    "available_cores",
    "configure_host_devices",
    "resolve_strategy",
]

STRATEGIES = ("auto", "lockstep", "per-member")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_host_devices(devices: int = 0) -> int:
    """Give JAX's CPU backend ``devices`` host devices (0: one per available core), if the
    backend has not started yet and the user has not chosen a count; returns the CPU device
    count in effect. Must run before any JAX computation of the process: afterwards the backend
    keeps the devices it started with (and this returns that count)."""
    flags = os.environ.get("XLA_FLAGS", "")
    chosen = jax.config.jax_num_cpu_devices
    if "xla_force_host_platform_device_count" not in flags and chosen in (-1, None):
        try:
            jax.config.update("jax_num_cpu_devices", int(devices) or available_cores())
        except RuntimeError:
            pass  # the backend is already running: keep what it has
    return len(jax.devices("cpu"))


def resolve_strategy(requested: str, *, structural_varies: bool, platform: str) -> str:
    """The concrete strategy for ``requested`` (one of :data:`STRATEGIES`)."""
    if requested not in STRATEGIES:
        raise ValueError(f"execution = {requested!r} is not known; use one of {list(STRATEGIES)}")
    if requested != "auto":
        return requested
    # On an accelerator a vmapped batch costs little more than one member, so lockstep wins
    # even when members wait for each other; on CPU each masked member costs real time.
    if platform != "cpu" or not structural_varies:
        return "lockstep"
    return "per-member"


def _take_rows(tree: Any, idx: jax.Array) -> Any:
    return jax.tree.map(lambda x: x[idx], tree)


def _concat_rows(trees: Sequence[Any], population: int) -> Any:
    return jax.tree.map(lambda *xs: jnp.concatenate(xs)[:population], *trees)


def _signature(tree: Any) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((x.shape, x.dtype, getattr(x, "weak_type", False)) for x in leaves)


class PopulationRunner:
    """Runs one agent's ``_train_impl`` under a strategy over devices (see the module notes).

    ``train_jit`` is the agent's ``jax.jit(_train_impl)``: unsharded lockstep calls it exactly
    as before, and every other layout lowers it (one trace per shape) and compiles a copy per
    device.
    """

    def __init__(self, train_jit: Callable) -> None:
        self._train_jit = train_jit
        self._take = jax.jit(_take_rows)
        self._concat = jax.jit(_concat_rows, static_argnums=1)
        self._compiled: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.device_compiles = 0

    # ------------------------------------------------------------------ planning
    @staticmethod
    def devices(limit: int = 0) -> list:
        """The devices a run may use: the default backend's, at most ``limit`` (0: all)."""
        devs = jax.devices()
        return devs[: int(limit)] if limit else devs

    @staticmethod
    def lockstep_shards(population: int, devices: int) -> int:
        # Two members or more per shard: a one-member program is compiled as unbatched code,
        # whose floats differ from the batched program's (see the module notes).
        return max(1, min(devices, population // 2))

    # ------------------------------------------------------------------ running
    def train(
        self,
        state: Any,
        hp: dict[str, jax.Array],
        budget: np.ndarray,
        strategy: str,
        devices: Sequence,
        costs: np.ndarray | None = None,
    ) -> tuple[Any, dict]:
        """Train every member; ``strategy`` is ``"lockstep"`` or ``"per-member"``."""
        population = int(budget.shape[0])
        if strategy == "lockstep":
            shards = self.lockstep_shards(population, len(devices))
            if shards == 1:
                return self._train_jit(state, hp, jnp.asarray(budget, jnp.int32))
            size = math.ceil(population / shards)
            rows = np.minimum(np.arange(shards * size), population - 1)
            # A padding row repeats the last member with no budget; its output is dropped.
            padded = np.where(np.arange(shards * size) < population, budget[rows], 0)
            tasks = [
                (rows[k * size : (k + 1) * size], padded[k * size : (k + 1) * size])
                for k in range(shards)
            ]
            devices = devices[:shards]
        elif strategy == "per-member":
            # Longest estimated work first: the last members to start are the short ones, so
            # the devices finish close together.
            order = np.argsort(-costs, kind="stable") if costs is not None else range(population)
            tasks = [(np.asarray([i]), budget[i : i + 1]) for i in order]
            devices = devices[:population]
        else:
            raise ValueError(f"strategy must be 'lockstep' or 'per-member', got {strategy!r}")
        # Commit the state to the device its outputs return to: the fresh population is not
        # committed to any device, and slicing it would otherwise compile the row-slicing
        # program a second time at the second generation (seen: +0.3 s there).
        state = jax.device_put(state, devices[0])
        outputs = self._run(state, hp, tasks, list(devices))
        if strategy == "per-member":
            outputs = [outputs[k] for k in np.argsort(np.asarray(order), kind="stable")]
        outputs = jax.device_put(outputs, devices[0])
        return self._concat(outputs, population)

    def _run(self, state: Any, hp: dict, tasks: list, devices: list) -> list:
        # Slice every task's rows on the state's own device first (cheap, asynchronous), in
        # this thread: the device threads below only copy, run and wait.
        inputs = [
            (*self._take((state, hp), jnp.asarray(rows, jnp.int32)), jnp.asarray(b, jnp.int32))
            for rows, b in tasks
        ]
        if len(devices) == 1:
            # One device runs the programs in dispatch order; no need to wait in between.
            return [self._call(devices[0], x) for x in inputs]
        pending = deque(range(len(tasks)))
        outputs: list[Any] = [None] * len(tasks)

        def drain(device) -> None:
            while True:
                with self._lock:
                    if not pending:
                        return
                    k = pending.popleft()
                # Wait for this task before taking the next: a device that is busy must not
                # queue work another device could start now.
                outputs[k] = jax.block_until_ready(self._call(device, inputs[k]))

        with ThreadPoolExecutor(len(devices), thread_name_prefix="gpbt-device") as pool:
            for future in [pool.submit(drain, d) for d in devices]:
                future.result()
        return outputs

    def _call(self, device, args: tuple) -> Any:
        args = jax.device_put(args, device)
        return self._program(device, args)(*args)

    def _program(self, device, args: tuple):
        key = (device.id, _signature(args))
        program = self._compiled.get(key)
        if program is not None:
            return program
        with self._lock:
            # Lowering traces (once per shape; later devices reuse the trace): one thread at
            # a time, so the agent's compile_count sees exactly one trace.
            lowered = self._train_jit.lower(*args)
        program = lowered.compile()  # a copy for this device; other threads compile theirs
        with self._lock:
            if key not in self._compiled:
                self._compiled[key] = program
                self.device_compiles += 1
            return self._compiled[key]
