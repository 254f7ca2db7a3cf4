"""The results folder: a bench's finished cells as small JSON files that survive a new machine.

    <results>/suite.json                            the suite as last run, and the bench's history
    <results>/<task>/<method>/seed<k>.json          one record per finished cell (gpbt.bench.record)

`gpbt bench SUITE --results DIR` writes a cell's record as soon as the cell finishes, and counts
a cell whose record is already in DIR as done (so a fresh clone continues where the committed
results stop: new seeds, tasks or methods run, nothing done runs again). A record whose config
differs from the suite's cell is an error, never silently replaced. `gpbt report DIR` rebuilds
every table and plot of the bench report from DIR alone (`load_results`).

suite.json: {"format": "gpbt-bench-results", "version": 1, "suite": <the suite, tasks
expanded>, "created", "machine", "commit", "invocations": [{"at", "commit", "suite", "id"}, ...]}.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from gpbt.bench.record import check_record, record_rows
from gpbt.bench.suite import Cell, Suite
from gpbt.config import ConfigError
from gpbt.errors import FolderError

FORMAT = "gpbt-bench-results"
VERSION = 1
SUITE_FILE = "suite.json"
# config keys that do not change what a cell computes
_NOT_COMPARED = {"watchdog_seconds"}


def check_same_config(cell: Cell, theirs: dict[str, Any], where: Path, fix: str) -> None:
    """Refuse a finished run (a record, a cell folder) of `cell` that ran another config: it
    would be counted as the suite's cell."""
    ours = json.loads(json.dumps(cell.config, default=str))
    theirs = json.loads(json.dumps(theirs, default=str))
    keys = (set(ours) | set(theirs)) - _NOT_COMPARED
    differ = sorted(k for k in keys if ours.get(k) != theirs.get(k))
    if differ:
        k = differ[0]
        raise ConfigError(
            f"{where} ran another config than the suite's cell {cell.key}: {k} = "
            f"{json.dumps(theirs.get(k))} there, {json.dumps(ours.get(k))} in the suite. "
            f"Restore the suite's old setting, or {fix} to run the cell anew"
        )


def is_results_folder(folder: str | Path) -> bool:
    path = Path(folder) / SUITE_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (ValueError, AttributeError):
        return False


def _write_json(path: Path, value: Any) -> None:
    """Atomically: a crash never leaves half a file in a folder that gets committed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, sort_keys=True, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path}: not valid JSON ({err}); restore it from git or delete it (its cell "
            "then runs again)"
        ) from None


class ResultsFolder:
    """The records of one suite (its label: `long-ppo`, `paper-ppo:full`), read and written."""

    def __init__(self, folder: str | Path, suite: Suite | None = None):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise FolderError(f"--results {self.folder} is a file; give a folder")
        self.meta: dict[str, Any] = {}
        path = self.folder / SUITE_FILE
        if path.exists():
            meta = _read_json(path)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ConfigError(
                    f"{path}: field 'format' is not {FORMAT!r}; this folder is not a gpbt "
                    "results folder (pick an empty folder for --results)"
                )
            if meta.get("version") != VERSION:
                raise ConfigError(
                    f"{path}: field 'version' is {meta.get('version')!r}; this gpbt reads "
                    f"version {VERSION}"
                )
            if not isinstance(meta.get("suite"), dict) or "tasks" not in meta["suite"]:
                raise ConfigError(
                    f"{path}: field 'suite' is missing or not a suite; restore the file from "
                    "git, or rerun gpbt bench SUITE --results with this folder to rewrite it"
                )
            self.meta = meta
        elif not self.folder.exists() and suite is None:
            raise FileNotFoundError(f"{self.folder} does not exist")
        if suite is not None and self.meta:
            theirs = Suite.from_dict(self.meta["suite"]).label
            if theirs != suite.label:
                raise ConfigError(
                    f"{self.folder} holds the results of suite {theirs!r}, not {suite.label!r}; "
                    f"give each suite its own folder, e.g. benchmarks/results/"
                    f"{suite.label.replace(':', '-')}"
                )
        self.records: dict[tuple[str, str, int], tuple[Path, dict]] = {}
        for path in sorted(self.folder.rglob("*.json")) if self.folder.exists() else []:
            if path.name == SUITE_FILE:
                if path.parent == self.folder:
                    continue
                raise ConfigError(
                    f"{path.parent} is a results folder inside {self.folder}; give that folder "
                    "itself (one folder per suite, e.g. benchmarks/results/long-ppo)"
                )
            try:
                record = check_record(_read_json(path), str(path))
            except ValueError as err:
                raise ConfigError(str(err)) from None
            key = (record["task"], record["method"], int(record["seed"]))
            if key in self.records:
                raise ConfigError(
                    f"{path} and {self.records[key][0]} hold the same cell {key}; keep one"
                )
            self.records[key] = (path, record)

    # ------------------------------------------------------------------ cells
    def path(self, cell: Cell) -> Path:
        return self.folder / f"{cell.relpath}.json"

    def matching(self, cell: Cell) -> dict | None:
        """The record of `cell`, if there is one; an error if it ran another config."""
        found = self.records.get(cell.key)
        if found is None:
            return None
        path, record = found
        check_same_config(cell, record["config"], path, "move the record away")
        return record

    def write(self, cell: Cell, record: dict) -> Path:
        path = self.path(cell)
        _write_json(path, record)
        self.records[cell.key] = (path, record)
        return path

    def write_meta(self, meta: dict[str, Any]) -> None:
        """suite.json: the suite as last run and every invocation that wrote here."""
        history = list(self.meta.get("invocations") or [])
        for inv in meta.get("invocations") or []:
            if inv not in history:
                history.append(inv)
        self.meta = {
            "format": FORMAT,
            "version": VERSION,
            "suite": meta["suite"],
            "created": self.meta.get("created") or meta.get("created") or time.strftime("%F"),
            "machine": meta.get("machine"),
            "commit": meta.get("commit"),
            "invocations": history,
        }
        _write_json(self.folder / SUITE_FILE, self.meta)


# ---------------------------------------------------------------------------------------------
# records -> the bench tables
# ---------------------------------------------------------------------------------------------
def frames_from_records(records: list[dict], suite: Suite) -> dict[str, pd.DataFrame]:
    """The bench tables (gpbt.bench.store.TABLES) from cell records, in the suite's order."""
    parts: dict[str, list[dict]] = {
        k: [] for k in ("results", "curves", "diversity", "schedules", "timings")
    }
    order_t = {t: i for i, t in enumerate(suite.task_names())}
    order_m = {m: i for i, m in enumerate(suite.method_names())}

    def place(r: dict) -> tuple:
        # the suite's order (tables and plots keep it), whichever folder the records came from
        return (order_t.get(r["task"], 1 << 30), order_m.get(r["method"], 1 << 30), r["seed"])

    for record in sorted(records, key=place):
        for name, rows in record_rows(record).items():
            parts[name].extend(rows)
    frames = {k: pd.DataFrame(v) for k, v in parts.items()}
    return frames


def load_results(folder: str | Path):
    """A results folder read into a `gpbt.bench.store.Bench`, as `load_bench` reads a bench
    folder: the report is built from it the same way."""
    from gpbt.bench.store import Bench

    res = ResultsFolder(folder)
    if not res.meta:
        raise FileNotFoundError(
            f"{folder} has no {SUITE_FILE}, so it is not a results folder; write one with "
            f"`gpbt bench SUITE --results {folder}`"
        )
    suite = Suite.from_dict(res.meta["suite"])
    wanted = {c.key: c for c in suite.cells()}
    # Seeds present in the records but beyond the suite as last run still belong to it.
    extra_seeds = sorted(
        {k[2] for k in res.records if (k[0], k[1]) in {(c.task, c.method) for c in wanted.values()}}
        - set(suite.seeds)
    )
    if extra_seeds:
        suite.seeds = sorted(set(suite.seeds) | set(extra_seeds))
        wanted = {c.key: c for c in suite.cells()}
    records = [rec for key, (_, rec) in res.records.items() if key in wanted]
    frames = frames_from_records(records, suite)
    rows = []
    for key, cell in wanted.items():
        found = res.records.get(key)
        prov = found[1]["provenance"] if found else {}
        rows.append(
            {
                "task": key[0],
                "method": key[1],
                "seed": key[2],
                "folder": cell.relpath,
                "status": "done" if found else "not run",
                "attempts": int(prov.get("attempts") or 0),
                "wall_s": prov.get("wall_s"),
                "error": None,
                "updated": 0.0,
            }
        )
    frames["cells"] = pd.DataFrame(rows)
    meta = {k: v for k, v in res.meta.items() if k not in ("format", "version")}
    meta["suite"] = suite.to_dict()
    meta["ignored_records"] = len(res.records) - len(records)
    return Bench(Path(folder), meta, frames)
