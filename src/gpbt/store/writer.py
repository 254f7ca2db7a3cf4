"""``ExperimentStore``: the read-write handle an engine records its run through."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time as _time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpbt.store.codec import (
    _as_record,
    _checkpoint_record,
    _decision_record,
    _dumps,
    _flatten,
    _float_or_none,
    _member,
    _opt_member,
    _report_order_entry,
    _score,
    _time_value,
)
from gpbt.store.faults import faults_as_errors
from gpbt.store.lineage import Lineage
from gpbt.store.schema import (
    _CHECKPOINT_SELECT,
    _DECISION_SELECT,
    _REPORT_ORDER_SELECT,
    DB_NAME,
    DECISION_KINDS,
    _connect,
    _transaction,
    create_schema,
)

# pandas is imported only by the methods that return DataFrames (from frames.py, on first
# call): an engine or worker process that only writes never pays its 0.3-0.5 s import.
if TYPE_CHECKING:
    import pandas as pd

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
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        with faults_as_errors(self.folder, "opening the experiment store"):
            self.folder.mkdir(parents=True, exist_ok=True)
            self._conn = _connect(self.path, timeout, write=True)
            try:
                create_schema(self._conn, self.path)
            except BaseException:
                self._conn.close()
                self._conn = None
                raise

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
        # A full disk or a read-only folder rolls the transaction back whole and says so in
        # one line (gpbt.store.faults), instead of an sqlite3 traceback.
        with self._lock, faults_as_errors(self.folder, "recording to the experiment store"):
            conn = self._connection()
            with _transaction(conn):
                yield conn

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock, faults_as_errors(self.folder, "reading the experiment store"):
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

    def add_reports(self, rows: Iterable[Mapping[str, Any]], *, keep_existing: bool = False) -> int:
        """Add a batch of reports in one transaction; returns how many rows were given.

        Each row: ``member``, ``time``, ``score`` and optional ``metrics`` and ``config``
        dicts. Re-adding a ``(member, time)`` replaces it, or with ``keep_existing`` leaves
        the stored row as it is (a resume re-adding rows that may already be there). The whole
        batch is validated before anything is written: one bad row rejects the batch.
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
                    f"INSERT OR {'IGNORE' if keep_existing else 'REPLACE'} INTO reports "
                    "(member, time, score, score_invalid, metrics, config, wall_time) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    params,
                )
        return len(params)

    def reports(self) -> pd.DataFrame:
        """All reports, ordered by (time, member); see :mod:`gpbt.store` for columns."""
        from gpbt.store.frames import _reports_frame

        return _reports_frame(
            self._query(
                "SELECT member, time, score, score_invalid, wall_time, metrics, config "
                "FROM reports ORDER BY time, member"
            )
        )

    def report_order(self) -> list[tuple[int, Any, float]]:
        """(member, time, score) of every report in the order they were committed (what an
        asynchronous engine fed its scheduler); an invalid score comes back as NaN."""
        return [_report_order_entry(r) for r in self._query(_REPORT_ORDER_SELECT)]

    # -- decisions

    def add_decisions(
        self, records: Iterable[Mapping[str, Any]], *, keep_existing: bool = False
    ) -> list[int]:
        """Append a batch of scheduler decisions in one transaction; returns their ``seq``.

        Keys beyond the standard ones are kept in the ``extra`` JSON column. Re-adding a
        decision for the same ``(time, member)`` overwrites it in place and keeps its seq;
        with ``keep_existing`` the stored decision stays as it is.
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
            if keep_existing:
                stored = "SELECT seq FROM decisions WHERE time = ? AND member = ?"
                kept = [conn.execute(stored, p[:2]).fetchone() for p in params]
                seqs_kept = {i: row[0] for i, row in enumerate(kept) if row is not None}
            else:
                seqs_kept = {}
            # One statement per row (not executemany) because RETURNING hands back the seq,
            # which an upsert may have kept from the row it overwrote.
            for i, p in enumerate(params):
                if i in seqs_kept:
                    seqs.append(seqs_kept[i])
                    continue
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
        """All decisions in seq order; see :mod:`gpbt.store` for columns."""
        from gpbt.store.frames import _decisions_frame

        return _decisions_frame(self._query(_DECISION_SELECT))

    def exploit_count(self) -> int:
        """How many exploits copied another member's weights: a member "copying" itself is a
        fixed schedule's config change, not an exploit. Counted by SQLite, so a training
        process that only writes never imports pandas (see above)."""
        sql = (
            "SELECT count(*) FROM decisions "
            "WHERE kind = 'exploit' AND (donor IS NULL OR donor != member)"
        )
        return int(self._query(sql)[0][0])

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
        with self._lock, faults_as_errors(self.folder, "reading the experiment store"):
            conn = self._connection()
            with _transaction(conn, "DEFERRED"):
                graph = Lineage.read(conn)
        return graph.of(member, time)

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
        from gpbt.store.reader import _snapshot_store

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
