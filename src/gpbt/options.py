"""How an engine declares a config key (type, default, meaning): a module of its own, free of
heavy imports, because the local engine's worker processes import the engine module too."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

REQUIRED = object()  # no default: the key must be given
OPTIONAL = object()  # no default: the key stays absent unless given (the engine decides)


@dataclass(frozen=True)
class Option:
    """One config key: its type(s), its default (`REQUIRED`, `OPTIONAL` or a value), what it
    means (shown in errors and docs) and the values it accepts: a number must be finite and,
    if declared, `> above` or `>= at_least`; a string with `nonempty` may not be "".
    `gpbt.spec` checks every given value against its option, so no engine repeats it."""

    types: type | tuple[type, ...]
    default: Any = REQUIRED
    help: str = ""
    above: float | None = None
    at_least: float | None = None
    nonempty: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` (already of the right type) is not accepted, or None."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            if not math.isfinite(value):
                return "must be a finite number"
            if self.above is not None and not value > self.above:
                return f"must be > {self.above:g}"
            if self.at_least is not None and not value >= self.at_least:
                return f"must be >= {self.at_least:g}"
        if isinstance(value, str) and self.nonempty and not value.strip():
            return "must not be empty"
        return None
