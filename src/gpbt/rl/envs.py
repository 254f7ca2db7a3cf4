"""Environment registry and the uniform, pure-JAX environment interface the agents train on.

Every environment is reached by name through :func:`make_env` and comes back as an :class:`Env`:
``reset(key) -> (obs, state)`` and ``step(key, state, action) -> (obs, state, reward, done, info)``
for ONE environment instance. Both are pure functions of JAX arrays, so the agent can ``vmap``
them over parallel environments and again over population members and ``jit`` the whole training
program; no Python object is created per step.

``step`` auto-resets: when ``done`` is true the returned ``obs``/``state`` already belong to the
next episode. Agents still need to tell a real termination from a time-limit truncation (only
the first has zero value), and to see the observation that ended the episode, so ``info`` always
holds ``terminated``, ``truncated`` (bool scalars, ``done == terminated | truncated``) and
``final_obs`` (the pre-reset observation; equals ``obs`` when not done).

Names
-----
Canonical names are Gymnax's (``CartPole-v1``, ``Acrobot-v1``, ``Pendulum-v1``,
``MountainCarContinuous-v0``, ``MountainCar-v0``, ``Breakout-MinAtar``, ``SpaceInvaders-MinAtar``,
``Asterix-MinAtar``, ``Freeway-MinAtar``, ``Seaquest-MinAtar``) and ``brax:<env>`` for Brax
(``brax:inverted_double_pendulum``, ``brax:hopper``, ``brax:halfcheetah``, ``brax:ant``).
Lookup is case-insensitive and accepts aliases: ``cartpole``, ``pendulum``, ``acrobot``,
``mountaincarcontinuous``; ``minatar/breakout``, ``minatar:breakout``, ``breakout`` (same for the
other MinAtar games); ``brax/hopper`` and bare ``hopper`` (same for the other Brax envs).
Options go after ``?`` as ``key=value`` pairs joined by ``&`` (``brax:hopper?backend=spring``) or as
keyword arguments to :func:`make_env`; keyword arguments win.

Brax is optional (``pip install 'gpbt[brax]'``) and imported only when a Brax env is made. Its
physics backend is an option: ``backend=generalized`` (default), ``positional``, ``spring`` or,
with a Brax that has it, ``mjx``. The default is ``generalized`` because it is Brax's own default
and the pipeline whose dynamics are closest to MuJoCo's (Brax validates it against MuJoCo); the
paper's PPO results are on MuJoCo tasks, so a hyperparameter-tuning benchmark should not quietly
run on a different physics. ``spring`` and ``positional`` are several times faster and fine for
smoke tests and method comparisons that are internally consistent, but their returns are not
comparable with MuJoCo numbers. ``mjx`` is MuJoCo itself compiled with XLA: exact but slow on CPU.

The registry is open: :func:`register_env` takes any factory that returns an :class:`Env`, so
MuJoCo Playground / MJX environments (or anything else written in JAX) plug in the same way.
A config may also name a factory directly, ``env = "my_envs:make_env"`` (importable from the
working directory; options after ``?`` as above): it may return an :class:`Env`, a gymnax
``(env, params)`` pair or a gymnax environment (:func:`from_gymnax` wraps the last two).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gpbt.errors import ConfigError
from gpbt.imports import ImportSpecError, import_object, is_import_spec

__all__ = [
    "Env",
    "GymnaxEnv",
    "BraxEnv",
    "make_env",
    "env_from_factory",
    "from_gymnax",
    "known_envs",
    "describe_env",
    "EnvInfo",
    "register_env",
    "BRAX_BACKENDS",
    "DEFAULT_BRAX_BACKEND",
]

EnvFactory = Callable[..., "Env"]

BRAX_BACKENDS = ("generalized", "positional", "spring", "mjx")
DEFAULT_BRAX_BACKEND = "generalized"


@dataclass(frozen=True, eq=False)
class Env:
    """One environment as pure functions plus the static facts an agent needs to size itself.

    Subclasses implement :meth:`reset` and :meth:`step`. ``eq=False`` keeps identity hashing, so
    an ``Env`` can be closed over by a jitted function without being traced.
    """

    name: str
    obs_shape: tuple[int, ...]
    discrete: bool
    num_actions: int | None  # discrete: number of actions; continuous: None
    action_dim: int  # continuous: size of the action vector; discrete: 1
    action_low: np.ndarray | None  # continuous only, shape [action_dim]
    action_high: np.ndarray | None
    max_episode_steps: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def continuous(self) -> bool:
        return not self.discrete

    @property
    def action_shape(self) -> tuple[int, ...]:
        return () if self.discrete else (self.action_dim,)

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]:
        raise NotImplementedError

    def step(
        self, key: jax.Array, state: Any, action: jax.Array
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, dict[str, jax.Array]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        kind = f"discrete({self.num_actions})" if self.discrete else f"box({self.action_dim})"
        return f"{type(self).__name__}({self.name!r}, obs={self.obs_shape}, action={kind})"


# ---------------------------------------------------------------------------------------------
# Gymnax
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class GymnaxEnv(Env):
    gymnax_env: Any = None
    gymnax_params: Any = None

    def reset(self, key):
        obs, state = self.gymnax_env.reset(key, self.gymnax_params)
        return obs.astype(jnp.float32), _strong(state)

    def step(self, key, state, action):
        # Gymnax 1.0 already auto-resets and separates termination from truncation.
        obs, state, reward, terminated, truncated, info = self.gymnax_env.step(
            key, state, action, self.gymnax_params
        )
        state = _strong(state)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.asarray(truncated, bool) & ~terminated
        out_info = {
            "terminated": terminated,
            "truncated": truncated,
            "final_obs": info["final_observation"].astype(jnp.float32),
        }
        reward = jnp.reshape(reward, ()).astype(jnp.float32)
        return obs.astype(jnp.float32), state, reward, terminated | truncated, out_info


def _strong(tree: Any) -> Any:
    # Some Gymnax resets build states from Python floats, i.e. weak-typed arrays, while step
    # returns strong ones; a state that changes weak-typedness recompiles every jitted consumer.
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), tree)


def from_gymnax(env: Any, params: Any = None, name: str | None = None) -> GymnaxEnv:
    """Wrap a gymnax environment (``gymnax.make(...)``'s pair, or your own
    ``gymnax.environments.environment.Environment`` subclass) as an :class:`Env`.

    ``params`` defaults to ``env.default_params``; the episode limit is
    ``params.max_steps_in_episode``. Observations become float32.
    """
    if params is None:
        params = getattr(env, "default_params", None)
    missing = [
        m for m in ("reset", "step", "observation_space", "action_space") if not hasattr(env, m)
    ]
    if missing or params is None:
        what = f"lacks {missing}" if missing else "has no params (and no default_params)"
        raise TypeError(
            f"{type(env).__name__} is not a gymnax environment: it {what}; return "
            "gymnax.make(...)'s (env, params) pair, a gymnax Environment, or a gpbt.rl.envs.Env"
        )
    obs_shape = tuple(int(d) for d in env.observation_space(params).shape)
    space = env.action_space(params)
    discrete = hasattr(space, "n")
    if discrete:
        num_actions, action_dim, low, high = int(space.n), 1, None, None
    else:
        shape = tuple(space.shape) or (1,)
        action_dim = int(np.prod(shape))
        low = np.broadcast_to(np.asarray(space.low, np.float32), (action_dim,)).copy()
        high = np.broadcast_to(np.asarray(space.high, np.float32), (action_dim,)).copy()
        num_actions = None
    return GymnaxEnv(
        name=name or getattr(env, "name", type(env).__name__),
        obs_shape=obs_shape,
        discrete=discrete,
        num_actions=num_actions,
        action_dim=action_dim,
        action_low=low,
        action_high=high,
        max_episode_steps=int(params.max_steps_in_episode),
        gymnax_env=env,
        gymnax_params=params,
    )


def _make_gymnax(gymnax_id: str) -> EnvFactory:
    def factory(**kwargs: Any) -> GymnaxEnv:
        import gymnax

        if kwargs:
            raise ValueError(
                f"environment {gymnax_id!r} takes no options, got {sorted(kwargs)}; "
                "pass an EnvParams override by registering your own factory with register_env"
            )
        env, params = gymnax.make(gymnax_id)
        return from_gymnax(env, params, name=gymnax_id)

    return factory


# ---------------------------------------------------------------------------------------------
# Brax (optional dependency)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class BraxEnv(Env):
    brax_env: Any = None

    def reset(self, key):
        bstate = self.brax_env.reset(key)
        # Our own step counter: Brax's EpisodeWrapper would also work but hides the
        # terminated/truncated split the agent needs for bootstrapping.
        return bstate.obs.astype(jnp.float32), _strong((bstate, jnp.zeros((), jnp.int32)))

    def step(self, key, state, action):
        bstate, t = state
        nxt = self.brax_env.step(bstate, action)
        t = t + 1
        terminated = nxt.done > 0.5
        truncated = (t >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        # A fresh reset per done (not Brax's cached first state), so every episode gets its own
        # initial noise; the reset is computed every step and selected, the price of vmapping.
        reset_obs, (reset_state, reset_t) = self.reset(key)
        new_state = _select(done, reset_state, nxt)
        new_t = jnp.where(done, reset_t, t)
        final_obs = nxt.obs.astype(jnp.float32)
        obs = jnp.where(done, reset_obs, final_obs)
        info = {"terminated": terminated, "truncated": truncated, "final_obs": final_obs}
        reward = jnp.reshape(nxt.reward, ()).astype(jnp.float32)
        return obs, (new_state, new_t), reward, done, info


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    # Brax states may carry info/metrics whose structure differs between reset and step; those
    # are bookkeeping only, so keep the stepped ones rather than fail.
    if jax.tree.structure(on_true) != jax.tree.structure(on_false):
        return on_false.replace(
            pipeline_state=_select(pred, on_true.pipeline_state, on_false.pipeline_state),
            obs=jnp.where(pred, on_true.obs, on_false.obs),
        )
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


BRAX_INSTALL_HINT = "pip install 'gpbt[brax]'"


def _make_brax(brax_id: str) -> EnvFactory:
    def factory(
        backend: str = DEFAULT_BRAX_BACKEND, episode_length: int = 1000, **kwargs: Any
    ) -> BraxEnv:
        if backend not in BRAX_BACKENDS:
            raise ValueError(
                f"brax backend {backend!r} is not one of {', '.join(BRAX_BACKENDS)} "
                f"(default {DEFAULT_BRAX_BACKEND!r})"
            )
        try:
            from brax import envs as brax_envs
        except ImportError as err:  # pragma: no cover - depends on the installation
            raise ImportError(
                f"environment 'brax:{brax_id}' needs the optional Brax dependency, which is not "
                f"installed: {BRAX_INSTALL_HINT}"
            ) from err
        env = brax_envs.get_environment(brax_id, backend=backend, **kwargs)
        size = env.observation_size
        obs_shape = (int(size),) if np.isscalar(size) else tuple(int(s) for s in size)
        dim = int(env.action_size)
        return BraxEnv(
            name=f"brax:{brax_id}",
            obs_shape=obs_shape,
            discrete=False,
            num_actions=None,
            action_dim=dim,
            action_low=-np.ones(dim, np.float32),
            action_high=np.ones(dim, np.float32),
            max_episode_steps=int(episode_length),
            options={"backend": backend, **kwargs},
            brax_env=env,
        )

    return factory


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

_REGISTRY: dict[str, EnvFactory] = {}
_ALIASES: dict[str, str] = {}  # lower-case alias -> canonical name


def register_env(
    name: str,
    factory: EnvFactory,
    *,
    aliases: tuple[str, ...] | list[str] = (),
    overwrite: bool = False,
) -> None:
    """Make ``factory(**options) -> Env`` reachable as ``make_env(name)`` (and its aliases).

    Names are matched case-insensitively, so two names differing only in case collide.
    """
    if not isinstance(name, str) or not name or "?" in name:
        raise ValueError(f"environment name must be a non-empty string without '?', got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    keys = [name.lower(), *(a.lower() for a in aliases)]
    if not overwrite:
        for key in keys:
            if key in _ALIASES and _ALIASES[key] != name:
                raise ValueError(
                    f"environment name {key!r} is already registered for "
                    f"{_ALIASES[key]!r}; pass overwrite=True to replace it"
                )
        if name in _REGISTRY:
            raise ValueError(
                f"environment {name!r} is already registered; pass overwrite=True to replace it"
            )
    _REGISTRY[name] = factory
    for key in keys:
        _ALIASES[key] = name


def known_envs() -> tuple[str, ...]:
    """Canonical names of every registered environment (Brax ones even if Brax is missing)."""
    return tuple(_REGISTRY)


@dataclass(frozen=True)
class EnvInfo:
    """What a user choosing an environment wants to know, without training on it."""

    name: str
    obs_shape: tuple[int, ...]
    num_actions: int | None  # discrete: how many actions; continuous: None
    action_dim: int  # continuous: size of the action vector; discrete: 1
    max_episode_steps: int

    @property
    def action(self) -> str:
        if self.num_actions is not None:
            return f"discrete, {self.num_actions} actions"
        return f"continuous, dim {self.action_dim}"

    @classmethod
    def of(cls, env: Env) -> EnvInfo:
        return cls(env.name, tuple(env.obs_shape), env.num_actions if env.discrete else None,
                   env.action_dim, env.max_episode_steps)  # fmt: skip


# The built-in environments' facts, so `gpbt envs` lists them without building one: gymnax
# imports in seconds, but a Brax env takes a minute or more to build on a CPU. Each entry is
# what make_env(name) builds with default options; tests/test_envs.py checks the gymnax ones
# against the built env, the Brax ones were read off Brax 0.14's generalized backend.
BUILTIN_INFO: dict[str, EnvInfo] = {
    info.name: info
    for info in (
        EnvInfo("CartPole-v1", (4,), 2, 1, 500),
        EnvInfo("Acrobot-v1", (6,), 3, 1, 500),
        EnvInfo("Pendulum-v1", (3,), None, 1, 200),
        EnvInfo("MountainCar-v0", (2,), 3, 1, 200),
        EnvInfo("MountainCarContinuous-v0", (2,), None, 1, 999),
        EnvInfo("Breakout-MinAtar", (10, 10, 4), 3, 1, 1000),
        EnvInfo("SpaceInvaders-MinAtar", (10, 10, 6), 4, 1, 1000),
        EnvInfo("Asterix-MinAtar", (10, 10, 4), 5, 1, 1000),
        EnvInfo("Freeway-MinAtar", (10, 10, 7), 3, 1, 2500),
        EnvInfo("Seaquest-MinAtar", (10, 10, 10), 6, 1, 1000),
        EnvInfo("brax:inverted_double_pendulum", (8,), None, 1, 1000),
        EnvInfo("brax:hopper", (11,), None, 3, 1000),
        EnvInfo("brax:halfcheetah", (17,), None, 6, 1000),
        EnvInfo("brax:ant", (27,), None, 8, 1000),
    )
}


def describe_env(name: str) -> EnvInfo:
    """Observation shape, action space and episode length of a registered environment: a
    built-in one (with default options) from BUILTIN_INFO, anything else by building it."""
    canonical, options = resolve_env_name(name)
    if not options and canonical in BUILTIN_INFO and _REGISTRY[canonical] is _BUILTIN[canonical]:
        return BUILTIN_INFO[canonical]
    return EnvInfo.of(make_env(name))


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_options(name: str, query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"bad option {part!r} in environment name {name!r}; use key=value")
        options[key.strip()] = _parse_value(value.strip())
    return options


def resolve_env_name(name: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name?k=v&..."`` into the canonical registry name and its options."""
    if not isinstance(name, str):
        raise TypeError(f"environment name must be a string, got {type(name).__name__}")
    base, _, query = name.partition("?")
    options = _parse_options(name, query)
    canonical = _ALIASES.get(base.strip().lower())
    if canonical is None:
        close = difflib.get_close_matches(base.lower(), list(_ALIASES), n=3)
        guesses = dict.fromkeys(_ALIASES[c] for c in close)
        hint = f" Did you mean {', '.join(map(repr, guesses))}?" if guesses else ""
        raise ValueError(
            f"unknown environment {base!r}.{hint} Known environments: {', '.join(known_envs())}. "
            "Register others with gpbt.rl.envs.register_env(name, factory)."
        )
    return canonical, options


def missing_dependency(name: str) -> str | None:
    """Why the environment ``name`` cannot be built on this install (an optional dependency
    it needs is absent), or None; decided without importing that dependency, so a caller can
    ask before anything is built (`gpbt bench` skips such cells and says why)."""
    import importlib.util

    try:
        canonical, _ = resolve_env_name(name)
    except (TypeError, ValueError):
        return None  # not a registered name: building it will say what is wrong
    if canonical.startswith("brax:") and importlib.util.find_spec("brax") is None:
        return (
            f"environment {canonical!r} needs the optional Brax dependency, which is not "
            f"installed: {BRAX_INSTALL_HINT}"
        )
    return None


def make_env(name: str, **options: Any) -> Env:
    """Build the environment registered as ``name`` (see the module docstring for the syntax),
    or, for a ``"module:function"`` that is not a registered name, call that factory (see
    :func:`env_from_factory`)."""
    try:
        canonical, parsed = resolve_env_name(name)
    except ValueError as unknown:
        if not is_import_spec(name.partition("?")[0]):
            raise
        try:
            return env_from_factory(name, **options)
        except ImportSpecError as err:
            prefixes = {alias.partition(":")[0] for alias in _ALIASES if ":" in alias}
            if name.partition(":")[0].lower() in prefixes:
                # "brax:hoper" is a typo of a registered name, not a module: say that first.
                raise ValueError(
                    f"{unknown} Nor is it an importable 'module:function': {err}"
                ) from None
            raise ValueError(
                f"{err} (nor is it a registered environment: `gpbt envs` lists those)"
            ) from None
    env = _call_factory(repr(name), _REGISTRY[canonical], {**parsed, **options})
    if not isinstance(env, Env):
        raise TypeError(
            f"factory for {canonical!r} returned {type(env).__name__}, expected a gpbt.rl.envs.Env"
        )
    return env


def _call_factory(name: str, factory: Callable[..., Any], options: dict[str, Any]) -> Any:
    """`factory(**options)`; an error of the factory's own code becomes one line naming the
    env. ValueError, TypeError and ImportError pass as they are: they already say what is
    wrong with the options or the installation, and the engines report them as config errors."""
    try:
        return factory(**options)
    except (ValueError, TypeError, ImportError):
        raise
    except Exception as err:
        raise ConfigError(
            f"env = {name}: its factory raised {type(err).__name__}: {err}; fix the factory "
            "(gpbt builds the env once before anything is written, to check the config)"
        ) from err


def env_from_factory(spec: str, **options: Any) -> Env:
    """``env = "module:function"`` (options after ``?`` as for registered names): import the
    factory from the working directory, call it with the options, and accept what it returns:
    an :class:`Env`, a gymnax ``(env, params)`` pair, or a gymnax environment alone."""
    base, _, query = spec.partition("?")
    parsed = _parse_options(spec, query)
    example = "'my_envs:make_env' (a function returning a gymnax (env, params) pair or an Env)"
    factory = import_object(base, "env", example)
    if not callable(factory):
        raise TypeError(f"env = {spec!r} names a {type(factory).__name__}, not a factory function")
    made = _call_factory(repr(spec), factory, {**parsed, **options})
    if isinstance(made, Env):
        return made
    if isinstance(made, tuple) and len(made) == 2:
        return from_gymnax(made[0], made[1], name=base)
    try:
        return from_gymnax(made, name=base)
    except TypeError as err:
        raise TypeError(
            f"env = {spec!r}: the factory returned {type(made).__name__}; {err}"
        ) from None


_GYMNAX_ALIASES = {
    "CartPole-v1": ("cartpole",),
    "Acrobot-v1": ("acrobot",),
    "Pendulum-v1": ("pendulum",),
    "MountainCar-v0": ("mountaincar",),
    "MountainCarContinuous-v0": ("mountaincarcontinuous",),
}
for _id, _aliases in _GYMNAX_ALIASES.items():
    register_env(_id, _make_gymnax(_id), aliases=_aliases)

for _game in ("Breakout", "SpaceInvaders", "Asterix", "Freeway", "Seaquest"):
    _low = _game.lower()
    register_env(
        f"{_game}-MinAtar",
        _make_gymnax(f"{_game}-MinAtar"),
        aliases=(f"minatar/{_low}", f"minatar:{_low}", _low),
    )

for _brax in ("inverted_double_pendulum", "hopper", "halfcheetah", "ant"):
    register_env(f"brax:{_brax}", _make_brax(_brax), aliases=(f"brax/{_brax}", _brax))

# the factories BUILTIN_INFO describes (a name re-registered with overwrite=True is built)
_BUILTIN = dict(_REGISTRY)
