"""The asynchronous local engine: any Python trainable, N worker processes, crash-safe resume.

This package keeps `gpbt.engines.local` the one import path (gpbt.spec's ENGINE_MODULES, the
CLI, tests, user code) for a module split by job:

    worker.py   what runs inside a worker process (the step loop, the trainable cache)
    pools.py    the executors: worker processes, or the deterministic simulated pool
    engine.py   the engine: scheduling, the store, checkpoints, the summary, `run_local`

How a run proceeds, member time, durability and checkpoints: see `engine.py`'s docstring.
"""

# Re-exports only, so "imported but unused" is the point here.
# ruff: noqa: F401

# Every top-level name the single-file module had stays importable from here, the private
# ones included (tests and gpbt.analysis reach some of them).
from gpbt.engines.local.engine import (
    _STATE_VERSION,
    CHECKPOINTS,
    DEFAULTS,
    OPTIONS,
    RUNTIME_KEYS,
    STATE_KEY,
    LocalEngine,
    _is_number,
    _Member,
    _member_seed,
    log,
    run_local,
)
from gpbt.engines.local.pools import (
    _THREAD_VARS,
    _Event,
    _kill,
    _Proc,
    _ProcessPool,
    _SimulatedPool,
)
from gpbt.engines.local.worker import (
    _folder_bytes,
    _Live,
    _quiet_cleanup,
    _Runner,
    _worker_main,
)
from gpbt.engines.trainable import (
    Trainable,
    TrainableError,
)

__all__ = ["LocalEngine", "run_local", "Trainable", "TrainableError"]
