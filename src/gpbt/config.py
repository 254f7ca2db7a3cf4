"""Experiment config files: TOML in, one validated plain dict out, or one clear error.

Everything is checked before any training starts: unknown keys (with the allowed ones listed),
wrong types, the search space, the method and its options. Command-line overrides use the Hydra
style `key=value` / `table.key=value`, the value parsed as TOML (so `lr=1e-3`, `synch=true` and
`factors=[1.2, 0.8]` work; anything else is a string).
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from gpbt.core.methods import METHODS, make_scheduler
from gpbt.space import Space


class ConfigError(ValueError):
    """A config problem, with the field and the fix in the message."""


ENGINES = ("vector", "local", "ray")
OPTIONAL = object()  # default for keys that stay absent unless given (the engine decides)

# key -> (type or tuple of types, default). `None` default = required.
COMMON_KEYS: dict[str, tuple[Any, Any]] = {
    "engine": (str, "vector"),
    "name": (str, ""),
    "method": (str, None),
    "population": (int, None),
    "total_steps": ((int, float), None),
    "perturbation_interval": ((int, float), None),
    "burn_in_period": ((int, float), 0),
    "seed": (int, 0),
    "mode": (str, "max"),
    "metric": (str, None),  # engine-specific default filled below
    "time_attr": (str, None),
    "space": (dict, None),
    "checkpoint_interval": ((int, float), None),
}
ENGINE_KEYS: dict[str, dict[str, tuple[Any, Any]]] = {
    "vector": {
        "env": (str, None),
        "agent": (str, "ppo"),
        "agent_options": (dict, {}),
        "hyperparameters": (dict, {}),
        "eval_episodes": (int, 0),
        "final_eval_episodes": (int, 32),
        "watchdog_seconds": ((int, float), 600),
        "execution": (str, "auto"),  # gpbt.rl.execution.STRATEGIES
        "devices": (int, 0),  # 0: every device (on CPU one per core)
    },
    "local": {
        "trainable": (str, None),
        "workers": (int, 0),
        "step_timeout": ((int, float), 600),
        "max_failures": (int, 2),
        "trainable_options": (dict, {}),
        "deterministic": (bool, False),
        "threads_per_worker": (int, 0),  # 0: the engine picks
    },
    "ray": {
        "trainable": (str, None),
        "address": (str, ""),
        "env": (str, ""),
        "param_space": (dict, {}),
        "rllib": (dict, {}),
        "num_cpus": (int, OPTIONAL),
        "resources_per_trial": (dict, OPTIONAL),
        "num_to_keep": (int, OPTIONAL),
        "reuse_actors": (bool, OPTIONAL),
    },
}
ENGINE_DEFAULTS = {
    "vector": {"metric": "episode_return", "time_attr": "env_steps"},
    "local": {"metric": "episode_reward_mean", "time_attr": "timesteps_total"},
    "ray": {"metric": "episode_reward_mean", "time_attr": "training_iteration"},
}


def parse_value(text: str) -> Any:
    """TOML value if it parses as one, else the raw string (so `env=CartPole-v1` works)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} is not key=value; write e.g. population=8 "
                "or gpbt-pl.pairing=sync"
            )
        key, text = item.split("=", 1)
        key = key.strip()
        # The first dot separates the table; the rest may belong to the key (space.optim.lr).
        parts = key.split(".")
        target = config
        for p in parts[:-1]:
            nxt = target.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: '{p}' is a value, not a table")
            target = nxt
        target[parts[-1]] = parse_value(text)
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"config file {str(path)!r} does not exist; pass the path of a TOML "
            "file such as examples/quickstart.toml"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"config file {str(path)!r} is not valid TOML: {err}; fix the syntax at that line"
        ) from None
    return validate_config(apply_overrides(raw, overrides or []))


def validate_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and check everything that can be checked without training."""
    cfg = copy.deepcopy(raw)
    engine = cfg.get("engine", "vector")
    if engine not in ENGINES:
        raise ConfigError(f"engine = {engine!r} is not known; use one of {list(ENGINES)}")
    method = cfg.get("method")
    allowed = {**COMMON_KEYS, **ENGINE_KEYS[engine]}
    # Each method may have an options table named after it; other methods' tables are allowed
    # too so one file can be switched between methods with method=... on the command line.
    unknown = sorted(k for k in cfg if k not in allowed and k not in METHODS)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in the config for engine '{engine}'; "
            f"allowed keys are {sorted(allowed)} plus a table per method "
            f"{list(METHODS)}"
        )
    for key, (types, default) in allowed.items():
        if default is OPTIONAL and key not in cfg:
            continue
        if key not in cfg or cfg[key] is None:
            if default is None and key not in ("metric", "time_attr", "checkpoint_interval"):
                raise ConfigError(
                    f"missing required key {key!r}; add it to the config, e.g. {_example(key)}"
                )
            value = ENGINE_DEFAULTS[engine].get(key, default)
            cfg[key] = copy.deepcopy(value)
            continue
        value = cfg[key]
        if (isinstance(value, bool) and types is not bool) or not isinstance(value, types):
            names = (types,) if isinstance(types, type) else types
            raise ConfigError(
                f"key {key!r} = {value!r} has the wrong type; expected "
                f"{' or '.join(t.__name__ for t in names)}"
            )
    if method not in METHODS:
        raise ConfigError(f"method = {method!r} is not known; use one of {list(METHODS)}")
    for key in ("population", "total_steps", "perturbation_interval"):
        if cfg[key] <= 0:
            raise ConfigError(f"key {key!r} = {cfg[key]} must be > 0")
    if cfg["perturbation_interval"] > cfg["total_steps"]:
        raise ConfigError(
            f"perturbation_interval ({cfg['perturbation_interval']}) is larger "
            f"than total_steps ({cfg['total_steps']}): no member would ever be "
            "ready; lower the interval or raise the budget"
        )
    if engine == "vector" and cfg["metric"] not in ("episode_return", "eval_return"):
        raise ConfigError(
            f"metric = {cfg['metric']!r}: the vector engine scores members by "
            "'episode_return' (training episodes) or 'eval_return' (greedy "
            "evaluation, needs eval_episodes > 0)"
        )
    if engine == "vector" and cfg["metric"] == "eval_return" and cfg["eval_episodes"] < 1:
        raise ConfigError("metric = 'eval_return' needs eval_episodes >= 1, e.g. eval_episodes = 8")
    if engine == "vector":
        from gpbt.rl.execution import STRATEGIES

        if cfg["execution"] not in STRATEGIES:
            raise ConfigError(
                f"execution = {cfg['execution']!r} is not known; use one of {list(STRATEGIES)} "
                "(auto picks lockstep or per-member from the search space)"
            )
        if cfg["devices"] < 0:
            raise ConfigError(
                f"devices = {cfg['devices']} must be >= 0 (0 uses every device, on CPU one "
                "per core)"
            )
    if cfg["mode"] not in ("max", "min"):
        raise ConfigError(f"mode = {cfg['mode']!r}: use 'max' or 'min'")
    for m in METHODS:
        if m in cfg and not isinstance(cfg[m], dict):
            raise ConfigError(f"'{m}' must be a table of method options, e.g. [{m}]")
    try:
        space = Space.from_dict(cfg["space"])
    except ValueError as err:
        raise ConfigError(f"[space] {err}") from None
    try:
        # Building the scheduler checks the method's options against the space (PB2 and
        # unordered choices, unknown options) before anything trains.
        build_scheduler(cfg, space)
    except ValueError as err:
        raise ConfigError(f"[{method}] {err}") from None
    if cfg["checkpoint_interval"] is None:
        cfg["checkpoint_interval"] = cfg["perturbation_interval"]
    return cfg


def build_scheduler(cfg: dict[str, Any], space: Space | None = None):
    space = space if space is not None else Space.from_dict(cfg["space"])
    return make_scheduler(
        cfg["method"],
        space,
        perturbation_interval=cfg["perturbation_interval"],
        seed=cfg["seed"],
        mode=cfg["mode"],
        burn_in_period=cfg["burn_in_period"],
        options=cfg.get(cfg["method"], {}),
    )


def _example(key: str) -> str:
    return {
        "method": 'method = "gpbt-pl"',
        "population": "population = 8",
        "total_steps": "total_steps = 1_000_000",
        "perturbation_interval": "perturbation_interval = 50_000",
        "space": '[space]\nlr = { type = "float", low = 1e-5, high = 1e-3, log = true }',
        "env": 'env = "CartPole-v1"',
        "trainable": 'trainable = "my_module:MyTrainable"',
    }.get(key, f"{key} = ...")
