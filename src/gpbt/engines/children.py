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

# A spawned child imports the parent's main script again before it runs anything of gpbt's.
# When that script calls gpbt at its top level (no `if __name__ == "__main__":`), the child
# would start a second run of its own; it stops instead with this exit code, which the parent
# turns into one clear error rather than restarting the child again and again.
MAIN_GUARD_EXIT = 86
MAIN_GUARD_HINT = (
    "gpbt trains in child processes, and each one imports your script again as it starts, "
    "which ran your gpbt call a second time; put the code that calls gpbt under "
    '`if __name__ == "__main__":` (Python\'s rule for spawned processes: "Safe importing of '
    'main module" in the multiprocessing documentation)'
)


def refuse_while_bootstrapping() -> None:
    """Stop a spawned child that is re-running its parent's script (see MAIN_GUARD_EXIT);
    called where runs start (`hold_folder`, which every run, resume and bench takes first, and
    `LocalEngine`, which checks its folder before)."""
    import multiprocessing

    # multiprocessing sets this while a spawned child imports the main script and unpickles
    # its task (its own _check_not_importing_main reads the same flag)
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        print(f"gpbt: error: {MAIN_GUARD_HINT}", file=sys.stderr, flush=True)
        raise SystemExit(MAIN_GUARD_EXIT)


def check_child_exit(exitcode: int | None) -> None:
    """Raise the clear error for a child that stopped because the script has no main guard."""
    if exitcode == MAIN_GUARD_EXIT:
        from gpbt.errors import MainGuardMissing

        raise MainGuardMissing(MAIN_GUARD_HINT)


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
