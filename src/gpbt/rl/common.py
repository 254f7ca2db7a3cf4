"""What every population agent shares (PPO, IMPALA and agents users write): keys,
hyperparameter arrays, the exploit gather, evaluation, and the checks that keep their jitted
programs compiled once.

An agent subclasses `PopulationAgent` and provides `init`, `_train_impl`, `_eval_action`,
`default_hyperparameters`, `hyperparameter_bounds`, `hyperparameter_names`, and optionally
`_act_impl` (for `act`), `effective_hyperparameters` (the default checks bounds and fills in
defaults), `int_hyperparameters` and `max_update_steps` (the most env steps one update may
take, so a budget never overflows int32). The contract, public and stable, is documented in
`gpbt.rl.protocol`, which also checks an agent against it.
How `train` lays the population out on the machine (lockstep or member by member, over how many
devices) is `gpbt.rl.execution`'s job; an agent may name its structural hyperparameters and
estimate each member's work for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gpbt.rl.execution import PopulationRunner, resolve_strategy

__all__ = ["PopulationAgent", "as_key", "checked_hidden_sizes"]


def as_key(key: Any) -> jax.Array:
    """A typed PRNG key from a typed key, raw uint32 key data or anything array-like."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key.astype(jnp.uint32))


def checked_hidden_sizes(config_name: str, sizes: Any) -> tuple[int, ...]:
    """A config's MLP widths as a tuple of positive ints, or one error naming the field."""
    if not sizes or any(int(h) < 1 for h in sizes):
        raise ValueError(f"{config_name}.hidden_sizes must be positive ints, got {sizes}")
    return tuple(int(h) for h in sizes)


class PopulationAgent:
    """The population-level entry points of an agent whose members are a stacked pytree.

    The state is a ``flax.struct.dataclass`` with a leading population axis ``[P]`` on every
    leaf, including ``rng`` (each member's raw uint32 key data) and ``total_env_steps`` (int32,
    the env steps each member has trained). A subclass calls ``_compile_entry_points()`` at the
    end of ``__init__`` and counts its traces in ``compile_count`` (``self.compile_count += 1``
    at the top of ``_train_impl``). See `gpbt.rl.protocol` for the full contract.
    """

    hyperparameter_names: tuple[str, ...] = ()
    int_hyperparameters: frozenset[str] = frozenset()  # traced as int32, the rest as float32
    # Hyperparameters that shape a member's program (its loop trip counts): members that
    # differ in one of them wait for each other in lockstep.
    structural_hyperparameters: frozenset[str] = frozenset()
    max_update_steps: int = 0
    # How train runs: today's single vmapped program on one device unless set_execution says
    # otherwise (the vector engine does, from its `execution` and `devices` keys).
    execution: str = "lockstep"
    execution_devices: int = 1
    compile_count: int = 0  # programs traced so far (instances count their own)

    def _compile_entry_points(self) -> None:
        self._train_jit = jax.jit(self._train_impl)
        self._runner = PopulationRunner(self._train_jit)
        self._gather_jit = jax.jit(self._gather_impl)
        self._eval_jit = jax.jit(self._evaluate_impl, static_argnums=2)
        self._act_jit = jax.jit(self._act_impl, static_argnums=3)

    # ------------------------------------------------------------------ execution
    def set_execution(self, strategy: str = "auto", devices: int = 0) -> None:
        """Choose how ``train`` runs the population (see :mod:`gpbt.rl.execution`):
        ``"lockstep"``, ``"per-member"`` or ``"auto"`` (decided per call from the members'
        structural hyperparameters), over at most ``devices`` devices (0: all the backend has).
        Results do not depend on the device count; they differ between lockstep and
        per-member in the last bits of the floats (documented in docs/ppo.md)."""
        resolve_strategy(strategy, structural_varies=False, platform="cpu")  # validates
        if int(devices) < 0:
            raise ValueError(f"devices must be >= 0 (0: all), got {devices}")
        self.execution, self.execution_devices = strategy, int(devices)

    def member_costs(self, hp: Mapping[str, np.ndarray], budget: np.ndarray) -> np.ndarray:
        """A rough relative cost of training each member for its budget; only its order
        matters (the per-member strategy starts the longest members first)."""
        return budget.astype(np.float64)

    @property
    def device_compiles(self) -> int:
        """Compiled copies of the training program made for devices beyond `compile_count`'s
        traces (one per device and program shape when training is spread over devices)."""
        return self._runner.device_compiles

    def execution_plan(self, hp: Mapping[str, Any]) -> tuple[str, int]:
        """The strategy and device count ``train`` uses for these hyperparameter arrays."""
        host = {k: np.asarray(v) for k, v in hp.items()}
        population = next(iter(host.values())).shape[0]
        varies = any(np.unique(host[n]).size > 1 for n in self.structural_hyperparameters)
        strategy = resolve_strategy(
            self.execution, structural_varies=varies, platform=jax.default_backend()
        )
        return strategy, self.devices_for(strategy, population)

    def devices_for(self, strategy: str, population: int) -> int:
        """The devices ``train`` spreads ``population`` members over under a concrete
        ``strategy`` ("lockstep" or "per-member"), within ``set_execution``'s device limit."""
        devices = len(self._runner.devices(self.execution_devices))
        if strategy == "lockstep":
            devices = self._runner.lockstep_shards(population, devices)
        return min(devices, population)

    # ------------------------------------------------------------------ what a subclass writes
    def init(self, key: Any, population: int) -> Any:
        """A population state of ``population`` members from ``key`` (the same key gives the
        same population)."""
        raise NotImplementedError(f"{type(self).__name__}.init(key, population) is not written")

    def default_hyperparameters(self) -> dict[str, float]:
        """The value of every hyperparameter a config leaves out."""
        raise NotImplementedError(f"{type(self).__name__}.default_hyperparameters() is not written")

    def hyperparameter_bounds(self) -> dict[str, tuple[float, float]]:
        """Allowed ``(low, high)`` of every hyperparameter, given this agent's static sizes."""
        raise NotImplementedError(f"{type(self).__name__}.hyperparameter_bounds() is not written")

    def _train_impl(self, state: Any, hp: dict[str, jax.Array], budget: jax.Array):
        """Traced once: train member ``i`` for at least ``budget[i]`` env steps with
        ``hp[name][i]``; return ``(state, metrics)``, metrics ``{name: [P]}`` with at least
        ``episode_return`` (mean return of the episodes finished, NaN if none) and ``episodes``
        (their count)."""
        raise NotImplementedError(f"{type(self).__name__}._train_impl is not written")

    def _act_impl(self, state: Any, obs: jax.Array, key: jax.Array, greedy: bool) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} does not implement act()")

    # ------------------------------------------------------------------ hyperparameters
    def effective_hyperparameters(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The values a member really trains with: defaults filled in, each value checked
        against its bound (override to add checks between hyperparameters)."""
        return {**self.default_hyperparameters(), **self._checked_values(config)}

    def _checked_values(
        self, config: Mapping[str, Any], range_note: Callable[[str], str] = lambda name: ""
    ) -> dict[str, float]:
        """Each given value as a float inside its bound, or one error naming the
        hyperparameter and the allowed range (`range_note(name)` says what sets it)."""
        agent = type(self).__name__
        unknown = sorted(set(config) - set(self.hyperparameter_names))
        if unknown:
            raise ValueError(
                f"unknown {agent} hyperparameter(s) {unknown}; "
                f"known: {', '.join(self.hyperparameter_names)}"
            )
        bounds = self.hyperparameter_bounds()
        out: dict[str, float] = {}
        for name, value in config.items():
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"hyperparameter {name!r} must be a number, got {value!r}"
                ) from None
            lo, hi = bounds[name]
            if not (math.isfinite(x) and lo <= x <= hi):
                raise ValueError(
                    f"hyperparameter {name!r} = {value!r} is outside its allowed range "
                    f"[{lo:g}, {hi:g}]" + range_note(name)
                )
            out[name] = x
        return out

    def hyperparameters_to_arrays(
        self, configs: Sequence[Mapping[str, Any]]
    ) -> dict[str, jax.Array]:
        """Per-member dicts (missing keys take defaults) -> ``{name: array [P]}`` for ``train``."""
        if isinstance(configs, Mapping):
            raise TypeError("hyperparameters_to_arrays takes a list of dicts, one per member")
        rows = [self.effective_hyperparameters(c) for c in configs]
        if not rows:
            raise ValueError("hyperparameters_to_arrays needs at least one member")
        return {
            name: jnp.asarray(
                [r[name] for r in rows],
                jnp.int32 if name in self.int_hyperparameters else jnp.float32,
            )
            for name in self.hyperparameter_names
        }

    def _canonical_hp(self, hp: Any, population: int) -> dict[str, jax.Array]:
        # Validate and fix dtypes here, outside jit: a float array where an int32 was traced
        # before (or a wrong shape) would silently compile a second program.
        if isinstance(hp, Sequence) and not isinstance(hp, Mapping):
            hp = self.hyperparameters_to_arrays(hp)
        if not isinstance(hp, Mapping) or set(hp) != set(self.hyperparameter_names):
            got = sorted(hp) if isinstance(hp, Mapping) else type(hp).__name__
            raise ValueError(
                "hp must be the output of hyperparameters_to_arrays (keys "
                f"{', '.join(self.hyperparameter_names)}), got {got}"
            )
        arrays = {k: np.asarray(v) for k, v in hp.items()}
        for k, v in arrays.items():
            if v.shape != (population,):
                raise ValueError(
                    f"hyperparameter {k!r} has shape {v.shape}, expected ({population},)"
                )
        rows = [{k: arrays[k][i] for k in arrays} for i in range(population)]
        return self.hyperparameters_to_arrays(rows)

    # ------------------------------------------------------------------ population
    @staticmethod
    def _gather_impl(state: Any, index: jax.Array) -> Any:
        out = jax.tree.map(lambda x: x[index], state)
        # A copy gets a random stream of its own, derived from the donor's by folding in the
        # copy's member index: deterministic, distinct from the donor's (which goes on with
        # splits of its key) and from every other copy of the same donor. Sharing the donor's
        # stream made clone and donor collect identical rollouts from then on, which removed
        # diversity in proportion to a method's exploit rate.
        members = jnp.arange(index.shape[0])
        fresh = jax.vmap(
            lambda r, i: jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(r), i))
        )(out.rng, members)
        copied = (index != members).reshape((-1,) + (1,) * (out.rng.ndim - 1))
        return out.replace(rng=jnp.where(copied, fresh, out.rng))

    def gather(self, state: Any, index: Any) -> Any:
        """Member ``i`` of the result is a full copy of member ``index[i]`` (the exploit step):
        everything the member carries (parameters, optimiser and normaliser statistics, any
        actor-side copies, its environments), except its random stream: a copy
        (``index[i] != i``) draws from a stream of its own, so it explores on from the donor's
        weights instead of replaying the donor's rollouts. The state's ``rng`` leaf holds each
        member's raw key data."""
        population = jax.tree.leaves(state)[0].shape[0]
        host = np.asarray(index)
        if host.shape != (population,) or not np.issubdtype(host.dtype, np.integer):
            raise ValueError(
                f"index must be an integer array of shape ({population},), got {host.dtype} "
                f"{host.shape}"
            )
        if host.min() < 0 or host.max() >= population:
            raise ValueError(f"index values must be in [0, {population - 1}], got {host.tolist()}")
        return self._gather_jit(state, jnp.asarray(host, jnp.int32))

    def act(self, state: Any, obs: Any, key: Any = None, greedy: bool = True) -> jax.Array:
        """Actions of every member for ``obs[i]`` (leading axis P, optionally a batch axis next).

        Sampling uses the same ``key`` for every member, so identical members act identically.
        """
        key = jax.random.key(0) if key is None else as_key(key)
        return self._act_jit(state, jnp.asarray(obs, jnp.float32), key, bool(greedy))

    def train(self, state: Any, hp: Any, env_steps_per_member: Any) -> tuple[Any, dict]:
        """Train every member for at least ``env_steps_per_member`` env steps (whole updates).

        ``env_steps_per_member`` is one number for every member or one per member (``[P]``;
        the vector engine gives each member what brings its own total to the interval's end,
        so an update's overshoot is carried into the next interval). It is traced, so any
        value reuses the compiled program.
        """
        population = int(state.total_env_steps.shape[0])
        budget = np.broadcast_to(np.asarray(env_steps_per_member), (population,))
        if not np.issubdtype(budget.dtype, np.integer) and not np.all(budget == np.round(budget)):
            raise ValueError(f"env_steps_per_member must be whole numbers, got {budget}")
        if budget.min() < 0 or budget.max() > 2**31 - 1 - self.max_update_steps:
            raise ValueError(
                f"env_steps_per_member must be in [0, 2**31 - 1), got {budget.tolist()}"
            )
        hp = self._canonical_hp(hp, population)
        budget = np.asarray(budget, np.int32)
        if self.execution == "lockstep" and self.execution_devices == 1:
            return self._train_jit(state, hp, jnp.asarray(budget))  # the original path
        host = {k: np.asarray(v) for k, v in hp.items()}
        strategy, _ = self.execution_plan(host)
        return self._runner.train(
            state,
            hp,
            budget,
            strategy,
            self._runner.devices(self.execution_devices),
            self.member_costs(host, budget),
        )

    # ------------------------------------------------------------------ evaluation
    def _eval_action(self, member: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
        """One member's evaluation actions for a batch of observations."""
        raise NotImplementedError

    def _evaluate_impl(self, state: Any, key: jax.Array, num_episodes: int) -> jax.Array:
        limit = int(self.env.max_episode_steps)

        def one(m: Any) -> jax.Array:
            k_reset, k_run = jax.random.split(key)
            obs, env_state = jax.vmap(self.env.reset)(jax.random.split(k_reset, num_episodes))

            def body(c):
                obs, env_state, ret, done, k, t = c
                k, k_step = jax.random.split(k)
                # An agent that samples while evaluating draws from its own stream, derived
                # from (not equal to) the env's key.
                action = self._eval_action(m, obs, jax.random.fold_in(k_step, 1))
                obs, env_state, reward, d, _ = jax.vmap(self.env.step)(
                    jax.random.split(k_step, num_episodes), env_state, action
                )
                ret = ret + jnp.where(done, 0.0, reward)
                return obs, env_state, ret, done | d, k, t + 1

            init = (obs, env_state, jnp.zeros(num_episodes), jnp.zeros(num_episodes, bool),
                    k_run, jnp.zeros((), jnp.int32))  # fmt: skip
            out = jax.lax.while_loop(lambda c: (~jnp.all(c[3])) & (c[5] < limit + 1), body, init)
            return out[2].mean()

        return jax.vmap(one)(state)

    def evaluate(self, state: Any, key: Any, num_episodes: int = 10) -> jax.Array:
        """Mean undiscounted return of ``num_episodes`` episodes per member, ``[P]``.

        Every member plays the same episodes (same key): common random numbers make the
        comparison between members sharper. Changing ``num_episodes`` compiles a new program.
        """
        if int(num_episodes) < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
        return self._eval_jit(state, as_key(key), int(num_episodes))
