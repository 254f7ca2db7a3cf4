"""The engines that run a population and obey the scheduler core: one `Engine` object per
engine (`gpbt.engines.protocol`), registered once in `ENGINES`, all run by `run_engine`.

Adding an engine is one module that defines `ENGINE = Engine(...)` and one line in `ENGINES`
(docs/architecture.md, "Add an engine"). An engine's module is imported when it is first
asked for: validating a vector config must not import Ray.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpbt.engines.protocol import Engine, OnEvent, Summary, refuse_existing_run
from gpbt.errors import ConfigError

__all__ = [
    "ENGINES",
    "Engine",
    "OnEvent",
    "Summary",
    "engine_named",
    "engine_of",
    "refuse_existing_run",
    "register",
    "run_engine",
    "validate",
]

# engine name -> the module whose ENGINE it is: the one registration line of an engine
ENGINES: dict[str, str] = {
    "vector": "gpbt.engines.vector",
    "local": "gpbt.engines.local.engine",
    "ray": "gpbt.engines.ray",
}
# the engine of a config that names none
DEFAULT_ENGINE = "vector"


def register(name: str, module: str) -> None:
    """Register engine `name`, defined as `ENGINE` in `module` (an import path), for this
    process: a plugin's or a test's engine without editing `ENGINES`."""
    ENGINES[name] = module


def engine_named(name: Any) -> Engine:
    """The `Engine` called `name` (its module is imported on demand); a `ConfigError` naming
    the known ones when there is none, or when its module cannot be imported (Ray missing)."""
    if not isinstance(name, str):
        raise ConfigError(f"key 'engine' = {name!r}: use one of {list(ENGINES)}")
    if name not in ENGINES:
        raise ConfigError(f"engine = {name!r} is not known; use one of {list(ENGINES)}")
    try:
        module = importlib.import_module(ENGINES[name])
    except ImportError as err:
        raise ConfigError(f"engine = {name!r}: {err}") from None
    return module.ENGINE


def validate(raw: Mapping[str, Any]):
    """A config dict as a `RunSpec`, validated against the engine it names (a `RunSpec` is
    returned as it is)."""
    from gpbt.spec import RunSpec

    if isinstance(raw, RunSpec):
        return raw
    return RunSpec.from_config(raw, engine_named(raw.get("engine", DEFAULT_ENGINE)))


def run_engine(
    spec: Any,
    folder: str | Path,
    *,
    resume: bool = False,
    on_event: OnEvent | None = None,
    supervise: bool = True,
) -> Summary:
    """Run `spec` (a RunSpec, or a config dict) on the engine it names: validated, with the
    folder locked and the live log open for the whole run (`gpbt.engines.runner`). A fresh
    run (`resume=False`) into a folder that already holds an experiment is refused, for
    every engine. `supervise=False` trains a vector run in this process (no watchdog)."""
    from gpbt.engines.runner import run_with

    name = spec.engine if hasattr(spec, "engine") else spec.get("engine", DEFAULT_ENGINE)
    return run_with(
        engine_named(name),
        spec,
        folder,
        resume=resume,
        on_event=on_event,
        supervise=supervise,
    )


def engine_of(config: Mapping[str, Any] | None) -> Engine | None:
    """The engine a stored run's config names, or None where there is none to ask here: no
    config, an engine this installation does not know, or one whose module cannot be
    imported (a Ray run read without Ray). What a finished run supports is asked of it."""
    name = (config or {}).get("engine")
    if name is None:
        return None
    try:
        return engine_named(name)
    except ConfigError:
        return None
