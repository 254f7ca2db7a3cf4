"""The SQLite file itself: its tables, schema version, connections and transactions.

Everything that knows the file layout (table definitions, the column order of the queries that
read rows back) or talks to ``sqlite3`` directly lives here; the writer and the reader build on it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpbt.errors import StoreError
from gpbt.store.faults import DB_NAME, StorageFault, storage_fault

SCHEMA_VERSION = 1
DECISION_KINDS = ("continue", "exploit", "stop")

_FOLDER_HELP = (
    f"a gpbt experiment folder contains {DB_NAME} (reports, decisions, checkpoint index), "
    "written by a gpbt run or by gpbt.store.ExperimentStore(folder)"
)

_SCHEMA = (
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    # `time` has no declared type on purpose: a typed column would coerce 5.0 to 5 (NUMERIC)
    # or 5 to 5.0 (REAL), and step counts should come back as the ints they were written as.
    """CREATE TABLE reports (
        member INTEGER NOT NULL,
        time NOT NULL,
        score REAL,
        score_invalid INTEGER NOT NULL,
        metrics TEXT NOT NULL,
        config TEXT NOT NULL,
        wall_time REAL NOT NULL,
        PRIMARY KEY (member, time)
    )""",
    "CREATE INDEX reports_by_time ON reports (time)",
    # `seq` is the rowid without AUTOINCREMENT: after truncate_after() the re-issued decisions
    # get the same numbers the abandoned ones had, so a replayed run numbers identically.
    """CREATE TABLE decisions (
        seq INTEGER PRIMARY KEY,
        time NOT NULL,
        member INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('continue', 'exploit', 'stop')),
        method TEXT,
        partner INTEGER,
        donor INTEGER,
        member_score REAL,
        partner_score REAL,
        old_config TEXT,
        new_config TEXT,
        velocity TEXT,
        extra TEXT,
        wall_time REAL NOT NULL,
        UNIQUE (time, member)
    )""",
    """CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        time NOT NULL,
        path TEXT NOT NULL,
        members TEXT,
        meta TEXT,
        created REAL NOT NULL,
        UNIQUE (time, path)
    )""",
    """CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated REAL NOT NULL
    )""",
)

_DECISION_SELECT = (
    "SELECT seq, time, member, kind, method, partner, donor, member_score, partner_score, "
    "wall_time, old_config, new_config, velocity, extra FROM decisions ORDER BY seq"
)

# rowid order is commit order: what an asynchronous engine fed its scheduler, report by report
_REPORT_ORDER_SELECT = "SELECT member, time, score, score_invalid FROM reports ORDER BY rowid"

_CHECKPOINT_SELECT = "SELECT time, path, members, meta, created FROM checkpoints"


class SchemaVersionError(StoreError, RuntimeError):
    """The file was written by a newer gpbt whose schema this version cannot read safely."""


# --------------------------------------------------------------------------- connection


def _connect(path: Path, timeout: float, *, write: bool) -> sqlite3.Connection:
    try:
        return _open(path, timeout, write=write, immutable=False)
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e):
            raise StoreError(
                f"{path} is not an SQLite file, so not a gpbt experiment store; {_FOLDER_HELP}"
            ) from e
        name = getattr(e, "sqlite_errorname", "") or ""
        fault = storage_fault(e, path.parent, "opening the experiment store")
        if write or not name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR")):
            if fault is None:
                raise
            raise fault from e
        # A reader on read-only media or a full disk: SQLite cannot create the WAL's
        # shared-memory file next to the store. With no write-ahead log left behind (a run
        # that closed, or whose log was checkpointed), the main file holds every committed
        # row, and no writer is live (a live one keeps its log): it is read as immutable.
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StorageFault(
                f"{path.parent}: SQLite cannot open the store here ({e}) and its last rows are "
                f"still in {wal.name}, which it can only read where it may write; free space "
                "or copy the folder somewhere writable and use the copy (nothing was changed)"
            ) from e
        try:
            return _open(path, timeout, write=False, immutable=True)
        except sqlite3.DatabaseError:
            if fault is None:
                raise
            raise fault from e


def _open(path: Path, timeout: float, *, write: bool, immutable: bool) -> sqlite3.Connection:
    # isolation_level=None: transactions are opened explicitly, so a batch is exactly one
    # transaction regardless of the sqlite3 module's implicit-transaction rules.
    target = os.fspath(path)
    if immutable:
        target = f"{path.resolve().as_uri()}?immutable=1"
    conn = sqlite3.connect(
        target,
        timeout=timeout,
        isolation_level=None,
        check_same_thread=False,
        uri=immutable,
    )
    try:
        if write:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA user_version").fetchone()  # fails here on a non-SQLite file
    except BaseException:
        conn.close()
        raise
    return conn


def _check_version(conn: sqlite3.Connection, path: Path, *, allow_empty: bool) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} uses experiment-store schema version {version}, but this gpbt reads "
            f"versions up to {SCHEMA_VERSION}; upgrade gpbt to open it (it was not modified)"
        )
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables or not allow_empty:
            raise StoreError(
                f"{path} is an SQLite file but not a gpbt experiment store "
                f"(no gpbt schema version); {_FOLDER_HELP}"
            )
    return version


def create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables and version records in a new (empty) store; a store that already
    has them is left as it is, and one of another version or not gpbt's is refused."""
    if _check_version(conn, path, allow_empty=True) == SCHEMA_VERSION:
        return
    with _transaction(conn):
        # Re-checked under the write lock: another process may have created it meanwhile.
        if _check_version(conn, path, allow_empty=True) == SCHEMA_VERSION:
            return
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [
                ("schema_version", str(SCHEMA_VERSION)),
                ("created", repr(time.time())),
                ("gpbt_version", _gpbt_version()),
            ],
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _gpbt_version() -> str:
    # From the installed distribution's metadata, not gpbt.__version__: the store sits below
    # the package's top level and must not import upwards into it. Only new files need it.
    from importlib import metadata

    try:
        return metadata.version("gpbt")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
        return "unknown"


@contextmanager
def _transaction(conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout instead
    # of one failing with SQLITE_BUSY halfway through a batch.
    conn.execute(f"BEGIN {mode}")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
