"""What the disk under an experiment folder can do wrong, as errors a user can act on.

A full disk, a read-only folder and a damaged ``experiment.sqlite`` are facts about the
machine, not bugs: retrying does not help and a traceback does not say what to do. Every layer
that touches the folder (the store, the folder lock, the engines' checkpoint writers) turns the
``OSError`` or ``sqlite3.Error`` it gets into one of these, whose message names the folder, the
cause and the fix; the CLI prints it as one ``gpbt: error:`` line. Nothing recorded is lost by
any of them: a store write is one transaction, rolled back whole when the disk refuses it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpbt.errors import GpbtError, StoreError

# The store's database file in an experiment folder (gpbt.store.schema builds on this module
# and takes the name from here: the fault messages name the damaged file).
DB_NAME = "experiment.sqlite"

_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


class StorageFault(GpbtError, OSError):
    """The disk refused a write to an experiment folder (full, read-only, over a size limit)
    or failed a read; what is already recorded is intact."""


class StoreDamaged(StoreError):
    """``experiment.sqlite`` exists but its content is damaged (truncated, overwritten)."""


def storage_fault(err: BaseException, folder: str | os.PathLike, doing: str) -> GpbtError | None:
    """The user-facing error for `err`, raised while `doing` (e.g. "recording reports") in
    experiment folder `folder`; None when `err` is not a fault of the disk or the file (then the
    caller re-raises it as it is)."""
    folder = Path(folder)
    kind = _kind(err)
    if kind is None:
        return None
    detail = _detail(err)
    if kind == "full":
        return StorageFault(
            f"the disk holding {folder} is full ({detail}) while {doing}; free some space "
            f"and run the command again (a run continues with `gpbt resume {folder}`); "
            "nothing recorded was lost"
        )
    if kind == "size-limit":
        return StorageFault(
            f"a file in {folder} reached this process's file-size limit ({detail}) while "
            f"{doing}; raise the limit (`ulimit -f unlimited`) and run the command again "
            f"(a run continues with `gpbt resume {folder}`); nothing recorded was lost"
        )
    if kind == "read-only":
        return StorageFault(
            f"{folder} cannot be written ({detail}) while {doing}; make it writable, or copy "
            "the folder somewhere writable and use the copy; nothing recorded was changed"
        )
    if kind == "io":
        return StorageFault(
            f"the disk holding {folder} failed ({detail}) while {doing}; check the disk "
            "(dmesg), then run the command again; what was committed before is kept"
        )
    db = folder / DB_NAME
    return StoreDamaged(
        f"{db} is damaged ({detail}), found while {doing}; it was not modified. Restore it "
        f"from a backup, or save the rows still readable with `sqlite3 {db} .recover | "
        "sqlite3 recovered.sqlite`"
    )


@contextmanager
def faults_as_errors(folder: str | os.PathLike, doing: str) -> Iterator[None]:
    """Inside the block, a disk or file fault becomes the error `storage_fault` gives."""
    try:
        yield
    except (sqlite3.Error, OSError) as err:
        fault = storage_fault(err, folder, doing)
        if fault is None:
            raise
        raise fault from err


def _kind(err: BaseException) -> str | None:
    if isinstance(err, sqlite3.Error):
        name = getattr(err, "sqlite_errorname", "") or ""
        if name == "SQLITE_FULL":
            return "full"
        if name.startswith("SQLITE_READONLY") or name == "SQLITE_PERM":
            return "read-only"
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or name.startswith("SQLITE_CORRUPT"):
            return "damaged"
        if name.startswith("SQLITE_IOERR"):
            return "io"
        text = str(err)
        if "disk is full" in text:  # builds without extended error names
            return "full"
        if "malformed" in text or "not a database" in text:
            return "damaged"
        if "readonly" in text:
            return "read-only"
        return None
    if isinstance(err, OSError) and not isinstance(err, GpbtError):
        if err.errno in _FULL:
            return "full"
        if err.errno == errno.EFBIG:
            return "size-limit"
        if err.errno in _READ_ONLY:
            return "read-only"
        if err.errno == errno.EIO:
            return "io"
    return None


def _detail(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    return str(err)
