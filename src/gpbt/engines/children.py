"""Child processes that end with their parent.

The engines train in spawned children (the vector engine's supervised training process, the
local engine's workers, the bench's cell worker). If the parent is killed with SIGKILL it cannot
stop them, and a child that trains on writes to a store that a `gpbt resume` may be writing to
as well. So every child calls :func:`die_with_parent` first: on Linux the kernel sends it
SIGKILL the moment its parent exits (`prctl(PR_SET_PDEATHSIG)`); elsewhere a daemon thread
polls the parent's pid and exits the child within a second.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process end when `parent_pid` (default: its current parent) ends."""
    parent = os.getppid() if parent_pid is None else int(parent_pid)
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    # The parent may have died before the signal was armed: then we are already orphaned.
    if os.getppid() != parent:
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch, args=(parent,), daemon=True, name="die-with-parent").start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
