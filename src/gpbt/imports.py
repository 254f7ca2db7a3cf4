"""`"module:Name"` in a config file -> the Python object it names, or one clear error.

Configs name user code this way in several places (the local engine's `trainable`, the vector
engine's `agent` and `env`, Ray's `trainable`); they all resolve it here, so the rules are the
same everywhere: the module must be importable from the working directory (which is put on
`sys.path` if it is not there) or installed, and `Name` may be dotted (`module:Outer.Inner`).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from gpbt.errors import ConfigError

__all__ = ["ImportSpecError", "import_object", "is_import_spec"]


class ImportSpecError(ConfigError):
    """A `"module:Name"` that cannot be resolved; the message names the field and the fix."""


def is_import_spec(text: Any) -> bool:
    """True for text shaped like `"module:Name"` (it says nothing about importability)."""
    if not isinstance(text, str):
        return False
    module, sep, attr = text.partition(":")
    return bool(sep and module and attr)


def import_object(spec: str, field: str, example: str) -> Any:
    """Resolve `spec` = `"package.module:Name"`. `field` (e.g. `"trainable"`) and `example`
    (text showing a correct value for that field) go into the errors, so the user sees what
    to write."""
    if not is_import_spec(spec):
        raise ImportSpecError(
            f"{field} = {spec!r}: write it as 'module:Name', e.g. {example} (Name defined "
            "in module.py in the working directory, or in an installed package)"
        )
    module_name, _, attr = spec.partition(":")
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ImportSpecError(
                f"{field} = {spec!r}: no module named {module_name!r} on the Python path "
                f"(working directory {cwd}); run from the folder that holds "
                f"{module_name.replace('.', '/')}.py or install its package"
            ) from e
        raise  # the module exists but one of its own imports is missing: show that as is
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImportSpecError(
                f"{field} = {spec!r}: module {module_name!r} has no attribute {part!r}"
            )
        obj = getattr(obj, part)
    return obj
