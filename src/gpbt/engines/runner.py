"""What every run goes through, once for all engines: validation, the folder's lock, the
refusal of a fresh run into a folder that holds one, and the live log (TensorBoard / W&B).

An engine only prepares (`Engine.prepare`: the checks it can make before the folder is locked)
and runs (the function `prepare` returns, called under the lock). The vector engine's
supervisor and its training child run inside that call: the lock is held by this process,
the parent, for the whole run and every restart of the child.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpbt.engines.lock import hold_folder
from gpbt.engines.protocol import Engine, OnEvent, Summary, refuse_existing_run
from gpbt.live_log import open_live_log
from gpbt.spec import RunSpec


def spec_for(engine: Engine, spec: RunSpec | Mapping[str, Any]) -> RunSpec:
    """`spec` as a `RunSpec` of `engine`: a plain config dict is validated (its "engine" key
    defaults to this engine); a spec of another engine is refused."""
    named = spec.engine if isinstance(spec, RunSpec) else spec.get("engine", engine.name)
    if named != engine.name:
        raise ValueError(
            f"engine = {named!r}: run_{engine.name} runs engine = '{engine.name}' configs"
        )
    if not isinstance(spec, RunSpec):
        spec = RunSpec.from_config({**spec, "engine": engine.name}, engine)
    return spec


def run_with(
    engine: Engine,
    spec: RunSpec | Mapping[str, Any],
    folder: str | Path,
    *,
    resume: bool = False,
    on_event: OnEvent | None = None,
    supervise: bool = True,
) -> Summary:
    """Run (or resume) `spec` on `engine` into `folder` and return its `Summary`.

    A fresh run (`resume=False`) into a folder that already holds an experiment is refused,
    before anything is built and again once the folder's lock is held (where no other run can
    create the store between the check and the run's first write). The live log is opened once
    the folder is ours and the engine accepted its arguments, so a refused or bad run leaves no
    W&B run behind. `supervise` is the vector engine's (train in a watched child process);
    engines without a supervisor ignore it."""
    spec = spec_for(engine, spec)
    folder = Path(folder)
    if not resume:
        refuse_existing_run(folder)
    run = engine.prepare(spec, folder, resume=resume, on_event=on_event, supervise=supervise)
    with hold_folder(folder, "resume" if resume else "run"):
        if not resume:
            refuse_existing_run(folder)
        live_log = open_live_log(spec.get("logging"), folder, mode=spec.mode, config=spec.to_dict())
        try:
            return run(live_log)
        finally:
            if live_log is not None:
                live_log.close()
