"""Experiment config files: TOML plus command-line overrides in, one validated `RunSpec` out,
or one clear error.

Everything is checked before any training starts, in one place (`gpbt.spec.RunSpec.from_config`,
with the engine the config names, from `gpbt.engines`' registry):
unknown keys (with the allowed ones listed), wrong types, the search space, the method and its
options, and each engine's own keys as that engine declares them. Command-line overrides use the
Hydra style `key=value` / `table.key=value`, the value parsed as TOML (so `lr=1e-3`,
`synch=true` and `factors=[1.2, 0.8]` work; anything else is a string).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpbt.engines import DEFAULT_ENGINE, engine_named, validate
from gpbt.errors import ConfigError
from gpbt.spec import RunSpec

__all__ = ["ConfigError", "RunSpec", "apply_overrides", "load_config", "parse_value",
           "read_toml", "resume_config", "validate_config"]  # fmt: skip


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


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A TOML file's table, or one ConfigError saying what is wrong with the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"{what} {str(path)!r} does not exist; pass the path of a TOML "
            "file such as examples/quickstart.toml"
        )
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a folder; pass the path of a TOML file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(
            f"{what} {str(path)!r} is not a text file (not UTF-8); pass a TOML file"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"{what} {str(path)!r} is not valid TOML: {err}; fix the syntax at that line"
        ) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunSpec:
    return validate_config(apply_overrides(read_toml(path), overrides or []))


def resume_config(stored: Mapping[str, Any], overrides: list[str] | None = None) -> RunSpec:
    """The spec a run resumes with: its stored config, with `overrides` of the keys its engine
    lets change on resume (the local engine's workers and timeouts); any other key would make
    another experiment, and is refused naming the ones that may change."""
    stored = dict(stored)
    engine = stored.get("engine", DEFAULT_ENGINE)
    allowed = engine_named(engine).resume_keys
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if "=" in item and key not in allowed:  # without "=": apply_overrides says how to write it
            may = (
                f"only {', '.join(allowed)} may change on resume"
                if allowed
                else f"a {engine}-engine run resumes with its stored config unchanged"
            )
            raise ConfigError(
                f"resume override {item!r}: {key!r} cannot change when a run is resumed ({may}); "
                "to train with other settings, start a new run with `gpbt run CONFIG`"
            )
    return validate_config(apply_overrides(stored, overrides or []))


def validate_config(raw: Mapping[str, Any]) -> RunSpec:
    """A config dict (already parsed) -> the validated, frozen `RunSpec`, or one ConfigError."""
    return validate(raw)
