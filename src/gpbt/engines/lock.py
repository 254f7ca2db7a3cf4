"""One live writer per folder: an exclusive lock an experiment or bench folder holds while a
run, a resume or a bench is live.

The lock is `flock` on a file in the folder, so the operating system releases it when the holder
dies however it dies (SIGKILL, power loss): a killed run can be resumed at once, and no stale lock
file ever needs cleaning up. The file also says who holds it (pid, command, start time), which is
what the refusal tells the second process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from gpbt.errors import FolderError, FolderInUse
from gpbt.store.faults import faults_as_errors

LOCK_NAME = ".gpbt.engines.lock"
# Where the engines write their checkpoints, each first as a temporary (`*.tmp*`) renamed
# into place when complete (gpbt.engines.vector, gpbt.engines.local).
TEMPORARIES_DIR = "checkpoints"


@contextlib.contextmanager
def hold_folder(folder: str | os.PathLike, what: str = "run") -> Iterator[None]:
    """Hold `folder`'s lock for the duration of the block, or raise :class:`FolderInUse`."""
    import fcntl

    from gpbt.engines.children import refuse_while_bootstrapping

    refuse_while_bootstrapping()  # every run, resume and bench starts here

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{folder} is a file; give a folder for the experiment")
    made = not folder.exists()
    # a read-only folder or a full disk: one line naming the cause, not an OSError traceback
    with faults_as_errors(folder, f"starting a {what}"):
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / LOCK_NAME, "a+")
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise FolderInUse(f"{folder} is in use by {_holder(f.read())}; wait for it to end or "
                              "stop it (a stopped run can be resumed at once with "
                              f"`gpbt resume {folder}`)") from None  # fmt: skip
        with faults_as_errors(folder, f"starting a {what}"):
            _remove_stale_temporaries(folder)  # first: on a full disk they hold the space
            f.seek(0)
            f.truncate(0)
            f.write(json.dumps({
                "pid": os.getpid(),
                "what": what,
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
                "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            }))  # fmt: skip
            f.flush()
        try:
            yield
        except BaseException:
            if made:
                _remove_if_unused(folder)
            raise
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_if_unused(folder: Path) -> None:
    """Remove a folder this lock made for a run refused before it wrote anything (a config
    error found by the training process): the refusal leaves nothing behind, as one found
    before the lock does. Still under the lock, so no other run is writing into it."""
    if [p.name for p in folder.iterdir()] != [LOCK_NAME]:
        return
    with contextlib.suppress(OSError):  # a second run has just opened it: it is theirs
        (folder / LOCK_NAME).unlink()
        folder.rmdir()


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete the half-written checkpoints a killed run left behind. Every engine writes a
    checkpoint as a `*.tmp*` file or folder under `checkpoints/` and renames it when complete;
    with the lock held no writer is live, so any such entry is dead weight, and on a disk that
    filled up it is what keeps the disk full."""
    root = folder / TEMPORARIES_DIR
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if ".tmp" not in entry.name:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
    except ValueError:
        return "another process"
    command = f" ({info['command']})" if info.get("command") else ""
    what, since = info.get("what", "run"), info.get("since", "?")
    return f"process {info.get('pid', '?')}{command}, a {what} since {since}"
