"""Which code, which commit, which machine: what a bench cell records about where it ran.

Results outlive the bench folder that made them (`gpbt.bench.results`), so each cell carries
its own provenance instead of relying on the folder's history:
- `code_hash()`: a hash of the gpbt source the cell's process runs, the benchmark harness
  excluded (it does not change what a cell computes). The fairness audit compares it: cells of
  one (task, seed) group that ran different code are not compared.
- `git_commit()`: the commit of the checkout the package runs from, `+dirty` when the package's
  own files differ from it (so a number is never attributed to a commit it did not run at);
  empty when the package is not in a git checkout.
- `machine()`: platform, processor and the CPUs this process may use.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from pathlib import Path


def _package_root() -> Path:
    import gpbt

    return Path(gpbt.__file__).resolve().parent


@functools.cache
def code_hash() -> str:
    """A hash of the gpbt source this process runs (agents, engine, schedulers): cells that
    compare methods must have run the same code, and a bench that spans an edit of, say, the
    PPO agent should say so rather than mix the two silently."""
    root = _package_root()
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "bench" in path.relative_to(root).parts[:1]:
            continue  # the harness itself does not change what a cell computes
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _git(*args: str) -> str:
    root = _package_root()
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=root)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


@functools.cache
def git_commit() -> str:
    """Short commit of the checkout gpbt runs from, with `+dirty` when gpbt's files differ."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return ""
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", str(_package_root()))
    return commit + ("+dirty" if dirty else "")


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or "",
        "cpus": cpus(),
    }
