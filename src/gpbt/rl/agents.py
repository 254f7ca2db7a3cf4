"""Agent registry for the vector engine: a name in a config file -> a population agent.

Every agent offers the same population interface (init / train / evaluate / gather /
hyperparameters_to_arrays / hyperparameter_names / hyperparameter_bounds / compile_count,
documented in `gpbt.rl.protocol`), so the engine never needs to know which one it runs. Besides
the built-in names, ``agent = "my_module:MyAgent"`` builds ``MyAgent(env, **agent_options)``
and checks it against the protocol before anything trains.
"""

from __future__ import annotations

from typing import Any

from gpbt.imports import import_object, is_import_spec
from gpbt.rl.envs import make_env


def _ppo(env, options: dict[str, Any]):
    from gpbt.rl.ppo import PPO, PPOConfig

    return PPO(env, PPOConfig(**_options("ppo", PPOConfig, options)))


def _impala(env, options: dict[str, Any]):
    from gpbt.rl.impala import IMPALA, IMPALAConfig

    return IMPALA(env, IMPALAConfig(**_options("impala", IMPALAConfig, options)))


AGENTS = {"ppo": _ppo, "impala": _impala}


def _options(agent: str, cls, options: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(
            f"[agent_options] {unknown[0]!r} is not an option of agent "
            f"'{agent}'; known options are {sorted(fields)}"
        )
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def make_agent(name: str, env_name: str, options: dict[str, Any] | None = None):
    if name in AGENTS:
        return AGENTS[name](make_env(env_name), dict(options or {}))
    if not is_import_spec(name):
        raise ValueError(
            f"agent = {name!r} is not known; use one of {sorted(AGENTS)} or your own "
            "population agent as 'my_module:MyAgent' (see gpbt.rl.protocol)"
        )
    return _user_agent(name, make_env(env_name), dict(options or {}))


def _user_agent(spec: str, env, options: dict[str, Any]):
    from gpbt.rl.protocol import check_agent

    cls = import_object(spec, "agent", "'my_agents:DQN' (a gpbt.rl.protocol.PopulationAgent)")
    if not isinstance(cls, type):
        raise ValueError(
            f"agent = {spec!r} is a {type(cls).__name__}, not a class; name the agent's class"
        )
    try:
        agent = cls(env, **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    except TypeError as err:
        # Almost always an [agent_options] key the constructor does not take.
        raise ValueError(
            f"[agent_options] {spec.partition(':')[2]}(env, **agent_options) failed: {err}; "
            "give only the keyword arguments its constructor takes"
        ) from None
    except Exception as err:  # the agent's own code failed: say where, in one line
        raise ValueError(
            f"agent = {spec!r}: {cls.__name__}(env, **agent_options) raised "
            f"{type(err).__name__}: {err}; fix the agent's constructor (gpbt builds the agent "
            "once before anything is written, to check the config)"
        ) from err
    check_agent(agent, spec)
    return agent
