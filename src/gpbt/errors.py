"""The errors a user can fix. Each message names the field, file or folder and the fix; the CLI
prints any of them as one `gpbt: error:` line instead of a traceback, and the Python API raises
them as ordinary exceptions (the config and store ones are also `ValueError`s, as before)."""

from __future__ import annotations


class GpbtError(Exception):
    """Base of every error whose message tells the user what to change."""


class ConfigError(GpbtError, ValueError):
    """A config problem, with the field and the fix in the message."""


class StoreError(GpbtError, ValueError):
    """A file that is not (or no longer) a gpbt experiment store, or one this gpbt cannot read."""


class FolderInUse(GpbtError, RuntimeError):
    """Another live process holds the folder; the message says which and what to do."""


class MainGuardMissing(GpbtError, RuntimeError):
    """gpbt was called from a script's top-level code, which its spawned children re-run."""


class FolderError(GpbtError, ValueError):
    """A command pointed at the wrong folder: one that already holds a run, a file where a
    folder belongs, or a folder that holds nothing to act on."""


class TrainingFailed(GpbtError, RuntimeError):
    """Training stopped on an error that a retry would meet again (the run is deterministic).
    The message names the cause and the fix; `detail` keeps the training process's traceback
    for a bug report."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail
