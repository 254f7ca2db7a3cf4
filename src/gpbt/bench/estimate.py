"""`gpbt bench SUITE --estimate`: what a suite will cost, from a few generations of one cell per
task, before committing a machine to it for days.

For each task, the first cell of the suite (first method, first seed) runs for `generations`
generations in a temporary folder, in this process, with everything else as the suite says
(population, interval, agent, final evaluation). Timed from the cell's own progress events:
- `s/generation`: the median of the generations after the first (the first one compiles);
- `eval_s`: the final evaluation (every member, `final_eval_episodes` episodes);
- `compile_s`: building the population plus the first generation's excess over the median,
  paid once per program per worker process (the bench shares compiled agents across cells).
Then `cell_s = generations_per_cell * s/generation + eval_s` and a task costs
`cells * cell_s + compile_s`. Hours are wall hours on this machine, as `gpbt bench` runs the
cells one after another; CPU hours multiply by the CPUs this process may use (JAX on CPU uses
them all).

A rough figure, said as such: a generation's cost depends on the hyperparameters (PPO's epochs
and batch size), which the first seed's draws only sample; exploits move them during a run;
evaluating a trained policy can take longer than an untrained one (longer episodes).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from gpbt.bench.cell import run_cell
from gpbt.bench.provenance import cpus
from gpbt.bench.suite import Suite
from gpbt.config import ConfigError, validate_config


def estimate_suite(
    suite: Suite,
    generations: int = 3,
    say: Callable[[str], None] = lambda text: None,
    available: Callable | None = None,
    tasks: list[str] | None = None,
    methods: list[str] | None = None,
) -> pd.DataFrame:
    """One row per task (and a last row "all tasks"); see the module docstring. `tasks`,
    `methods`: shell-style patterns, to measure only the matching tasks and count only the
    matching methods' cells (the cell timed is then the first matching method's).

    `available(cell)` says why a cell cannot run on this install (None: it can); by default
    the bench runner's own check (IMPALA or brax missing)."""
    if available is None:
        from gpbt.bench.runner import _available as available
    if generations < 1:
        raise ConfigError(f"--estimate-generations {generations}: measure at least 1 generation")
    chosen_tasks, chosen_methods = suite.select(tasks, methods)
    cells = [c for c in suite.cells() if c.method in chosen_methods]
    agents: dict = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpbt-estimate-") as tmp:
        for task in chosen_tasks:
            of_task = [c for c in cells if c.task == task]
            cell = of_task[0]
            cfg = dict(cell.config)
            interval = float(cfg["perturbation_interval"])
            per_cell = math.ceil(float(cfg["total_steps"]) / interval)
            row = {
                "task": task,
                "population": int(cfg["population"]),
                "generations_per_cell": per_cell,
                "cells": len(of_task),
            }
            why = available(cell)
            if why:
                rows.append({**row, "note": f"not measured: {why}"})
                say(f"{task}: not measured ({why})")
                continue
            measured = min(generations, per_cell)
            if cell.kind == "vector":
                cfg["total_steps"] = int(measured * interval)
                cfg = validate_config(cfg).to_dict()
            else:
                measured = per_cell  # a toy runs whole in milliseconds
            say(f"{task}: {measured} generations of {cell.method} seed {cell.seed} ...")
            marks: dict[str, list[float]] = {"initialised": [], "generation": []}

            def emit(event: dict, marks=marks) -> None:
                if event.get("type") in marks:
                    marks[event["type"]].append(time.perf_counter())

            t0 = time.perf_counter()
            run_cell(cell.kind, cfg, Path(tmp) / cell.relpath, emit, agents)
            t_end = time.perf_counter()
            gens = marks["generation"]
            start = marks["initialised"][0] if marks["initialised"] else t0
            steps = [b - a for a, b in zip([start, *gens[:-1]], gens, strict=True)]
            steady = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
            eval_s = t_end - gens[-1]
            compile_s = (start - t0) + max(0.0, steps[0] - steady)
            cell_s = per_cell * steady + eval_s
            total_s = len(of_task) * cell_s + compile_s
            rows.append(
                {
                    **row,
                    "measured_generations": measured,
                    "s_per_generation": steady,
                    "eval_s": eval_s,
                    "compile_s": compile_s,
                    "cell_hours": cell_s / 3600,
                    "hours": total_s / 3600,
                    "note": "",
                }
            )
            say(
                f"  {steady:.2f} s/generation, eval {eval_s:.1f} s, compile {compile_s:.0f} s: "
                f"{len(of_task)} cells x {cell_s / 3600:.2f} h = {total_s / 3600:.1f} h"
            )
    table = pd.DataFrame(rows)
    hours = float(table["hours"].sum()) if "hours" in table else 0.0
    total = {
        "task": "all tasks",
        "cells": int(table["cells"].sum()),
        "hours": hours,
        "cpu_hours": hours * cpus(),
        "note": "wall hours on this machine (cells run one after another); cpu_hours x "
        f"{cpus()} CPUs",
    }
    if "note" in table and (table["note"].str.startswith("not measured")).any():
        total["note"] += "; tasks not measured are not counted"
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def print_estimate(
    spec,
    seeds: int | None = None,
    generations: int = 3,
    tasks: list[str] | None = None,
    methods: list[str] | None = None,
) -> pd.DataFrame:
    """`gpbt bench SUITE --estimate`: measure, then print the table (plain text, so it reads
    the same in a log file)."""
    from gpbt.bench.suite import load_suite

    suite = load_suite(spec, seeds=seeds)
    chosen_tasks, chosen_methods = suite.select(tasks, methods)
    print(
        f"gpbt bench {suite.label} --estimate: {generations} generations of one cell per task "
        f"({len(chosen_tasks)} of its {len(suite.tasks)} tasks, {len(chosen_methods)} of its "
        f"{len(suite.methods)} methods, {len(suite.cells())} cells in the suite; cells already "
        "done elsewhere are counted too)",
        flush=True,
    )
    table = estimate_suite(
        suite,
        generations,
        say=lambda text: print(text, flush=True),
        tasks=tasks,
        methods=methods,
    )
    cols = ["task", "population", "cells", "generations_per_cell", "s_per_generation",
            "eval_s", "compile_s", "hours"]  # fmt: skip
    view = table[[c for c in cols if c in table]].copy()
    print(view.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3g}"))
    for _, r in table.iloc[:-1].iterrows():
        if r.get("note"):
            print(f"{r['task']}: {r['note']}")
    last = table.iloc[-1]
    print(
        f"total: {last['hours']:.1f} wall hours on this machine (cells run one after another), "
        f"{last['cpu_hours']:.1f} CPU hours ({cpus()} CPUs)"
        + ("; tasks not measured are not counted" if "not counted" in last["note"] else "")
    )
    return table
