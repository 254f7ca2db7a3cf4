"""One finished bench cell as a small JSON-able record, and the bench tables built from records.

A record holds everything the bench report uses about one (task, method, seed), and nothing
it does not (no checkpoints, no per-member time series): the results folder stores records
(`gpbt.bench.results`), and `gpbt.bench.runner.collect` builds the bench tables from records
too, whether they were just read from a cell's experiment store or from a committed JSON file.
So a report rebuilt from the committed results has the same tables as the one from the cells.

Format (`"format": "gpbt-bench-cell"`, `"version": 1`); lists are per generation:

    task, method, seed, kind ("vector" | "toy"), row ("equal" | "default" | "subset"), note
    config        the cell's config as it ran (space, budget, interval, population, agent, ...)
    provenance    code_hash, commit, machine, wall_s, attempts, finished (when exported)
    initial       configs_hash, state_hash, configs (the initial hyperparameters), effective
                  (what each member really trained with at the start: agent defaults filled)
    final         episodes, returns (every member's final evaluation), best_member, best_config
    decisions, exploits
    generations   time, best, mean (training scores over the members), diversity (mean
                  pairwise unit-space distance of the configs that trained up to `time`)
    diversity_start   diversity of the initial configs (time 0)
    timings       generation, train_s, manage_s, scheduler_s, gather_s, exploits
    lineage       time, params: {name: [value at each time]}: the hyperparameters the final
                  best member's line of weights trained with, following its exploits back

NaN and infinities are written as null. `check_record` validates a record read from disk and
names the file, the field and the fix.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from gpbt.core.selection import select_then_test
from gpbt.core.space import Space

FORMAT = "gpbt-bench-cell"
VERSION = 1
GENERATION_KEYS = ("time", "best", "mean", "diversity")
# the final evaluation's select-then-test fields (records from before 2026-12-07 lack them)
_TEST_KEYS = ("test_episodes", "test_returns", "selected", "selected_by_training")
TIMING_KEYS = ("generation", "train_s", "manage_s", "scheduler_s", "gather_s", "exploits")


# ---------------------------------------------------------------------------------------------
# a cell's store -> a record
# ---------------------------------------------------------------------------------------------
def cell_record(exp, cell, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a finished cell, from its experiment (`gpbt.store.load(folder)`).

    `cell` is the suite's `Cell`; `provenance` adds what only the bench runner knows (wall
    time, attempts, machine).
    """
    cfg = exp.config or cell.config
    space = Space.from_dict(cfg["space"]) if cfg.get("space") else None
    reports = exp.reports
    summary = exp.state("summary") or {}
    final = exp.state("final_evaluation") or {"returns": [], "episodes": 0}
    initial = exp.state("bench_initial") or {}
    tims = exp.state("bench_timings") or []
    decisions = exp.decisions
    times = sorted(float(t) for t in reports["time"].unique()) if len(reports) else []
    config_cols = [c for c in reports.columns if c.startswith("config.")]
    gens: dict[str, list] = {k: [] for k in GENERATION_KEYS}
    for t in times:
        at = reports[reports["time"] == t]
        s = at["score"].to_numpy(dtype=float)
        fin = s[np.isfinite(s)]
        gens["time"].append(t)
        gens["best"].append(float(fin.max()) if len(fin) else math.nan)
        gens["mean"].append(float(fin.mean()) if len(fin) else math.nan)
        # the configs reported at t are the ones that trained up to t (before t's exploits)
        configs = [
            Space.nest({k.removeprefix("config."): v for k, v in row.items() if _present(v)})
            for row in at[config_cols].to_dict("records")
        ]
        gens["diversity"].append(diversity(space, configs))
    start = initial.get("configs")
    record = {
        "format": FORMAT,
        "version": VERSION,
        "task": cell.task,
        "method": cell.method,
        "seed": int(cell.seed),
        "kind": cell.kind,
        "row": cell.row,
        "note": cell.note,
        "config": cfg,
        "provenance": {
            "code_hash": initial.get("code_hash", ""),
            "commit": initial.get("commit", ""),
            **(provenance or {}),
        },
        "initial": {
            "configs_hash": initial.get("configs_hash", ""),
            "state_hash": initial.get("state_hash", ""),
            "configs": start or [],
            "effective": initial.get("effective") or [],
        },
        "final": {
            "episodes": int(final.get("episodes") or 0),
            "returns": [float(x) for x in final.get("returns") or []],
            "best_member": int(summary.get("best_member", 0)),
            "best_config": summary.get("best_config", {}),
            # select, then test (gpbt.core.selection); absent in records from before it
            **{k: final[k] for k in _TEST_KEYS if final.get(k) is not None},
        },
        "decisions": int(len(decisions)),
        "exploits": int(summary.get("exploits", 0)),
        "generations": gens,
        "diversity_start": diversity(space, start) if start else None,
        "timings": {k: [x.get(k) for x in tims] for k in TIMING_KEYS},
        "lineage": _lineage(exp, reports, times, config_cols, int(summary.get("best_member", 0))),
    }
    return to_json(record)


def _present(v: Any) -> bool:
    return not (isinstance(v, float) and math.isnan(v))


def diversity(space: Space | None, configs: list[dict[str, Any]] | None) -> float:
    """Mean pairwise unit-space distance; 0 for identical configs, also when they leave
    hyperparameters to the agent's defaults (method "default"); NaN when it cannot be known."""
    if space is None or not configs:
        return math.nan
    if all(c == configs[0] for c in configs):
        return 0.0
    if any(set(space.names) - set(space.flat(c)) for c in configs):
        return math.nan
    return space.diversity(configs)


def _lineage(exp, reports, times, config_cols, best_member: int) -> dict[str, Any]:
    hops = exp.lineage(best_member)
    hop_times = [t for t, _ in hops[1:]]
    hop_members = [m for _, m in hops]
    names = [c.removeprefix("config.") for c in config_cols]
    out: dict[str, Any] = {"time": [], "params": {n: [] for n in names}}
    for t in times:
        k = sum(1 for ht in hop_times if t <= ht)
        holder = hop_members[min(k, len(hop_members) - 1)]
        row = reports[(reports["member"] == holder) & (reports["time"] == t)]
        if not len(row):
            continue
        out["time"].append(t)
        for col, name in zip(config_cols, names, strict=True):
            value = row.iloc[0][col]
            out["params"][name].append(value if _present(value) else None)
    return out


def to_json(x: Any) -> Any:
    """Plain JSON types; NaN and infinities -> None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_json(v) for v in x]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x


# ---------------------------------------------------------------------------------------------
# checking a record read from disk
# ---------------------------------------------------------------------------------------------
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "task": str,
    "method": str,
    "seed": int,
    "kind": str,
    "row": str,
    "config": dict,
    "provenance": dict,
    "initial": dict,
    "final": dict,
    "decisions": int,
    "exploits": int,
    "generations": dict,
    "timings": dict,
    "lineage": dict,
}


def check_record(record: Any, where: str) -> dict[str, Any]:
    """The record, or one ValueError naming `where`, the field and the fix."""
    fix = "re-export it from its bench folder (gpbt bench SUITE --results DIR) or delete it"
    if not isinstance(record, dict):
        raise ValueError(f"{where}: not a JSON object; {fix}")
    if record.get("format") != FORMAT:
        raise ValueError(
            f"{where}: field 'format' is {record.get('format')!r}, expected {FORMAT!r}; this is "
            f"not a gpbt bench cell record ({fix})"
        )
    if record.get("version") != VERSION:
        raise ValueError(
            f"{where}: field 'version' is {record.get('version')!r}; this gpbt reads version "
            f"{VERSION} (a newer gpbt wrote it: upgrade, or {fix})"
        )
    for key, types in _REQUIRED.items():
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(
                f"{where}: field {key!r} is {_short(value)}, expected a JSON "
                f"{_json_type(types)}; {fix}"
            )
    for group, keys in (("generations", GENERATION_KEYS), ("timings", TIMING_KEYS)):
        cols = record[group]
        lengths = set()
        for k in keys:
            if not isinstance(cols.get(k), list):
                raise ValueError(f"{where}: field '{group}.{k}' must be a list; {fix}")
            lengths.add(len(cols[k]))
        if len(lengths) > 1:
            raise ValueError(f"{where}: the lists of '{group}' differ in length; {fix}")
    if not isinstance(record["final"].get("returns"), list) or not record["final"]["returns"]:
        raise ValueError(f"{where}: field 'final.returns' must be a non-empty list; {fix}")
    return record


def _short(value: Any) -> str:
    text = json.dumps(value) if value is not None else "missing"
    return text if len(text) < 60 else text[:57] + "..."


def _json_type(types) -> str:
    names = {dict: "object", str: "string", int: "integer", list: "array", float: "number"}
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t, t.__name__) for t in types)


# ---------------------------------------------------------------------------------------------
# a record -> rows of the bench tables (gpbt.bench.store)
# ---------------------------------------------------------------------------------------------
def _f(x: Any) -> float:
    return math.nan if x is None else float(x)


def record_rows(record: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """{"results": [one row], "curves": [...], "diversity": [...], "schedules": [...],
    "timings": [...]}, each row keyed by task, method and seed."""
    ident = {"task": record["task"], "method": record["method"], "seed": record["seed"]}
    cfg = record["config"]
    space = Space.from_dict(cfg["space"]) if cfg.get("space") else None
    gens = record["generations"]
    curves, best_so_far = [], -math.inf
    for t, b, m in zip(gens["time"], gens["best"], gens["mean"], strict=True):
        b = _f(b)
        if math.isfinite(b):
            best_so_far = max(best_so_far, b)
        curves.append(
            {
                **ident,
                "time": float(t),
                "best": b,
                "mean": _f(m),
                "best_so_far": best_so_far if math.isfinite(best_so_far) else math.nan,
            }
        )
    bsf = np.array([c["best_so_far"] for c in curves], dtype=float)
    auc = float(np.nanmean(bsf)) if np.isfinite(bsf).any() else math.nan
    div = []
    if space is not None:
        if record.get("diversity_start") is not None or record["initial"].get("configs"):
            div.append({**ident, "time": 0.0, "diversity": _f(record.get("diversity_start"))})
        div += [
            {**ident, "time": float(t), "diversity": _f(d)}
            for t, d in zip(gens["time"], gens["diversity"], strict=True)
        ]
    sch = []
    lineage = record["lineage"]
    for i, t in enumerate(lineage.get("time", [])):
        for name, values in lineage.get("params", {}).items():
            value = values[i]
            if value is None:
                continue
            unit = math.nan
            if space is not None and name in space.params:
                try:
                    unit = float(space.params[name].to_unit(value))
                except (TypeError, ValueError):
                    pass
            number = isinstance(value, int | float) and not isinstance(value, bool)
            sch.append(
                {
                    **ident,
                    "time": float(t),
                    "param": name,
                    "value": float(value) if number else math.nan,
                    "label": str(value),
                    "unit": unit,
                }
            )
    tim_cols = record["timings"]
    timings = [
        {**ident, **{k: tim_cols[k][i] for k in TIMING_KEYS}}
        for i in range(len(tim_cols["generation"]))
    ]
    totals = {
        k: float(sum(_f(x) for x in tim_cols[k])) if tim_cols[k] else 0.0
        for k in ("train_s", "manage_s", "scheduler_s", "gather_s")
    }
    returns = np.array([_f(x) for x in record["final"]["returns"]], dtype=float)
    ok = np.isfinite(returns).any()
    tested = _tested(record["final"], returns, cfg.get("mode", "max"))
    init, prov = record["initial"], record["provenance"]
    tuned = list(space.names) if space is not None and record["row"] != "default" else []
    result = {
        **ident,
        "row": record["row"],
        "tuned": ",".join(tuned),
        # the headline: the member picked on the selection evaluation, scored on fresh test
        # episodes; final_best (the selection maximum) is the winner's-curse figure
        "final_test": tested["final_test"],
        "final_test_by_training": tested["final_test_by_training"],
        "final_test_mean": tested["final_test_mean"],
        "final_best": float(np.nanmax(returns)) if ok else math.nan,
        "final_mean": float(np.nanmean(returns)) if ok else math.nan,
        "auc": auc,
        "final_train_best": curves[-1]["best"] if curves else math.nan,
        "decisions": int(record["decisions"]),
        "exploits": int(record["exploits"]),
        "population": int(cfg.get("population", len(returns))),
        "total_steps": float(cfg.get("total_steps", gens["time"][-1] if gens["time"] else 0)),
        "perturbation_interval": float(cfg.get("perturbation_interval", 0)),
        "generations": len(tim_cols["generation"]),
        **totals,
        "initial_configs_hash": init.get("configs_hash", ""),
        "initial_state_hash": init.get("state_hash", ""),
        # the code at the cell's start (a resumed cell may finish under newer code; the
        # fairness audit compares starts)
        "code_hash": prov.get("code_hash", ""),
        "commit": prov.get("commit", ""),
        "wall_s": _f(prov.get("wall_s")),
        "best_config": json.dumps(record["final"].get("best_config", {}), sort_keys=True),
        # what member 0 really trained with at the start (agent defaults filled in): the
        # values a default or subset row trains untuned
        "initial_effective": json.dumps((init.get("effective") or [{}])[0], sort_keys=True),
        # an anchored row's purpose: the values its first members start at
        "start_points": json.dumps(cfg.get("start_points") or [], sort_keys=True),
    }
    return {
        "results": [result],
        "curves": curves,
        "diversity": div,
        "schedules": sch,
        "timings": timings,
    }


def _tested(final: dict[str, Any], selection: np.ndarray, mode: str) -> dict[str, float]:
    """The select-then-test scores of a record's final evaluation; NaN for a record made
    before the test episodes existed (its only score is the winner's-curse `final_best`).

    The member is the one the run selected and stored (`selected`), so the table reports the
    member the run handed to its user; a record without a stored choice (its run selected
    none, or it predates the field) is selected again here by the same rule."""
    test = final.get("test_returns")
    if test is None:
        return dict.fromkeys(("final_test", "final_test_by_training", "final_test_mean"), math.nan)
    test = np.array([_f(x) for x in test], dtype=float)
    chosen = select_then_test(selection, test, mode)
    stored = final.get("selected")
    by_training = final.get("selected_by_training")
    return {
        "final_test": float(test[stored]) if stored is not None else chosen.test,
        "final_test_by_training": float(test[by_training]) if by_training is not None else math.nan,
        "final_test_mean": chosen.test_mean,
    }
