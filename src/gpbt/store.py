"""The experiment store: one SQLite file per experiment folder.

An experiment folder holds ``experiment.sqlite`` (this module's file) next to whatever the
engines put there (checkpoint directories). The file is written while the run goes, so that a
run killed at any moment, even by SIGKILL, leaves a readable record of everything up to its
last completed batch, and so that ``gpbt.load(folder)`` works on a running experiment.

Durability model
    Every public write method is one SQLite transaction (WAL journal, ``synchronous=NORMAL``):
    a batch of reports or decisions appears whole or not at all. NORMAL is enough against a
    killed process; only a power loss can drop the last few committed batches, never corrupt
    the file.

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

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import operator
import os
import sqlite3
import threading
import time as _time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from gpbt.errors import StoreError

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "Experiment",
    "ExperimentStore",
    "SchemaVersionError",
    "load",
]

DB_NAME = "experiment.sqlite"
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

_REPORT_KEYS = frozenset({"member", "time", "score", "metrics", "config"})
_DECISION_COLUMNS = (
    "time",
    "member",
    "kind",
    "method",
    "partner",
    "donor",
    "member_score",
    "partner_score",
    "old_config",
    "new_config",
    "velocity",
)
_DECISION_KEYS = frozenset(_DECISION_COLUMNS) | {"seq", "wall_time"}

# Connections inherited through fork() are parked here instead of being closed: closing them
# in the child could checkpoint or unlink the WAL under the parent's feet.
_INHERITED: list[sqlite3.Connection] = []


class SchemaVersionError(StoreError, RuntimeError):
    """The file was written by a newer gpbt whose schema this version cannot read safely."""


# --------------------------------------------------------------------------- JSON helpers


def _plain(obj: Any, where: str = "value") -> Any:
    """Turn numpy/JAX scalars and arrays, tuples, sets, paths, dataclasses into JSON types.

    Arrays are recognised by duck typing (``dtype`` + ``tolist``) so JAX and torch values
    work without this module importing either.
    """
    if obj is None or type(obj) in (str, int, float, bool):
        return obj
    if isinstance(obj, Mapping):
        return {
            (k if isinstance(k, str) else str(_plain(k, where))): _plain(v, f"{where}/{k}")
            for k, v in obj.items()
        }
    # Subclasses (numpy.float64, IntEnum, StrEnum) become the plain type JSON knows.
    for plain in (bool, int, float, str):
        if isinstance(obj, plain):
            return plain(obj)
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):
        return _plain(obj.tolist(), where)
    if isinstance(obj, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        items = [_plain(v, where) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj), where)
    if hasattr(obj, "item"):
        return _plain(obj.item(), where)
    raise TypeError(
        f"cannot store {where} of type {type(obj).__name__}: the experiment store keeps "
        "JSON values (numbers, strings, bools, None, lists, dicts, numpy arrays)"
    )


def _default(obj: Any) -> Any:
    return _plain(obj)


def _dumps(obj: Any, where: str) -> str:
    # allow_nan: a NaN metric is data; Python's json reads its own NaN/Infinity tokens back.
    # The C encoder with a default hook is the fast path (10k reports must stay well under a
    # second); only values it cannot take (such as numpy dict keys) go through _plain, which
    # also produces the error message naming the field.
    try:
        return json.dumps(obj, default=_default, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(_plain(obj, where), allow_nan=True, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _flatten_into(out: dict[str, Any], prefix: str, value: Any, sep: str = ".") -> None:
    # An empty dict at the top (no metrics) adds no column; nested, it is a value of its own.
    if isinstance(value, Mapping) and (value or sep == "."):
        for k, v in value.items():
            _flatten_into(out, f"{prefix}{sep}{k}" if prefix else str(k), v, "/")
    elif prefix:
        out[prefix] = value


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    _flatten_into(out, prefix, value)
    return out


# ------------------------------------------------------------------------ value coercion


def _as_record(obj: Any, what: str, index: int) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"{what} #{index} must be a dict, got {type(obj).__name__}")


def _member(value: Any, field: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{field} must be an integer member index, got {value!r}") from None


def _opt_member(value: Any, field: str) -> int | None:
    return None if value is None else _member(value, field)


def _time_value(value: Any, field: str = "time") -> int | float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field} must be a number (steps, samples or seconds), got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        pass
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a number, got {value!r}") from None
    if math.isnan(t):
        raise ValueError(f"{field} must not be NaN")
    return t


def _score(value: Any, field: str) -> tuple[float | None, int]:
    """(stored value, invalid flag): NaN/None -> NULL, +-inf kept; both flagged."""
    if value is None:
        return None, 1
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a float, got {value!r}") from None
    if math.isnan(s):
        return None, 1
    return s, int(math.isinf(s))


def _float_or_none(value: Any, field: str) -> float | None:
    return _score(value, field)[0]


# ------------------------------------------------------------------------------- lineage


def _py(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _lineage(
    exploits: Iterable[tuple[Any, int, int, int]],
    member: int,
    time: int | float | None,
    latest: int | float | None,
) -> list[tuple[int | float | None, int]]:
    """Walk donors back from ``(time, member)``.

    ``exploits`` are ``(time, seq, member, donor)``. The member's weights at ``time`` come
    from its last exploit at or before ``time``; from there on the walk follows ``seq``, not
    time: an asynchronous engine's donor may be at another step count than its recipient,
    but it can only have handed over weights it received in a decision logged earlier.
    (Lockstep engines never exploit a donor in the generation it donates, so the two orders
    agree there.) An exploit whose donor is the member itself (a fixed schedule's change of
    hyperparameters) keeps the weights where they are, so it is no hop.
    """
    by_member: dict[int, list[tuple[int, Any, int]]] = {}
    for t, seq, m, donor in exploits:
        if int(donor) != int(m):
            by_member.setdefault(int(m), []).append((int(seq), _py(t), int(donor)))
    for events in by_member.values():
        events.sort()

    hops: list[tuple[int | float | None, int]] = [(time if time is not None else latest, member)]
    events = [e for e in by_member.get(member, []) if time is None or e[1] <= time]
    while events:
        seq, t, donor = events[-1]
        hops.append((t, donor))
        events = by_member.get(donor, [])
        events = events[: bisect.bisect_left(events, (seq,))]
    return hops


# --------------------------------------------------------------------------- connection


def _connect(path: Path, timeout: float, *, write: bool) -> sqlite3.Connection:
    # isolation_level=None: transactions are opened explicitly, so a batch is exactly one
    # transaction regardless of the sqlite3 module's implicit-transaction rules.
    conn = sqlite3.connect(
        os.fspath(path), timeout=timeout, isolation_level=None, check_same_thread=False
    )
    try:
        if write:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA user_version").fetchone()  # fails here on a non-SQLite file
    except sqlite3.DatabaseError as e:
        conn.close()
        if "not a database" in str(e):
            raise StoreError(
                f"{path} is not an SQLite file, so not a gpbt experiment store; {_FOLDER_HELP}"
            ) from e
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


# ------------------------------------------------------------------------------ readers


def _reports_frame(rows: list[tuple]) -> pd.DataFrame:
    flat: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for row in rows:
        d = _flatten(json.loads(row[5]), "metric")
        d.update(_flatten(json.loads(row[6]), "config"))
        columns.update(dict.fromkeys(d))
        flat.append(d)
    base = pd.DataFrame(
        {
            "member": pd.Series([r[0] for r in rows], dtype="int64"),
            "time": pd.Series([r[1] for r in rows], dtype=None if rows else "int64"),
            "score": pd.Series([r[2] for r in rows], dtype="float64"),
            "score_invalid": pd.Series([bool(r[3]) for r in rows], dtype="bool"),
            "wall_time": pd.Series([r[4] for r in rows], dtype="float64"),
        }
    )
    if not columns:
        return base
    metric_cols = [c for c in columns if c.startswith("metric.")]
    config_cols = [c for c in columns if c.startswith("config.")]
    extra = pd.DataFrame.from_records(flat, columns=metric_cols + config_cols)
    return pd.concat([base, extra], axis=1)


_DECISION_SELECT = (
    "SELECT seq, time, member, kind, method, partner, donor, member_score, partner_score, "
    "wall_time, old_config, new_config, velocity, extra FROM decisions ORDER BY seq"
)


def _decisions_frame(rows: list[tuple]) -> pd.DataFrame:
    flat: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for row in rows:
        d: dict[str, Any] = {}
        for prefix, text in zip(
            ("old_config", "new_config", "velocity", "extra"), row[10:14], strict=True
        ):
            value = _loads(text)
            if value is not None:
                _flatten_into(d, prefix, value)
        columns.update(dict.fromkeys(d))
        flat.append(d)

    def col(i: int) -> list:
        return [r[i] for r in rows]

    base = pd.DataFrame(
        {
            "seq": pd.Series(col(0), dtype="int64"),
            "time": pd.Series(col(1), dtype=None if rows else "int64"),
            "member": pd.Series(col(2), dtype="int64"),
            "kind": pd.Series(col(3), dtype="str"),
            "method": pd.Series(col(4), dtype="str"),
            "partner": pd.array(col(5), dtype="Int64"),
            "donor": pd.array(col(6), dtype="Int64"),
            "member_score": pd.Series(col(7), dtype="float64"),
            "partner_score": pd.Series(col(8), dtype="float64"),
            "wall_time": pd.Series(col(9), dtype="float64"),
        }
    )
    if not columns:
        return base
    order = [
        c
        for group in ("old_config", "new_config", "velocity", "extra")
        for c in columns
        if c.startswith(group)
    ]
    return pd.concat([base, pd.DataFrame.from_records(flat, columns=order)], axis=1)


def _decision_record(row: tuple) -> dict[str, Any]:
    record = {
        "seq": row[0],
        "time": row[1],
        "member": row[2],
        "kind": row[3],
        "method": row[4],
        "partner": row[5],
        "donor": row[6],
        "member_score": math.nan if row[7] is None else row[7],
        "partner_score": math.nan if row[8] is None else row[8],
        "wall_time": row[9],
        "old_config": _loads(row[10]),
        "new_config": _loads(row[11]),
        "velocity": _loads(row[12]),
    }
    record.update(_loads(row[13]) or {})
    return record


def _checkpoint_record(row: tuple) -> dict[str, Any]:
    return {
        "time": row[0],
        "path": row[1],
        "members": _loads(row[2]),
        "meta": _loads(row[3]),
        "created": row[4],
    }


_CHECKPOINT_SELECT = "SELECT time, path, members, meta, created FROM checkpoints"


def _checkpoints_frame(checkpoints: list[dict[str, Any]]) -> pd.DataFrame:
    # members stays JSON text so CSV and Parquet hold the same thing.
    records = []
    for c in checkpoints:
        d = {
            "time": c["time"],
            "path": c["path"],
            "members": None if c["members"] is None else json.dumps(c["members"]),
            "created": c["created"],
        }
        _flatten_into(d, "meta", c["meta"] or {})
        records.append(d)
    if not records:
        return pd.DataFrame(columns=["time", "path", "members", "created"])
    return pd.DataFrame.from_records(records)


def _latest_time(reports: pd.DataFrame, decisions: pd.DataFrame, member: int) -> Any:
    times = [
        df.loc[df["member"] == member, "time"].max()
        for df in (reports, decisions)
        if (df["member"] == member).any()
    ]
    return _py(max(times)) if times else None


def _export(
    folder: str | os.PathLike,
    fmt: str,
    config: dict | None,
    frames: dict[str, pd.DataFrame],
) -> dict[str, Path]:
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be 'csv' or 'parquet', got {fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(
                "exporting to Parquet needs pyarrow: pip install 'gpbt[parquet]' "
                "(or pip install pyarrow), or export with format='csv'"
            ) from None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, df in frames.items():
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        written[name] = path
    path = out / "config.json"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    written["config"] = path
    return written


# ------------------------------------------------------------------------------- store


class ExperimentStore:
    """Read-write handle on ``<folder>/experiment.sqlite``; creates it if missing.

    One handle per process: it is thread-safe, and after ``fork()`` it opens a fresh
    connection in the child. Several processes may open the same folder; writes are
    serialised by SQLite's lock (waiting up to ``timeout`` seconds).
    """

    def __init__(self, folder: str | os.PathLike, *, timeout: float = 30.0) -> None:
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        self._timeout = timeout
        self._lock = threading.RLock()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = _connect(self.path, timeout, write=True)
        try:
            self._init_schema()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def _init_schema(self) -> None:
        conn = self._conn
        assert conn is not None
        if _check_version(conn, self.path, allow_empty=True) == SCHEMA_VERSION:
            return
        with _transaction(conn):
            # Re-checked under the write lock: another process may have created it meanwhile.
            if _check_version(conn, self.path, allow_empty=True) == SCHEMA_VERSION:
                return
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("created", repr(_time.time())),
                    ("gpbt_version", _gpbt_version()),
                ],
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- plumbing

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the experiment store {self.path} is closed")
        if os.getpid() != self._pid:
            _INHERITED.append(self._conn)
            self._conn = _connect(self.path, self._timeout, write=True)
            self._pid = os.getpid()
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                yield conn

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"ExperimentStore({os.fspath(self.folder)!r}, {state})"

    # -- config

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Record the experiment's config; on an existing experiment it must be the same.

        A resumed run that silently changed its config would produce a record no one can
        interpret, so a difference raises ValueError naming each differing key.
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        text = _dumps(config, "config")
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta (key, value) VALUES ('config', ?)", (text,))
                return
            if row[0] != text:
                _check_same_config(self.folder, json.loads(row[0]), json.loads(text))

    def read_config(self) -> dict | None:
        rows = self._query("SELECT value FROM meta WHERE key = 'config'")
        return json.loads(rows[0][0]) if rows else None

    # -- reports

    def add_reports(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Add a batch of reports in one transaction; returns how many rows were written.

        Each row: ``member``, ``time``, ``score`` and optional ``metrics`` and ``config``
        dicts. Re-adding a ``(member, time)`` replaces it. The whole batch is validated
        before anything is written: one bad row rejects the batch.
        """
        wall = _time.time()
        params = []
        for i, row in enumerate(rows):
            row = _as_record(row, "report", i)
            unknown = row.keys() - _REPORT_KEYS
            missing = {"member", "time", "score"} - row.keys()
            if unknown or missing:
                raise ValueError(
                    f"report #{i}: "
                    + (f"missing {sorted(missing)}; " if missing else "")
                    + (f"unknown keys {sorted(unknown)}; " if unknown else "")
                    + "a report has member, time, score, metrics (dict), config (dict); "
                    "put any other value into metrics"
                )
            score, invalid = _score(row["score"], f"report #{i} score")
            params.append(
                (
                    _member(row["member"], f"report #{i} member"),
                    _time_value(row["time"], f"report #{i} time"),
                    score,
                    invalid,
                    _dumps(row.get("metrics") or {}, f"report #{i} metrics"),
                    _dumps(row.get("config") or {}, f"report #{i} config"),
                    wall,
                )
            )
        if params:
            with self._write() as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO reports "
                    "(member, time, score, score_invalid, metrics, config, wall_time) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    params,
                )
        return len(params)

    def reports(self) -> pd.DataFrame:
        """All reports, ordered by (time, member); see the module docstring for columns."""
        return _reports_frame(
            self._query(
                "SELECT member, time, score, score_invalid, wall_time, metrics, config "
                "FROM reports ORDER BY time, member"
            )
        )

    def report_order(self) -> list[tuple[int, Any, float]]:
        """(member, time, score) of every report in the order they were committed (what an
        asynchronous engine fed its scheduler); an invalid score comes back as NaN."""
        rows = self._query("SELECT member, time, score, score_invalid FROM reports ORDER BY rowid")
        return [(int(r[0]), r[1], math.nan if r[3] or r[2] is None else float(r[2])) for r in rows]

    # -- decisions

    def add_decisions(self, records: Iterable[Mapping[str, Any]]) -> list[int]:
        """Append a batch of scheduler decisions in one transaction; returns their ``seq``.

        Keys beyond the standard ones are kept in the ``extra`` JSON column. Re-adding a
        decision for the same ``(time, member)`` overwrites it in place and keeps its seq.
        """
        wall = _time.time()
        params = []
        for i, rec in enumerate(records):
            rec = _as_record(rec, "decision", i)
            missing = {"time", "member", "kind"} - rec.keys()
            if missing:
                raise ValueError(f"decision #{i}: missing {sorted(missing)}")
            kind = rec["kind"]
            if kind not in DECISION_KINDS:
                raise ValueError(
                    f"decision #{i}: kind must be one of {DECISION_KINDS}, got {kind!r}"
                )
            # seq and wall_time are the store's own: a record read back from
            # decision_records() can be written again without them landing in `extra`.
            extra = {k: v for k, v in rec.items() if k not in _DECISION_KEYS}
            method = rec.get("method")
            params.append(
                (
                    _time_value(rec["time"], f"decision #{i} time"),
                    _member(rec["member"], f"decision #{i} member"),
                    kind,
                    None if method is None else str(method),
                    _opt_member(rec.get("partner"), f"decision #{i} partner"),
                    _opt_member(rec.get("donor"), f"decision #{i} donor"),
                    _float_or_none(rec.get("member_score"), f"decision #{i} member_score"),
                    _float_or_none(rec.get("partner_score"), f"decision #{i} partner_score"),
                    *(
                        None if rec.get(k) is None else _dumps(rec[k], f"decision #{i} {k}")
                        for k in ("old_config", "new_config", "velocity")
                    ),
                    _dumps(extra, f"decision #{i} extra") if extra else None,
                    wall,
                )
            )
        if not params:
            return []
        with self._write() as conn:
            seqs = []
            # One statement per row (not executemany) because RETURNING hands back the seq,
            # which an upsert may have kept from the row it overwrote.
            for p in params:
                seqs.append(
                    conn.execute(
                        "INSERT INTO decisions (time, member, kind, method, partner, donor, "
                        "member_score, partner_score, old_config, new_config, velocity, extra, "
                        "wall_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (time, member) DO UPDATE SET kind = excluded.kind, "
                        "method = excluded.method, partner = excluded.partner, "
                        "donor = excluded.donor, member_score = excluded.member_score, "
                        "partner_score = excluded.partner_score, "
                        "old_config = excluded.old_config, new_config = excluded.new_config, "
                        "velocity = excluded.velocity, extra = excluded.extra, "
                        "wall_time = excluded.wall_time RETURNING seq",
                        p,
                    ).fetchone()[0]
                )
        return seqs

    def decisions(self) -> pd.DataFrame:
        """All decisions in seq order; see the module docstring for columns."""
        return _decisions_frame(self._query(_DECISION_SELECT))

    def decision_records(self) -> list[dict[str, Any]]:
        """Decisions as the dicts they were written as (plus seq, wall_time), for replay."""
        return [_decision_record(r) for r in self._query(_DECISION_SELECT)]

    # -- resume

    def truncate_after(self, time: int | float) -> dict[str, int]:
        """Forget everything recorded after ``time``, in one transaction.

        The engine calls this on resume with the checkpoint's time, before re-running, so
        that the replayed steps replace the abandoned ones instead of sitting beside them.
        Returns how many rows were deleted per table.
        """
        t = _time_value(time)
        deleted = {}
        with self._write() as conn:
            for table in ("reports", "decisions", "checkpoints"):
                deleted[table] = conn.execute(f"DELETE FROM {table} WHERE time > ?", (t,)).rowcount
        return deleted

    # -- lineage

    def lineage(self, member: int, time: int | float | None = None) -> list[tuple[Any, int]]:
        """Where ``member``'s weights at ``time`` (default: its latest) came from.

        Returns ``[(time, member), (t1, donor1), (t2, donor2), ...]``: the weights were
        copied from donor1 at t1, which had copied them from donor2 at t2 < t1, ... back to
        the initial member (the last entry) that trained them from scratch.
        """
        member = _member(member, "member")
        with self._lock:
            conn = self._connection()
            with _transaction(conn, "DEFERRED"):
                exploits = conn.execute(
                    "SELECT time, seq, member, donor FROM decisions "
                    "WHERE kind = 'exploit' AND donor IS NOT NULL"
                ).fetchall()
                latest = None
                if time is None:
                    latest = conn.execute(
                        "SELECT max(t) FROM (SELECT max(time) AS t FROM reports WHERE member = ?"
                        " UNION ALL SELECT max(time) FROM decisions WHERE member = ?)",
                        (member, member),
                    ).fetchone()[0]
        return _lineage(exploits, member, None if time is None else _time_value(time), latest)

    # -- checkpoints

    def add_checkpoint(
        self,
        time: int | float,
        path: str | os.PathLike,
        members: list[int] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Index a checkpoint written by the engine (the store never reads its files).

        Prefer a ``path`` relative to the experiment folder so the folder can be moved.
        Re-adding the same ``(time, path)`` updates that entry.
        """
        if members is not None:
            members = [_member(m, "checkpoint members") for m in members]
        params = (
            _time_value(time),
            os.fspath(path),
            None if members is None else json.dumps(members),
            None if meta is None else _dumps(meta, "checkpoint meta"),
            _time.time(),
        )
        with self._write() as conn:
            conn.execute(
                "INSERT INTO checkpoints (time, path, members, meta, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (time, path) DO UPDATE SET "
                "members = excluded.members, meta = excluded.meta, created = excluded.created",
                params,
            )

    def checkpoints(self) -> list[dict[str, Any]]:
        """All checkpoint entries, oldest first: dicts with time, path, members, meta, created."""
        rows = self._query(f"{_CHECKPOINT_SELECT} ORDER BY time, id")
        return [_checkpoint_record(r) for r in rows]

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint a resume starts from (highest time, most recently indexed)."""
        rows = self._query(f"{_CHECKPOINT_SELECT} ORDER BY time DESC, id DESC LIMIT 1")
        return _checkpoint_record(rows[0]) if rows else None

    # -- small state blobs

    def set_state(self, key: str, value: Any) -> None:
        """Store a small JSON blob (scheduler ``state_dict``, engine state); last write wins.

        Arrays come back as (nested) lists: ``load_state_dict`` implementations must accept
        lists where they saved arrays.
        """
        text = _dumps(value, f"state {key!r}")
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO state (key, value, updated) VALUES (?, ?, ?)",
                (str(key), text, _time.time()),
            )

    def get_state(self, key: str) -> Any | None:
        rows = self._query("SELECT value FROM state WHERE key = ?", (str(key),))
        return json.loads(rows[0][0]) if rows else None

    # -- export

    def export(self, folder: str | os.PathLike, format: str = "csv") -> dict[str, Path]:
        """Write reports, decisions and checkpoints (``.csv`` or ``.parquet``) and config.json.

        Returns the written paths by name. Parquet needs pyarrow (``gpbt[parquet]``).
        """
        return _snapshot_store(self).export(folder, format)


def _check_same_config(folder: Path, stored: Any, given: Any) -> None:
    """Compare leaf by leaf, so key order and int-vs-float spelling of a number don't count."""
    old, new = _flatten(stored), _flatten(given)
    missing = object()
    diffs = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b and not (a is not missing and b is not missing and _same_json(a, b)):
            show = [("<absent>" if v is missing else repr(v))[:60] for v in (a, b)]
            diffs.append(f"{key} (stored {show[0]}, given {show[1]})")
    if not diffs:
        return
    raise ValueError(
        f"the experiment in {folder} was created with a different config; differing keys: "
        + "; ".join(diffs)
        + ". Resume with the original config, or start a new experiment folder."
    )


def _same_json(a: Any, b: Any) -> bool:
    # NaN != NaN, yet a config holding NaN is the same config when it is written again.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _gpbt_version() -> str:
    try:
        from gpbt import __version__
    except ImportError:
        return "unknown"
    return str(__version__)


# --------------------------------------------------------------------------- read-only


class Experiment:
    """A read-only snapshot of an experiment folder, taken in one consistent read.

    Safe to take while the run is writing: it sees the last committed batch.
    """

    def __init__(
        self,
        folder: Path,
        config: dict | None,
        reports: pd.DataFrame,
        decisions: pd.DataFrame,
        checkpoints: list[dict[str, Any]],
        states: dict[str, Any],
    ) -> None:
        self.folder = folder
        self.config = config
        self.reports = reports
        self.decisions = decisions
        self.checkpoints = checkpoints
        self.states = states

    @property
    def latest_checkpoint(self) -> dict[str, Any] | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def state(self, key: str) -> Any | None:
        return self.states.get(key)

    def lineage(self, member: int, time: int | float | None = None) -> list[tuple[Any, int]]:
        """See :meth:`ExperimentStore.lineage`."""
        member = _member(member, "member")
        d = self.decisions
        ex = d[(d["kind"] == "exploit") & d["donor"].notna()]
        exploits = zip(ex["time"], ex["seq"], ex["member"], ex["donor"], strict=True)
        latest = None if time is not None else _latest_time(self.reports, d, member)
        return _lineage(exploits, member, None if time is None else _time_value(time), latest)

    def export(self, folder: str | os.PathLike, format: str = "csv") -> dict[str, Path]:
        """See :meth:`ExperimentStore.export`."""
        frames = {
            "reports": self.reports,
            "decisions": self.decisions,
            "checkpoints": _checkpoints_frame(self.checkpoints),
        }
        return _export(folder, format, self.config, frames)

    def __repr__(self) -> str:
        members = self.reports["member"].nunique()
        return (
            f"Experiment({os.fspath(self.folder)!r}: {len(self.reports)} reports from "
            f"{members} members, {len(self.decisions)} decisions, "
            f"{len(self.checkpoints)} checkpoints)"
        )


def _snapshot(conn: sqlite3.Connection, folder: Path) -> Experiment:
    with _transaction(conn, "DEFERRED"):
        config = conn.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        reports = conn.execute(
            "SELECT member, time, score, score_invalid, wall_time, metrics, config "
            "FROM reports ORDER BY time, member"
        ).fetchall()
        decisions = conn.execute(_DECISION_SELECT).fetchall()
        checkpoints = conn.execute(f"{_CHECKPOINT_SELECT} ORDER BY time, id").fetchall()
        states = conn.execute("SELECT key, value FROM state").fetchall()
    return Experiment(
        folder=folder,
        config=None if config is None else json.loads(config[0]),
        reports=_reports_frame(reports),
        decisions=_decisions_frame(decisions),
        checkpoints=[_checkpoint_record(r) for r in checkpoints],
        states={k: json.loads(v) for k, v in states},
    )


def _snapshot_store(store: ExperimentStore) -> Experiment:
    with store._lock:
        return _snapshot(store._connection(), store.folder)


def load(folder: str | os.PathLike) -> Experiment:
    """Read an experiment folder into memory (config, reports, decisions, checkpoints).

    Never creates or modifies the experiment (the connection is ``query_only``), though
    SQLite may replay the WAL left behind by a killed run, which is what a reader should see.
    """
    folder = Path(folder)
    path = folder / DB_NAME
    if not folder.is_dir():
        raise FileNotFoundError(f"no experiment folder at {folder}: {_FOLDER_HELP}")
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no {DB_NAME}, so it is not a gpbt experiment folder: {_FOLDER_HELP}"
        )
    conn = _connect(path, 30.0, write=False)
    try:
        _check_version(conn, path, allow_empty=False)
        return _snapshot(conn, folder)
    finally:
        conn.close()
