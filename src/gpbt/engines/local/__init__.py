"""The asynchronous local engine: any Python trainable, N worker processes, crash-safe resume.

This package keeps `gpbt.engines.local` the one import path (the docs, tests, user code) for a
module split by job:

    worker.py   what runs inside a worker process (the step loop, the trainable cache)
    pools.py    the executors: worker processes, or the deterministic simulated pool
    engine.py   the engine: scheduling, the store, checkpoints, the summary, `run_local`, and
                `ENGINE`, what gpbt.engines registers

How a run proceeds, member time, durability and checkpoints: see `engine.py`'s docstring.
"""

from __future__ import annotations

import importlib
from typing import Any

from gpbt.engines.trainable import Trainable, TrainableError

# Every worker process imports this package on its way to `worker._worker_main` (spawn pickles
# the target by module path), so nothing here may load the engine: it imports the scheduler
# core and the store (pandas), which would make starting or replacing a worker slow. The names
# are therefore loaded from `engine.py` on first access (PEP 562): the public ones, and the two
# constants gpbt.analysis and the tests read by this path. Anything else is imported from its
# submodule.
_HOME = dict.fromkeys(
    ("AllMembersFailed", "CHECKPOINTS", "LocalEngine", "STATE_KEY", "run_local"), "engine"
)

__all__ = ["AllMembersFailed", "LocalEngine", "run_local", "Trainable", "TrainableError"]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
