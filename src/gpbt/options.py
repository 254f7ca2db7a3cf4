"""How an engine declares a config key (type, default, meaning): a module of its own, free of
heavy imports, because the local engine's worker processes import the engine module too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REQUIRED = object()  # no default: the key must be given
OPTIONAL = object()  # no default: the key stays absent unless given (the engine decides)


@dataclass(frozen=True)
class Option:
    """One config key: its type(s), its default (`REQUIRED`, `OPTIONAL` or a value) and what
    it means (shown in errors and docs)."""

    types: type | tuple[type, ...]
    default: Any = REQUIRED
    help: str = ""
