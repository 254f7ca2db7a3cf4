"""The bench-level store: `<bench>/bench.sqlite`, one file that holds a whole benchmark's results.

The cell folders (`<bench>/<task>/<method>/seed<k>/experiment.sqlite`) are the source of truth;
this file holds the suite as it was run, the status of every cell, and the tables derived from
the cells by `gpbt.bench.runner.collect` (rebuilt whole each time, so they can never drift from
the cells):

    cells     task, method, seed, folder, status, attempts, wall_s, error, updated
    results   one row per finished cell: final_best, final_mean, auc, exploits, timings, ...
    curves    task, method, seed, time, best, mean, best_so_far   (training scores)
    diversity task, method, seed, time, diversity                  (unit-space mean distance)
    schedules task, method, seed, time, param, value, unit          (the final best's lineage)
    timings   task, method, seed, generation, train_s, manage_s, scheduler_s, gather_s, exploits

`load_bench(folder)` returns them as pandas DataFrames.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd

BENCH_DB = "bench.sqlite"
TABLES = ("results", "curves", "diversity", "schedules", "timings")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS cells (
        task TEXT NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL,
        folder TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        wall_s REAL, error TEXT, updated REAL NOT NULL,
        PRIMARY KEY (task, method, seed))""",
)


def is_bench_folder(folder: str | Path) -> bool:
    return (Path(folder) / BENCH_DB).is_file()


class BenchStore:
    """Written by the bench runner's parent process only (the cells write their own stores)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.folder / BENCH_DB, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        with self.conn:
            for stmt in _SCHEMA:
                self.conn.execute(stmt)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> BenchStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_meta(self, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (key, json.dumps(value, default=str)),
            )

    def get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def ensure_cell(self, task: str, method: str, seed: int, folder: str) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR IGNORE INTO cells (task, method, seed, folder, status, updated) "
                "VALUES (?, ?, ?, ?, 'pending', ?)",
                (task, method, seed, folder, time.time()),
            )

    def prune(self, keep: set[tuple[str, str, int]]) -> None:
        """Forget cells the suite no longer has (a task removed, fewer seeds asked for); their
        folders stay on disk and count again if the suite brings them back."""
        rows = self.conn.execute("SELECT task, method, seed FROM cells").fetchall()
        gone = [r for r in rows if tuple(r) not in keep]
        with self.conn:
            self.conn.executemany(
                "DELETE FROM cells WHERE task = ? AND method = ? AND seed = ?", gone
            )

    def set_status(
        self,
        key: tuple[str, str, int],
        status: str,
        *,
        wall_s: float | None = None,
        error: str | None = None,
        attempt: bool = False,
    ) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE cells SET status = ?, wall_s = COALESCE(?, wall_s), error = ?, "
                "attempts = attempts + ?, updated = ? WHERE task = ? AND method = ? AND seed = ?",
                (status, wall_s, error, int(attempt), time.time(), *key),
            )

    def cells(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM cells ORDER BY seed, task, method", self.conn)

    def write_tables(self, frames: dict[str, pd.DataFrame]) -> None:
        """Replace the derived tables in one transaction (a reader never sees half of them)."""
        with self.conn:
            for name in TABLES:
                self.conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            for name, df in frames.items():
                if len(df.columns):  # no cell finished: no table (load_bench reads it as empty)
                    df.to_sql(name, self.conn, index=False)


class Bench:
    """A benchmark folder read into memory: the suite, the cell statuses, the result tables."""

    def __init__(self, folder: Path, meta: dict[str, Any], frames: dict[str, pd.DataFrame]):
        self.folder = folder
        self.meta = meta
        self.suite: dict[str, Any] = meta.get("suite") or {}
        self.cells: pd.DataFrame = frames["cells"]
        self.results: pd.DataFrame = frames["results"]
        self.curves: pd.DataFrame = frames["curves"]
        self.diversity: pd.DataFrame = frames["diversity"]
        self.schedules: pd.DataFrame = frames["schedules"]
        self.timings: pd.DataFrame = frames["timings"]

    def __repr__(self) -> str:
        done = int((self.cells["status"] == "done").sum()) if len(self.cells) else 0
        return f"Bench({str(self.folder)!r}: {done}/{len(self.cells)} cells done)"


def load_bench(folder: str | Path) -> Bench:
    folder = Path(folder)
    path = folder / BENCH_DB
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no {BENCH_DB}, so it is not a bench folder; run `gpbt bench SUITE "
            f"--out {folder}` first"
        )
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        frames = {"cells": pd.read_sql_query("SELECT * FROM cells", conn)}
        for name in TABLES:
            frames[name] = (
                pd.read_sql_query(f'SELECT * FROM "{name}"', conn)
                if name in names
                else pd.DataFrame()
            )
    finally:
        conn.close()
    return Bench(folder, meta, frames)
