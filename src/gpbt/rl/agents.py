"""Agent registry for the vector engine: a name in a config file -> a population agent.

Every agent offers the same population interface (init / train / evaluate / gather /
hyperparameters_to_arrays / hyperparameter_names / hyperparameter_bounds / compile_count,
documented in `gpbt.rl.protocol`), so the engine never needs to know which one it runs. Besides
the built-in names, ``agent = "my_module:MyAgent"`` builds ``MyAgent(env, **agent_options)``
and checks it against the protocol before anything trains.
"""

from __future__ import annotations

import inspect
import traceback
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
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    class_name = spec.partition(":")[2]
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # a class whose signature Python cannot read
        signature = None
    if signature is not None:
        try:
            signature.bind(env, **options)
        except TypeError as err:
            # Checked before the call, so an [agent_options] mistake is never confused with
            # a TypeError raised by the agent's own code below.
            raise ValueError(
                f"[agent_options] {class_name}(env, **agent_options) does not accept these "
                f"options: {err}; its constructor takes {_keywords(signature)}"
            ) from None
    try:
        agent = cls(env, **options)
    except TypeError as err:
        raise ValueError(
            f"agent = {spec!r}: {class_name}(env, **agent_options) raised TypeError inside "
            f"the agent's own code, at {_where(err)}: {err} (its keyword arguments "
            "were accepted: the error is in the agent)"
        ) from err
    except Exception as err:  # the agent's own code failed: say where, in one line
        raise ValueError(
            f"agent = {spec!r}: {class_name}(env, **agent_options) raised "
            f"{type(err).__name__} at {_where(err)}: {err}; fix the agent's constructor (gpbt "
            "builds the agent once before anything is written, to check the config)"
        ) from err
    check_agent(agent, spec)
    return agent


def _keywords(signature: inspect.Signature) -> str:
    """The keyword arguments a constructor takes besides `env`, for an error message."""
    names = [
        n
        for i, (n, prm) in enumerate(signature.parameters.items())
        if i > 0 and prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY)
    ]
    return ", ".join(names) if names else "no keyword arguments (only env)"


def _where(err: BaseException) -> str:
    """file:line (function) of the innermost frame that raised `err`."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "an unknown place"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"
