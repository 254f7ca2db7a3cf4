"""The population-agent protocol: what the vector engine asks of an agent, public and stable.

The vector engine trains a whole population in one jitted program, so an agent is not one
learner but a *population* of them: its state is one pytree with a leading axis ``[P]`` on every
leaf, and its hyperparameters are arrays ``[P]`` traced into the program (changing a value never
recompiles). Any class with these members runs in the engine, chosen in a config file with
``agent = "my_module:MyAgent"`` (importable from the working directory) and built as
``MyAgent(env, **agent_options)``:

``hyperparameter_names``
    Tuple of the names a ``[space]`` or ``[hyperparameters]`` table may set.
``default_hyperparameters()`` / ``hyperparameter_bounds()``
    ``{name: value}`` for every name; ``{name: (low, high)}`` the values it accepts.
``hyperparameters_to_arrays(configs)``
    One dict per member (missing names take defaults) -> ``{name: array [P]}``.
``init(key, population)``
    A population state; the same key gives the same population. The state exposes
    ``total_env_steps`` (int32 ``[P]``, env steps trained so far) and, for the default
    ``gather``, ``rng`` (each member's raw uint32 key data).
``train(state, hp, env_steps_per_member)``
    Train member ``i`` for at least ``env_steps_per_member[i]`` env steps (a ``[P]`` array, or
    one number for all), and less than one update (``max_update_steps``, when the agent sets
    it) more, with hyperparameters ``hp[name][i]``; return ``(state, metrics)``, where
    ``metrics`` maps names to ``[P]`` arrays and has at least ``episode_return`` (mean
    undiscounted return of the episodes finished in this call, NaN if none) and ``episodes``
    (how many). Every other metric is recorded too.
``evaluate(state, key, num_episodes)``
    Mean return of ``num_episodes`` episodes per member, ``[P]``.
``gather(state, index)``
    The exploit: member ``i`` of the result is a full copy of member ``index[i]`` (weights,
    optimiser, replay buffer, environments: everything it carries), except that a copy
    (``index[i] != i``) draws from a fresh random stream derived from the donor's ``rng``.
``compile_count``
    How many programs the agent has traced; the engine records how many a run compiled.

The easy way to have all of this is to subclass :class:`PopulationAgent`: it supplies
``hyperparameters_to_arrays``, ``train`` (argument checks, then a jitted ``_train_impl``),
``evaluate`` (plays ``self.env`` with ``_eval_action``), ``gather`` and ``act`` (a jitted
``_act_impl``); a subclass writes ``init``, ``_train_impl(state, hp, budget)``,
``_eval_action(member, obs, key)``, ``_act_impl(state, obs, key, greedy)``,
``default_hyperparameters``, ``hyperparameter_bounds`` and ``hyperparameter_names``, sets
``self.env``, keeps its state in a ``flax.struct.dataclass`` with ``rng`` and
``total_env_steps`` fields, counts traces with ``self.compile_count += 1`` at the top of
``_train_impl`` and calls ``self._compile_entry_points()`` at the end of ``__init__``.
``examples/dqn_minatar.py`` (a DQN) and ``examples/a2c_gymnax.py`` (an A2C) are complete agents
written that way; docs/custom-agents.md says what each hook receives.

:func:`check_agent` checks an agent against this contract without running it (the engine calls
it before anything trains); :func:`check_agent_runs` also runs it on a tiny population and
checks what the calls return, for an agent's own tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np

from gpbt.rl.common import PopulationAgent, as_key
from gpbt.rl.envs import Env, from_gymnax

__all__ = [
    "REQUIRED_METRICS",
    "UPDATES_CHECKED",
    "AgentProtocolError",
    "Env",
    "PopulationAgent",
    "PopulationAgentProtocol",
    "as_key",
    "check_agent",
    "check_agent_runs",
    "from_gymnax",
]

REQUIRED_METRICS = ("episode_return", "episodes")
# check_agent_runs' default budget in updates: enough that one update is not the whole budget.
UPDATES_CHECKED = 3
DOCS = "see gpbt.rl.protocol or docs/custom-agents.md"


@runtime_checkable
class PopulationAgentProtocol(Protocol):
    """The members the vector engine uses (the module docstring says what each must do)."""

    hyperparameter_names: tuple[str, ...]
    compile_count: int

    def default_hyperparameters(self) -> Mapping[str, float]: ...

    def hyperparameter_bounds(self) -> Mapping[str, tuple[float, float]]: ...

    def hyperparameters_to_arrays(self, configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]: ...

    def init(self, key: Any, population: int) -> Any: ...

    def train(
        self, state: Any, hp: Mapping[str, Any], env_steps_per_member: Any
    ) -> tuple[Any, Mapping[str, Any]]: ...

    def evaluate(self, state: Any, key: Any, num_episodes: int = 10) -> Any: ...

    def gather(self, state: Any, index: Any) -> Any: ...


class AgentProtocolError(TypeError):
    """An agent that does not follow the protocol; the message lists everything missing."""


_METHODS = {
    "init": "init(key, population)",
    "train": "train(state, hp, env_steps_per_member)",
    "evaluate": "evaluate(state, key, num_episodes)",
    "gather": "gather(state, index)",
    "hyperparameters_to_arrays": "hyperparameters_to_arrays(configs)",
    "hyperparameter_bounds": "hyperparameter_bounds()",
    "default_hyperparameters": "default_hyperparameters()",
}
# What a PopulationAgent subclass must write itself (the base's versions only raise).
_HOOKS = {
    "init": "init(key, population)",
    "_train_impl": "_train_impl(state, hp, budget)",
    "_eval_action": "_eval_action(member, obs, key)",
    "_act_impl": "_act_impl(state, obs, key, greedy)",
    "default_hyperparameters": "default_hyperparameters()",
    "hyperparameter_bounds": "hyperparameter_bounds()",
}


def _fail(label: str, problems: list[str]) -> AgentProtocolError:
    return AgentProtocolError(
        f"agent {label} does not follow the population-agent protocol: "
        + "; ".join(problems)
        + f" ({DOCS})"
    )


def check_agent(agent: Any, name: str | None = None) -> None:
    """Raise one :class:`AgentProtocolError` naming everything ``agent`` (an instance) lacks.

    Checks, without running anything: the protocol's methods and attributes exist, a
    :class:`PopulationAgent` subclass wrote the hooks the base leaves to it, and every
    hyperparameter has a bound and a default inside it.
    """
    label = repr(name or type(agent).__name__)
    if isinstance(agent, type):
        raise _fail(label, ["got the class itself; check an instance, e.g. MyAgent(env)"])
    missing = [sig for m, sig in _METHODS.items() if not callable(getattr(agent, m, None))]
    if isinstance(agent, PopulationAgent):
        for hook, sig in _HOOKS.items():
            if getattr(type(agent), hook) is getattr(PopulationAgent, hook) and sig not in missing:
                missing.append(sig)
    problems = [f"missing {', '.join(missing)}"] if missing else []
    if isinstance(agent, PopulationAgent):
        if not isinstance(getattr(agent, "env", None), Env):
            problems.append("self.env is not a gpbt.rl.envs.Env (evaluate plays it)")
        if not hasattr(agent, "_train_jit"):
            problems.append("__init__ never called self._compile_entry_points()")
    names = getattr(agent, "hyperparameter_names", None)
    if (
        not isinstance(names, tuple | list)
        or not names
        or not all(isinstance(n, str) for n in names)
    ):
        problems.append(f"hyperparameter_names must be a non-empty tuple of str, got {names!r}")
        names = None
    count = getattr(agent, "compile_count", None)
    if not isinstance(count, int) or isinstance(count, bool):
        problems.append(f"compile_count must be an int (traces so far), got {count!r}")
    if names is not None and not missing:
        problems += _check_hyperparameters(agent, tuple(names))
    if problems:
        raise _fail(label, problems)


def _check_hyperparameters(agent: Any, names: tuple[str, ...]) -> list[str]:
    problems = []
    bounds = dict(agent.hyperparameter_bounds())
    defaults = dict(agent.default_hyperparameters())
    for what, table in (
        ("hyperparameter_bounds()", bounds),
        ("default_hyperparameters()", defaults),
    ):
        lacking = [n for n in names if n not in table]
        extra = sorted(set(table) - set(names))
        if lacking:
            problems.append(f"{what} has no entry for {lacking}")
        if extra:
            problems.append(f"{what} has {extra}, which are not in hyperparameter_names")
    for n in names:
        if n not in bounds or n not in defaults:
            continue
        try:
            lo, hi = (float(x) for x in bounds[n])
        except (TypeError, ValueError):
            problems.append(
                f"hyperparameter_bounds()[{n!r}] must be (low, high), got {bounds[n]!r}"
            )
            continue
        if not lo <= float(defaults[n]) <= hi:
            problems.append(
                f"the default {n} = {defaults[n]!r} is outside its bounds [{lo:g}, {hi:g}]"
            )
    return problems


def check_agent_runs(
    agent: Any,
    *,
    population: int = 2,
    env_steps: int | None = None,
    seed: int = 0,
    name: str | None = None,
) -> dict[str, np.ndarray]:
    """:func:`check_agent`, then run the agent on a tiny population and check what it returns:
    an ``init`` that traces (``load_member`` builds its template with ``jax.eval_shape``) and
    gives state leaves with a leading ``[P]``; ``train`` calls that advance each member's
    ``total_env_steps`` by its own budget (at least it, and by at most one update more when the
    agent sets ``max_update_steps``), return the required metrics as ``[P]`` arrays, and
    compile once for two calls with different per-member budgets; a ``gather`` that copies
    everything but the copy's random stream; ``act`` and ``evaluate`` of the right shapes.

    ``env_steps`` is the first call's budget per member; by default it spans
    :data:`UPDATES_CHECKED` updates (``max_update_steps`` each), so a ``train`` that does one
    update whatever its budget fails. Returns the first call's metrics. Compiles the agent's
    programs, so it takes as long as the first generation of a run."""
    check_agent(agent, name)
    label = repr(name or type(agent).__name__)
    p = int(population)
    if p < 2:
        raise ValueError("check_agent_runs needs population >= 2 (it checks a gather)")
    problems: list[str] = []
    try:
        jax.eval_shape(lambda key: agent.init(key, 1), jax.random.key(seed))
    except Exception as err:  # noqa: BLE001 - any failure is the agent's to fix; say which
        problems.append(
            f"init(key, 1) does not trace under jax.eval_shape ({type(err).__name__}: {err}); "
            "build the state from the key with JAX operations only (no int(), no NumPy on it)"
        )
    state = agent.init(jax.random.key(seed), p)
    bad = [
        jax.tree_util.keystr(path)
        for path, x in jax.tree_util.tree_leaves_with_path(state)
        if np.ndim(x) < 1 or np.shape(x)[0] != p
    ]
    if bad:
        problems.append(f"init(key, {p}) returned leaves without a leading [{p}] axis: {bad[:4]}")
    if not hasattr(state, "total_env_steps"):
        raise _fail(label, problems + ["the state has no total_env_steps ([P] int32)"])
    hp = agent.hyperparameters_to_arrays([{} for _ in range(p)])
    if set(hp) != set(agent.hyperparameter_names) or any(np.shape(v) != (p,) for v in hp.values()):
        problems.append("hyperparameters_to_arrays did not give one [P] array per hyperparameter")
    update = max(int(getattr(agent, "max_update_steps", 0) or 0), 0)
    budget = int(env_steps) if env_steps else UPDATES_CHECKED * max(update, 1)
    count0 = agent.compile_count
    before = np.asarray(state.total_env_steps)
    state, metrics = agent.train(state, hp, np.full(p, budget))
    metrics = {k: np.asarray(v) for k, v in jax.device_get(dict(metrics)).items()}
    for key in REQUIRED_METRICS:
        if key not in metrics:
            problems.append(f"train's metrics lack {key!r} (got {sorted(metrics)})")
        elif metrics[key].shape != (p,):
            problems.append(f"train's metric {key!r} has shape {metrics[key].shape}, not ({p},)")
    problems += _budget_problems(
        np.full(p, budget), np.asarray(state.total_env_steps) - before, update
    )
    if agent.compile_count <= count0:
        problems.append(
            "compile_count did not grow on the first train call: add "
            "self.compile_count += 1 at the top of _train_impl"
        )
    count1 = agent.compile_count
    # Members get different budgets, as in a run (each trains to the interval's end).
    budgets = np.array([2 * budget if i % 2 == 0 else budget for i in range(p)])
    before = np.asarray(state.total_env_steps)
    state, _ = agent.train(state, hp, budgets)
    if agent.compile_count != count1:
        problems.append(
            "a second train call with another budget compiled again: keep budgets and "
            "hyperparameters traced (arrays), not static Python values"
        )
    problems += _budget_problems(budgets, np.asarray(state.total_env_steps) - before, update)
    copied = agent.gather(state, np.zeros(p, np.int32))
    if hasattr(copied, "rng"):
        rng = np.asarray(copied.rng)
        if np.array_equal(rng[0], rng[1]):
            problems.append("gather gave a copy the donor's random stream, not a fresh one")
    differs = [
        jax.tree_util.keystr(path)
        for path, x in jax.tree_util.tree_leaves_with_path(copied)
        if not jax.tree_util.keystr(path).endswith("rng")
        and not np.array_equal(np.asarray(x)[1], np.asarray(x)[0], equal_nan=True)
    ]
    if differs:
        problems.append(f"gather did not copy the donor's {differs[:4]} into the copy")
    problems += _act_problems(agent, state, p, seed)
    returns = np.asarray(agent.evaluate(state, as_key(jax.random.key(seed)), 1))
    if returns.shape != (p,):
        problems.append(f"evaluate returned shape {returns.shape}, not ({p},)")
    if problems:
        raise _fail(label, problems)
    return metrics


def _budget_problems(budgets: np.ndarray, grown: np.ndarray, update: int) -> list[str]:
    """What is wrong with members that trained `grown` env steps for these budgets."""
    call = f"train(state, hp, {budgets.tolist()})"
    if np.any(grown < budgets):
        return [
            f"{call} advanced total_env_steps by {grown.tolist()}, less than the budgets: "
            "_train_impl must repeat updates until member i has trained budget[i] env steps "
            "(a jax.lax.while_loop over updates, members whose budget is spent masked off; "
            "see docs/custom-agents.md, 'The budget loop') and add each update's env steps "
            "to total_env_steps"
        ]
    if update and np.any(grown >= budgets + update):
        return [
            f"{call} advanced total_env_steps by {grown.tolist()}, a whole update "
            f"(max_update_steps = {update}) or more past a budget: stop each member once its "
            "own budget is spent (a member trains budget[i], not the largest budget), or set "
            "max_update_steps to the env steps one update really takes"
        ]
    return []


def _act_problems(agent: Any, state: Any, p: int, seed: int) -> list[str]:
    """`act` on a batch of 3 observations per member, greedy and sampled, if the agent has one."""
    env = getattr(agent, "env", None)
    if not callable(getattr(agent, "act", None)) or not isinstance(env, Env):
        return []
    obs, _ = jax.vmap(env.reset)(jax.random.split(jax.random.key(seed), 3))
    batch = np.broadcast_to(np.asarray(obs), (p, *np.shape(obs)))
    want = (p, 3, *env.action_shape)
    problems = []
    for greedy in (True, False):
        try:
            shape = np.shape(agent.act(state, batch, jax.random.key(seed), greedy=greedy))
        except Exception as err:  # noqa: BLE001 - report it with the others
            problems.append(f"act(state, obs, key, greedy={greedy}) failed: {err!r}")
            continue
        if shape != want:
            problems.append(
                f"act(state, obs [{p}, 3, ...], key, greedy={greedy}) returned shape {shape}, "
                f"not {want}: _act_impl(state, obs, key, greedy) vmaps one member's policy "
                "over the population"
            )
    return problems
