"""The engines that run a population and obey the scheduler core, all behind one protocol
(`gpbt.engines.protocol`): `run(spec, folder, *, resume, on_event) -> Summary`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpbt.engines.protocol import Engine, OnEvent, Summary, refuse_existing_run

__all__ = ["Engine", "OnEvent", "Summary", "engine_for", "refuse_existing_run", "run_engine"]


def engine_for(name: str) -> Engine:
    """The entry point of engine `name` (its module is imported on demand)."""
    from gpbt.spec import engine_module

    module = engine_module(name)
    return getattr(module, {"vector": "run_vector", "local": "run_local", "ray": "run_ray"}[name])


def run_engine(
    spec: Any, folder: str | Path, *, resume: bool = False, on_event: OnEvent | None = None
) -> Summary:
    """Run `spec` (a RunSpec) on the engine it names. A fresh run (`resume=False`) into a
    folder that already holds an experiment is refused, for every engine; the vector engine,
    whose fresh start clears the store, checks again once it holds the folder's lock."""
    if not resume:
        refuse_existing_run(folder)
    return engine_for(spec.engine)(spec, folder, resume=resume, on_event=on_event)
