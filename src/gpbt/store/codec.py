"""How values go into the store's columns and come back out.

JSON encoding of the free-form fields (metrics, configs, decision extras, state blobs), the
flattening of nested dicts into ``group.name/sub`` column names, the checks that turn a caller's
member, time and score into column values, and the decoding of stored rows back into the dicts
they were written as. No SQL and no pandas: the writer and the reader share these.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import os
from collections.abc import Mapping
from typing import Any

# --------------------------------------------------------------------------- JSON helpers


def _plain(obj: Any, where: str = "value") -> Any:
    """Turn numpy/JAX scalars and arrays, tuples, sets, paths, dataclasses into JSON types.

    Arrays are recognised by duck typing (``dtype`` + ``tolist``) so JAX and torch values
    work without this module importing either.
    """
    if obj is None or type(obj) in (str, int, float, bool):
        return obj
    if isinstance(obj, Mapping):
        return {
            (k if isinstance(k, str) else str(_plain(k, where))): _plain(v, f"{where}/{k}")
            for k, v in obj.items()
        }
    # Subclasses (numpy.float64, IntEnum, StrEnum) become the plain type JSON knows.
    for plain in (bool, int, float, str):
        if isinstance(obj, plain):
            return plain(obj)
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):
        return _plain(obj.tolist(), where)
    if isinstance(obj, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        items = [_plain(v, where) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj), where)
    if hasattr(obj, "item"):
        return _plain(obj.item(), where)
    raise TypeError(
        f"cannot store {where} of type {type(obj).__name__}: the experiment store keeps "
        "JSON values (numbers, strings, bools, None, lists, dicts, numpy arrays)"
    )


def _default(obj: Any) -> Any:
    return _plain(obj)


def _dumps(obj: Any, where: str) -> str:
    # allow_nan: a NaN metric is data; Python's json reads its own NaN/Infinity tokens back.
    # The C encoder with a default hook is the fast path (10k reports must stay well under a
    # second); only values it cannot take (such as numpy dict keys) go through _plain, which
    # also produces the error message naming the field.
    try:
        return json.dumps(obj, default=_default, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(_plain(obj, where), allow_nan=True, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _flatten_into(out: dict[str, Any], prefix: str, value: Any, sep: str = ".") -> None:
    # An empty dict at the top (no metrics) adds no column; nested, it is a value of its own.
    if isinstance(value, Mapping) and (value or sep == "."):
        for k, v in value.items():
            _flatten_into(out, f"{prefix}{sep}{k}" if prefix else str(k), v, "/")
    elif prefix:
        out[prefix] = value


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    _flatten_into(out, prefix, value)
    return out


# ------------------------------------------------------------------------ value coercion


def _as_record(obj: Any, what: str, index: int) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"{what} #{index} must be a dict, got {type(obj).__name__}")


def _member(value: Any, field: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{field} must be an integer member index, got {value!r}") from None


def _opt_member(value: Any, field: str) -> int | None:
    return None if value is None else _member(value, field)


def _time_value(value: Any, field: str = "time") -> int | float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field} must be a number (steps, samples or seconds), got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        pass
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a number, got {value!r}") from None
    if math.isnan(t):
        raise ValueError(f"{field} must not be NaN")
    return t


def _score(value: Any, field: str) -> tuple[float | None, int]:
    """(stored value, invalid flag): NaN/None -> NULL, +-inf kept; both flagged."""
    if value is None:
        return None, 1
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a float, got {value!r}") from None
    if math.isnan(s):
        return None, 1
    return s, int(math.isinf(s))


def _float_or_none(value: Any, field: str) -> float | None:
    return _score(value, field)[0]


# ------------------------------------------------------------------------------ records


def _decision_record(row: tuple) -> dict[str, Any]:
    # row holds the columns of schema._DECISION_SELECT, in that order.
    record = {
        "seq": row[0],
        "time": row[1],
        "member": row[2],
        "kind": row[3],
        "method": row[4],
        "partner": row[5],
        "donor": row[6],
        "member_score": math.nan if row[7] is None else row[7],
        "partner_score": math.nan if row[8] is None else row[8],
        "wall_time": row[9],
        "old_config": _loads(row[10]),
        "new_config": _loads(row[11]),
        "velocity": _loads(row[12]),
    }
    record.update(_loads(row[13]) or {})
    return record


def _report_order_entry(row: tuple) -> tuple[int, Any, float]:
    """(member, time, score) from a `_REPORT_ORDER_SELECT` row; an invalid score is NaN."""
    member, time, score, invalid = row
    return int(member), time, math.nan if invalid or score is None else float(score)


def _checkpoint_record(row: tuple) -> dict[str, Any]:
    # row holds the columns of schema._CHECKPOINT_SELECT, in that order.
    return {
        "time": row[0],
        "path": row[1],
        "members": _loads(row[2]),
        "meta": _loads(row[3]),
        "created": row[4],
    }
