"""``Experiment`` and ``load``: a read-only, in-memory snapshot of an experiment folder."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gpbt.store.codec import _checkpoint_record, _decision_record, _report_order_entry
from gpbt.store.faults import faults_as_errors
from gpbt.store.frames import (
    _checkpoints_frame,
    _decisions_frame,
    _export,
    _reports_frame,
)
from gpbt.store.lineage import Lineage
from gpbt.store.schema import (
    _CHECKPOINT_SELECT,
    _DECISION_SELECT,
    _FOLDER_HELP,
    _REPORT_ORDER_SELECT,
    DB_NAME,
    _check_version,
    _connect,
    _transaction,
)

if TYPE_CHECKING:
    from gpbt.store.writer import ExperimentStore


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
        lineage: Lineage,
        decision_rows: list[tuple] = (),
        report_order: list[tuple[int, Any, float]] = (),
    ) -> None:
        self.folder = folder
        self.config = config
        self.reports = reports
        self.decisions = decisions
        self.checkpoints = checkpoints
        self.states = states
        self._lineage = lineage
        self._decision_rows = list(decision_rows)
        self._report_order = list(report_order)

    @property
    def latest_checkpoint(self) -> dict[str, Any] | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def state(self, key: str) -> Any | None:
        return self.states.get(key)

    def lineage(self, member: int, time: int | float | None = None) -> list[tuple[Any, int]]:
        """See :meth:`ExperimentStore.lineage`."""
        return self._lineage.of(member, time)

    def decision_records(self) -> list[dict[str, Any]]:
        """See :meth:`ExperimentStore.decision_records`."""
        return [_decision_record(r) for r in self._decision_rows]

    def report_order(self) -> list[tuple[int, Any, float]]:
        """See :meth:`ExperimentStore.report_order`."""
        return list(self._report_order)

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
        order = conn.execute(_REPORT_ORDER_SELECT).fetchall()
        lineage = Lineage.read(conn)
    return Experiment(
        folder=folder,
        config=None if config is None else json.loads(config[0]),
        reports=_reports_frame(reports),
        decisions=_decisions_frame(decisions),
        checkpoints=[_checkpoint_record(r) for r in checkpoints],
        states={k: json.loads(v) for k, v in states},
        lineage=lineage,
        decision_rows=decisions,
        report_order=[_report_order_entry(r) for r in order],
    )


def _snapshot_store(store: ExperimentStore) -> Experiment:
    with store._lock, faults_as_errors(store.folder, "reading the experiment store"):
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
    with faults_as_errors(folder, "reading the experiment store"):
        conn = _connect(path, 30.0, write=False)
        try:
            _check_version(conn, path, allow_empty=False)
            return _snapshot(conn, folder)
        finally:
            conn.close()
