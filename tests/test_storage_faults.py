"""Faults a real disk has, injected at the file-system layer under every documented command:
a full disk, a read-only folder, a truncated or overwritten store, a corrupt checkpoint, a
stale temporary left by a killed run. Each command ends in one `gpbt: error:` line naming the
cause and the fix, and no recorded row changes.

The disk is a real one: a tmpfs of a few hundred KiB is full after a few dozen store commits,
and remounting it read-only gives the `EROFS` a read-only mount or a failing disk gives. Both
need `mount`, i.e. root (CI containers run as root); elsewhere those cases skip, saying why.
`chmod` cannot stand in for them: root writes through any mode bits. The experiment is the
local engine's deterministic toy run (one process, no JAX, about a second), driven through
the CLI as a user drives it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TOY_TRAINABLE, run_cli, tmpfs, wait_for_reports, write_toml_file

from gpbt.store import load

pytestmark = pytest.mark.slow

TOY = {
    "engine": "local",
    "trainable": "toy_trainable:Toy",
    "deterministic": True,
    "workers": 2,
    "method": "gpbt-pl",
    "population": 4,
    "total_steps": 12,
    "perturbation_interval": 3,
    "time_attr": "steps",
    "metric": "score",
    "mode": "max",
    "seed": 3,
    "space": {"lr": {"type": "float", "low": 0.0, "high": 1.0}},
}
REPORTS = 4 * 12


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The working directory every command runs in: the toy trainable and its config."""
    root = tmp_path_factory.mktemp("faults")
    (root / "toy_trainable.py").write_text(TOY_TRAINABLE)
    write_toml_file(root / "toy.toml", TOY)
    return root


@pytest.fixture(scope="module")
def finished(workdir) -> Path:
    result = gpbt(workdir, "run", "toy.toml", "--out", workdir / "finished", "--no-report")
    assert result.returncode == 0, result.stderr
    return workdir / "finished"


def gpbt(cwd: Path, *args) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The command failed with exactly one line on stderr, a `gpbt: error:` one."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("gpbt: error: "), result.stderr
    assert "Traceback" not in result.stdout
    return lines[0]


def recorded(folder: Path) -> tuple:
    """Every recorded row, read with SQLite alone and leaving no file behind: a closed store
    (no write-ahead log left) as the immutable file it is, which also works on a read-only or
    full disk; one whose run was cut off, through its log, read-only."""
    db = folder / "experiment.sqlite"
    wal = folder / "experiment.sqlite-wal"
    mode = "mode=ro" if wal.exists() and wal.stat().st_size > 0 else "immutable=1"
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?{mode}", uri=True)) as c:
        return tuple(
            c.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in ("reports", "decisions", "checkpoints", "meta")
        )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(path: Path) -> None:
    """Use up every free block of the file system holding `path` (with a file `filler`)."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ a damaged store


def truncate_store(folder: Path) -> None:
    db = folder / "experiment.sqlite"
    os.truncate(db, db.stat().st_size // 2)


def overwrite_header(folder: Path) -> None:
    with open(folder / "experiment.sqlite", "r+b") as f:
        f.write(b"\xff" * 100)


@pytest.mark.parametrize(
    "damage, says",
    [
        (truncate_store, "is damaged (database disk image is malformed)"),
        (overwrite_header, "is not an SQLite file, so not a gpbt experiment store"),
    ],
)
@pytest.mark.parametrize("command", ["report", "resume", "export", "replay", "run"])
def test_a_damaged_store_ends_in_one_line_and_is_left_as_it_was(
    finished, workdir, tmp_path, damage, says, command
):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    damage(folder)
    before = digest(folder / "experiment.sqlite")
    if command == "run":  # a new run into that folder is refused: whether it holds an
        # experiment is read from the store, which is found damaged and left as it was
        line = one_error_line(gpbt(workdir, "run", "toy.toml", "--out", folder))
        assert f"{folder / 'experiment.sqlite'} {says}" in line
        assert digest(folder / "experiment.sqlite") == before
        return
    line = one_error_line(gpbt(workdir, command, folder))
    assert f"{folder / 'experiment.sqlite'} {says}" in line
    if damage is truncate_store:
        assert "sqlite3 " in line and ".recover" in line  # how to save what is readable
    assert digest(folder / "experiment.sqlite") == before
    assert not (folder / "report").exists() and not (folder / "export").exists()


# ------------------------------------------------------------------ a read-only folder


def test_a_read_only_folder_is_read_and_refused_for_writing(finished, workdir, tmp_path):
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        folder = mnt / "run"
        shutil.copytree(finished, folder)
        rows = recorded(folder)
        remount_read_only(mnt)

        # what only reads works: replay, and an export written elsewhere
        result = gpbt(workdir, "replay", folder)
        assert result.returncode == 0 and "replay OK: 16 decisions" in result.stdout, result
        result = gpbt(workdir, "export", folder, "--out", tmp_path / "exported")
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "exported" / "schedule.json").is_file()

        # what writes there says so in one line
        line = one_error_line(gpbt(workdir, "resume", folder))
        assert f"{folder} cannot be written (Read-only file system" in line
        assert "make it writable, or copy the folder somewhere writable" in line
        line = one_error_line(gpbt(workdir, "run", "toy.toml", "--out", mnt / "new"))
        assert f"{mnt / 'new'} cannot be written (Read-only file system" in line
        assert recorded(folder) == rows


@pytest.mark.parametrize("fault", ["read-only", "full"])
@pytest.mark.parametrize("command", ["report", "export"])
def test_a_report_or_export_into_a_read_only_or_full_folder_ends_in_one_line(
    finished, workdir, tmp_path, command, fault
):
    rows = recorded(finished)  # not read in place: a reader's files would hold disk space
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        folder = mnt / "run"
        shutil.copytree(finished, folder)
        if fault == "full":
            fill(mnt)
        else:
            remount_read_only(mnt)
        line = one_error_line(gpbt(workdir, command, folder))
        cause = "Read-only file system" if fault == "read-only" else "No space left on device"
        assert cause in line
        assert recorded(folder) == rows


# ------------------------------------------------------------------ a full disk


def test_a_disk_that_fills_up_mid_run_stops_it_in_one_line_and_resume_finishes(
    finished, workdir, tmp_path
):
    # 160 KiB holds the store's first few dozen commits and checkpoints, not the whole run
    with tmpfs(tmp_path / "mnt", "160k") as mnt:
        folder = mnt / "run"
        line = one_error_line(gpbt(workdir, "run", "toy.toml", "--out", folder, "--no-report"))
        assert f"the disk holding {folder} is full" in line
        assert f"`gpbt resume {folder}`" in line and "nothing recorded was lost" in line
        reports, decisions, *_ = recorded(folder)
        assert 0 < len(reports) < REPORTS  # it stopped mid-run, with what it had recorded

        # the user frees space: the run continues from what was recorded, and finishes
        moved = tmp_path / "moved"
        shutil.copytree(folder, moved)
        result = gpbt(workdir, "resume", moved, "--no-report")
        assert result.returncode == 0, result.stderr
    after_reports, after_decisions, *_ = recorded(moved)
    assert len(after_reports) == REPORTS
    assert len({(r[0], r[1]) for r in after_reports}) == REPORTS  # each report once
    key = {(r[0], r[1]): r[2:5] for r in after_reports}
    assert all(key[(r[0], r[1])] == r[2:5] for r in reports)  # none recorded changed
    assert after_decisions[: len(decisions)] == decisions
    result = gpbt(workdir, "replay", moved)
    assert result.returncode == 0, result.stdout


def test_resume_on_a_full_disk_clears_a_killed_runs_stale_temporary_first(
    finished, workdir, tmp_path
):
    """A run killed while writing a checkpoint leaves `gen*.tmp.npz`; if that is what filled
    the disk, nothing could ever be written again until it goes."""
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        folder = mnt / "run"
        shutil.copytree(finished, folder)
        rows = recorded(folder)
        fill(folder)
        (folder / "filler").rename(folder / "checkpoints" / "gen000004.tmp.npz")
        (folder / "checkpoints" / "m9-000001-abcdef.tmp").mkdir()  # a local engine's
        result = gpbt(workdir, "resume", folder, "--no-report")
        assert result.returncode == 0, result.stderr
        assert not list((folder / "checkpoints").glob("*.tmp*"))
        assert recorded(folder)[:3] == rows[:3]


def test_a_full_disk_under_a_finished_run_still_reads(finished, workdir, tmp_path):
    """Even opening a store to read needs space (SQLite's shared-memory file for the log);
    on a full disk a closed store is read as the immutable file it is."""
    rows = recorded(finished)
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        folder = mnt / "run"
        shutil.copytree(finished, folder)
        fill(mnt)
        result = gpbt(workdir, "replay", folder)
        assert result.returncode == 0, result.stdout
        result = gpbt(workdir, "export", folder, "--out", tmp_path / "exported")
        assert result.returncode == 0, result.stderr
        assert recorded(folder) == rows


# ------------------------------------------------------------------ a corrupt checkpoint


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_bad_member_checkpoint_fails_that_member_only(workdir, tmp_path, damage):
    """The local engine keeps one checkpoint per member, so a corrupt or missing one cannot be
    restored: that member is given up after its retries, saying why, the others finish, and
    every row recorded before stays as it was."""
    cfg = write_toml_file(tmp_path / "slow.toml", {**TOY, "trainable_options": {"sleep": 0.05}})
    folder = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpbt.cli", "run", cfg, "--out", folder, "--no-report"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_reports(folder, 20, proc, timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rows = recorded(folder)
    with contextlib.closing(sqlite3.connect(folder / "experiment.sqlite")) as db:
        state = json.loads(
            db.execute("SELECT value FROM state WHERE key = 'local_engine'").fetchone()[0]
        )
    victim = 1
    ckpt = folder / state["members"][str(victim)]["ckpt"]
    if damage == "corrupt":
        (ckpt / "s.json").write_bytes(b"\x00garbage")
    else:
        shutil.rmtree(ckpt)
    result = gpbt(workdir, "resume", folder, "--no-report")
    assert result.returncode == 0, result.stderr
    assert f"member {victim} failed 3 times and is given up" in result.stderr
    exp = load(folder)
    done = exp.reports.groupby("member")["time"].max()
    assert done.drop(victim).eq(12).all() and done[victim] < 12
    after = recorded(folder)
    assert after[0][: len(rows[0])] == rows[0] and after[1][: len(rows[1])] == rows[1]
