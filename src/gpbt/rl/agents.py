"""Agent registry for the vector engine: a name in a config file -> a population agent.

Every agent offers the same population interface (init / train / evaluate / gather /
hyperparameters_to_arrays / hyperparameter_names / hyperparameter_bounds / compile_count), so
the engine never needs to know which one it runs.
"""

from __future__ import annotations

from typing import Any

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
    if name not in AGENTS:
        raise ValueError(f"agent = {name!r} is not known; use one of {sorted(AGENTS)}")
    return AGENTS[name](make_env(env_name), dict(options or {}))
