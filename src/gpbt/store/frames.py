"""pandas views of the stored rows: the report, decision and checkpoint DataFrames and their
CSV/Parquet export. Only this module and reader.py, which builds on it, import pandas."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from gpbt.store.codec import _flatten, _flatten_into, _loads


def _reports_frame(rows: list[tuple]) -> pd.DataFrame:
    flat: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for row in rows:
        d = _flatten(json.loads(row[5]), "metric")
        d.update(_flatten(json.loads(row[6]), "config"))
        columns.update(dict.fromkeys(d))
        flat.append(d)
    base = pd.DataFrame(
        {
            "member": pd.Series([r[0] for r in rows], dtype="int64"),
            "time": pd.Series([r[1] for r in rows], dtype=None if rows else "int64"),
            "score": pd.Series([r[2] for r in rows], dtype="float64"),
            "score_invalid": pd.Series([bool(r[3]) for r in rows], dtype="bool"),
            "wall_time": pd.Series([r[4] for r in rows], dtype="float64"),
        }
    )
    if not columns:
        return base
    metric_cols = [c for c in columns if c.startswith("metric.")]
    config_cols = [c for c in columns if c.startswith("config.")]
    extra = pd.DataFrame.from_records(flat, columns=metric_cols + config_cols)
    return pd.concat([base, extra], axis=1)


def _decisions_frame(rows: list[tuple]) -> pd.DataFrame:
    flat: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for row in rows:
        d: dict[str, Any] = {}
        for prefix, text in zip(
            ("old_config", "new_config", "velocity", "extra"), row[10:14], strict=True
        ):
            value = _loads(text)
            if value is not None:
                _flatten_into(d, prefix, value)
        columns.update(dict.fromkeys(d))
        flat.append(d)

    def col(i: int) -> list:
        return [r[i] for r in rows]

    base = pd.DataFrame(
        {
            "seq": pd.Series(col(0), dtype="int64"),
            "time": pd.Series(col(1), dtype=None if rows else "int64"),
            "member": pd.Series(col(2), dtype="int64"),
            "kind": pd.Series(col(3), dtype="str"),
            "method": pd.Series(col(4), dtype="str"),
            "partner": pd.array(col(5), dtype="Int64"),
            "donor": pd.array(col(6), dtype="Int64"),
            "member_score": pd.Series(col(7), dtype="float64"),
            "partner_score": pd.Series(col(8), dtype="float64"),
            "wall_time": pd.Series(col(9), dtype="float64"),
        }
    )
    if not columns:
        return base
    order = [
        c
        for group in ("old_config", "new_config", "velocity", "extra")
        for c in columns
        if c.startswith(group)
    ]
    return pd.concat([base, pd.DataFrame.from_records(flat, columns=order)], axis=1)


def _checkpoints_frame(checkpoints: list[dict[str, Any]]) -> pd.DataFrame:
    # members stays JSON text so CSV and Parquet hold the same thing.
    records = []
    for c in checkpoints:
        d = {
            "time": c["time"],
            "path": c["path"],
            "members": None if c["members"] is None else json.dumps(c["members"]),
            "created": c["created"],
        }
        _flatten_into(d, "meta", c["meta"] or {})
        records.append(d)
    if not records:
        return pd.DataFrame(columns=["time", "path", "members", "created"])
    return pd.DataFrame.from_records(records)


def _export(
    folder: str | os.PathLike,
    fmt: str,
    config: dict | None,
    frames: dict[str, pd.DataFrame],
) -> dict[str, Path]:
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be 'csv' or 'parquet', got {fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(
                "exporting to Parquet needs pyarrow: pip install 'gpbt[parquet]' "
                "(or pip install pyarrow), or export with format='csv'"
            ) from None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, df in frames.items():
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        written[name] = path
    path = out / "config.json"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    written["config"] = path
    return written
