"""Pre-registered targets judged from committed suite results.

A confirmation is registered before it runs: which comparisons, on which tasks, with which
threshold. The scripts that judge one (`benchmarks/pairwise_confirm.py` for issue 15,
`benchmarks/tuning_confirm.py` for issue 25) read the committed cell records the same way, and
this module is that one reading:

- a suite's expected cells come from its file, so a missing cell is counted as missing, not
  silently left out;
- a comparison P(X > Y) is `gpbt.bench.stats`' probability of improvement (Mann-Whitney, ties
  half), averaged over the tasks both rows have runs on, with its stratified-bootstrap 95%
  interval; task names carry their suite (`long-impala/Breakout-MinAtar@population=4`), since
  the same game with another agent is another task;
- a target is judged only when every cell it needs is committed; until then its verdict says
  `interim` with the cells done, and its number is not a result.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpbt.bench.results import ResultsFolder, load_results
from gpbt.bench.stats import per_task, probability_of_improvement, probability_of_improvement_ci
from gpbt.bench.suite import load_suite

REPS, SEED = 2000, 0  # the bootstrap every registered comparison uses


@dataclass
class SuiteData:
    """One suite's committed runs, with the cells its file says it has."""

    name: str
    results: pd.DataFrame  # task, method, seed, population, scores ...
    diversity: pd.DataFrame  # task, method, seed, time, diversity
    expected: pd.DataFrame  # task, method, seed, population: every cell of the suite


@dataclass
class Target:
    key: str
    comparison: str
    tasks: str
    target: str
    done: int
    needed: int
    value: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    verdict: str = "not run"
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.needed > 0 and self.done >= self.needed


def _prefixed(frame: pd.DataFrame, suite: str) -> pd.DataFrame:
    if not len(frame):
        return frame
    out = frame.copy()
    out["task"] = suite + "/" + out["task"].astype(str)
    return out


def expected_cells(suite_name: str) -> pd.DataFrame:
    suite = load_suite(suite_name)
    rows = [
        {"task": f"{suite_name}/{c.task}", "method": c.method, "seed": c.seed,
         "population": int(c.config.get("population", 0))}
        for c in suite.cells()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def load_suite_data(suite_name: str, results_root: Path, score: str) -> SuiteData:
    """The committed records of one suite under `results_root/<suite>` (none yet is fine: every
    cell counts as missing)."""
    expected = expected_cells(suite_name)
    folder = results_root / suite_name
    if not folder.exists() or not ResultsFolder(folder).records:
        empty = pd.DataFrame(columns=["task", "method", "seed", "population", score])
        return SuiteData(suite_name, empty, pd.DataFrame(), expected)
    bench = load_results(folder)
    return SuiteData(
        suite_name,
        _prefixed(bench.results, suite_name),
        _prefixed(bench.diversity, suite_name),
        expected,
    )


def scores_by_task(
    results: pd.DataFrame, method: str, tasks: list[str], score: str
) -> dict[str, np.ndarray]:
    """Per task, the runs' scores by seed (gpbt.bench.stats.per_task), tasks with a NaN left out."""
    scores = per_task(results[results["task"].isin(tasks)], method, score)
    return {t: x for t, x in scores.items() if np.isfinite(x).all()}


def count_cells(
    data: list[SuiteData], methods: tuple[str, ...], population: int | None
) -> tuple[int, int]:
    """(cells done, cells needed) of `methods` on the tasks at `population` (None: all)."""
    done = needed = 0
    for d in data:
        exp = d.expected[d.expected["method"].isin(methods)]
        got = d.results[d.results["method"].isin(methods)] if len(d.results) else d.results
        if population is not None:
            exp = exp[exp["population"] == population]
            got = got[got["population"] == population] if len(got) else got
        needed += len(exp)
        done += len(got)
    return done, needed


def suite_tasks(data: list[SuiteData], population: int | None) -> list[str]:
    out = []
    for d in data:
        exp = (
            d.expected if population is None else d.expected[d.expected["population"] == population]
        )
        out += sorted(exp["task"].unique())
    return out


def paired_scores(
    data: list[SuiteData], x: str, y: str, population: int, score: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Rows x's and y's scores per task, on the suites' tasks at one population where both
    have runs (tasks with a NaN left out)."""
    tasks = suite_tasks(data, population)
    frames = [d.results for d in data if len(d.results)]
    if not frames:
        return {}, {}
    results = pd.concat(frames)
    xs, ys = scores_by_task(results, x, tasks, score), scores_by_task(results, y, tasks, score)
    both = sorted(set(xs) & set(ys))
    return {t: xs[t] for t in both}, {t: ys[t] for t in both}


def improvement(
    data: list[SuiteData], x: str, y: str, population: int, key: str, target: str, score: str
) -> Target:
    """P(x > y) on `score` over the suites' tasks at one population size (unjudged)."""
    done, needed = count_cells(data, (x, y), population)
    row = Target(
        key=key,
        comparison=f"P({x} > {y})",
        tasks=f"{len(suite_tasks(data, population))} population-{population} tasks of "
        f"{', '.join(d.name for d in data)}",
        target=target,
        done=done,
        needed=needed,
    )
    xs, ys = paired_scores(data, x, y, population, score)
    if not xs:
        return row
    row.value, row.lo, row.hi = probability_of_improvement_ci(xs, ys, reps=REPS, seed=SEED)
    # a task's point estimate needs no bootstrap; its interval is computed where a target
    # judges single tasks (per_task_intervals)
    row.detail = {"per_task": {t: probability_of_improvement({t: xs[t]}, {t: ys[t]}) for t in xs}}
    return row


def per_task_intervals(
    data: list[SuiteData], x: str, y: str, population: int, score: str
) -> dict[str, tuple[float, float, float]]:
    """Per task at one population, P(x > y) with its bootstrap 95% interval, for tasks where
    both rows have runs."""
    xs, ys = paired_scores(data, x, y, population, score)
    return {
        t: probability_of_improvement_ci({t: xs[t]}, {t: ys[t]}, reps=REPS, seed=SEED) for t in xs
    }


def judge(row: Target, met: bool) -> None:
    """Set the verdict: met / not met once every needed cell is in, interim before."""
    if not math.isfinite(row.value):
        row.verdict = "not run" if row.done == 0 else "no comparable runs"
    elif row.complete:
        row.verdict = "met" if met else "not met"
    else:
        row.verdict = f"interim ({row.done}/{row.needed} cells)"


def number(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.3g}"


def target_table(title: str, rows: list[Target]) -> list[str]:
    """A markdown table of targets, one line each, under `title`."""
    lines = [
        f"{title}:",
        "",
        "| # | comparison | task set | target | cells | value [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = f" [{number(r.lo)}, {number(r.hi)}]" if math.isfinite(r.lo) else ""
        lines.append(
            f"| {r.key} | {r.comparison} | {r.tasks} | {r.target} | {r.done}/{r.needed} "
            f"| {number(r.value)}{ci} | {r.verdict} |"
        )
    return lines + [""]


def save_outcome(outcome: dict[str, Any], text: str, md: str | None, json_path: str | None) -> None:
    """Write a judged confirmation: its markdown `text` to `md`, and `outcome` (its claim and
    lists of targets) as JSON to `json_path`; either may be None."""
    if md:
        Path(md).write_text(text + "\n")
    if json_path:
        serial = {
            k: v if isinstance(v, str) else [asdict(r) for r in v] for k, v in outcome.items()
        }
        Path(json_path).write_text(json.dumps(serial, indent=1, default=float) + "\n")
