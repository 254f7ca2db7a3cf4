"""The experiment store: one SQLite file per experiment folder.

An experiment folder holds ``experiment.sqlite`` (this package's file) next to whatever the
engines put there (checkpoint directories). The file is written while the run goes, so that a
run killed at any moment, even by SIGKILL, leaves a readable record of everything up to its
last completed batch, and so that ``gpbt.load(folder)`` works on a running experiment.

Durability model
    Every public write method is one SQLite transaction (WAL journal, ``synchronous=NORMAL``):
    a batch of reports or decisions appears whole or not at all. NORMAL is enough against a
    killed process; only a power loss can drop the last few committed batches, never corrupt
    the file.

Faults of the disk
    A full disk, a read-only folder or a damaged file raise ``StorageFault`` or
    ``StoreDamaged`` (``gpbt.store.faults``), whose message names the folder, the cause and
    the fix, and which the CLI prints as one ``gpbt: error:`` line; the batch being written is
    rolled back whole, so nothing recorded is lost. A store on read-only media is still read
    (``load``, ``gpbt replay``, ``gpbt export --out ELSEWHERE``) when its run closed it.

Resume contract
    A resumed run restarts from its latest checkpoint at time ``T`` and re-generates reports
    and decisions after ``T``. Before it re-runs anything, the engine calls
    ``store.truncate_after(T)``, which deletes reports, decisions and checkpoint entries with
    ``time > T`` in one transaction, so nothing from the abandoned future survives next to
    its replay. As a second line of defence, writes are idempotent: a report is keyed by
    ``(member, time)`` and a decision by ``(time, member)``; re-adding either replaces the
    stored row (a decision keeps its ``seq``).

DataFrame columns
    ``reports()``: ``member, time, score, score_invalid, wall_time``, then ``metric.<name>``
    per metric and ``config.<name>`` per hyperparameter. ``decisions()``: ``seq, time,
    member, kind, method, partner, donor, member_score, partner_score, wall_time``, then
    ``old_config.<name>``, ``new_config.<name>``, ``velocity.<name>`` and ``extra.<key>``.
    The first ``.`` separates the group from the name; nested dicts inside a group are
    joined with ``/`` (``config.optimizer/lr``), so a column name splits unambiguously.

Scores
    A NaN, infinite or missing score is a fact about the run worth keeping, not an error:
    it is stored with ``score_invalid = 1``; NaN and missing are stored as NULL (SQLite has
    no NaN) and read back as NaN, infinities are kept as they are.
"""

from typing import TYPE_CHECKING, Any

from gpbt.store.faults import StorageFault, StoreDamaged
from gpbt.store.schema import DB_NAME, SCHEMA_VERSION, SchemaVersionError
from gpbt.store.writer import ExperimentStore

if TYPE_CHECKING:
    from gpbt.store.reader import Experiment, load

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "Experiment",
    "ExperimentStore",
    "SchemaVersionError",
    "StorageFault",
    "StoreDamaged",
    "load",
]


# The reader builds pandas DataFrames, so it is imported on first use of these names: importing
# the package to write (engines, worker processes) must not import pandas (PEP 562).
_LAZY = {"Experiment": "gpbt.store.reader", "load": "gpbt.store.reader"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
