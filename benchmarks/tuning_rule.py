"""Issue 25: the pre-registered rule that turns the development results into the registered
tuner and PBT's explore default, computed from committed results.

    python benchmarks/tuning_rule.py                 # the rule so far, as markdown
    python benchmarks/tuning_rule.py --json rule.json
    python benchmarks/tuning_rule.py --stopped-population 8   # as part 2 applies it

Applies rules 1 and 2 of docs/research/tuning-preregistration.md (section 2) exactly as
registered, to the cell records of the development suites `tuning-dev` and `tuning-dev-impala`
under `benchmarks/results/`. Written before the development runs finished, so that part 2's
choice is computed by code fixed in advance rather than read off tables afterwards.

- Statistic: `gpbt.bench.stats`' P(X > Y) (Mann-Whitney, ties half) on `final_test`, averaged
  over tasks, 95% interval by bootstrapping each row's runs within each task (2000 replicates,
  seed 0); each population separately.
- A task counts for a comparison only when both rows finished all 5 development seeds on it.
  Task names carry their suite (`tuning-dev-impala/Breakout-MinAtar@population=4`): the same
  game with another agent is another task.
- Rule 1: the registered tuner is the candidate with the highest worst-population
  P(candidate > default) (population 4 alone while population 8 has no finished task); a
  difference below 0.02 is a tie, broken by the higher worst-population P(candidate > pbt).
- Rule 2: `pbt`'s default becomes pbt-logsym's explore if P(pbt-logsym > pbt), pooled over
  both populations' finished tasks, is >= 0.5.
- Rule 3: whether any candidate reaches P(> default) >= 0.5 at every population measured.

Until every development task has finished, the output says `interim` with the tasks counted:
an interim figure is not the rule's answer. `--stopped-population P` applies the clause
"population 4 alone if population 8 did not finish": it is for a population whose development
was stopped before any of its tasks finished (part 2 says why); its cells are left out, and the
answer is final once every task of the other population has finished. A stopped population
with a finished task is refused: its results would be thrown away after being seen.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from gpbt.bench.results import load_results
from gpbt.bench.stats import per_task, probability_of_improvement_ci

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SUITES = ("tuning-dev", "tuning-dev-impala")
CANDIDATES = ("pbt-logsym", "pbt-anchored", "mf-pbt", "pbt-patient")
# both development suites' rows: a task has finished when every one has every seed
ROWS = ("default", "random", "pbt", "pbt-logsym", "pb2", "gpbt-pl", "pbt-anchored", "mf-pbt",
        "pbt-patient")  # fmt: skip
SEEDS = (100, 101, 102, 103, 104)
POPULATIONS = (4, 8)
SCORE = "final_test"
REPS, SEED = 2000, 0
TIE = 0.02
EXPECTED_TASKS = {4: 5, 8: 5}  # per population: 3 PPO tasks + 2 IMPALA tasks


def development_results() -> pd.DataFrame:
    """Every committed development cell, one row each, its task named with its suite."""
    frames = []
    for suite in SUITES:
        folder = RESULTS / suite
        if not (folder / "suite.json").exists():
            continue
        df = load_results(folder).results.copy()
        df["task"] = suite + "/" + df["task"]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["task", "method", "seed", "population", SCORE])
    return pd.concat(frames, ignore_index=True)


def finished_tasks(df: pd.DataFrame) -> list[str]:
    """The development tasks on which every row has every development seed."""
    return sorted(
        task
        for task, g in df.groupby("task")
        if all(set(g[g["method"] == m]["seed"]) >= set(SEEDS) for m in ROWS)
    )


def finished(df: pd.DataFrame, x: str, y: str, population: int | None) -> pd.DataFrame:
    """The runs of rows x and y on the finished tasks (of one population, or of all)."""
    sub = df[df["method"].isin([x, y]) & df["task"].isin(finished_tasks(df))]
    if population is not None:
        sub = sub[sub["population"] == population]
    return sub[sub["seed"].isin(SEEDS)]


def compare(df: pd.DataFrame, x: str, y: str, population: int | None) -> dict:
    sub = finished(df, x, y, population)
    p, lo, hi = probability_of_improvement_ci(
        per_task(sub, x, SCORE), per_task(sub, y, SCORE), REPS, SEED
    )
    return {"x": x, "y": y, "population": population, "poi": p, "lo": lo, "hi": hi,
            "tasks": sorted(sub["task"].unique())}  # fmt: skip


def rule(df: pd.DataFrame, stopped: tuple[int, ...] = ()) -> dict:
    """Rules 1-3 on the development records `df`; `stopped`: populations whose development was
    stopped before any of their tasks finished (left out; the others decide)."""
    for pop in stopped:
        done = [t for t in finished_tasks(df) if t.endswith(f"@population={pop}")]
        if done:
            raise ValueError(
                f"population {pop} cannot be stopped: its tasks {done} finished, so the rule "
                "counts them; drop --stopped-population"
            )
    df = df[~df["population"].isin(stopped)]
    measured = [
        pop for pop in POPULATIONS if compare(df, "default", "pbt", pop)["tasks"]
    ]  # a population with no finished task does not count yet
    rows = {}
    for c in CANDIDATES:
        vs_default = {pop: compare(df, c, "default", pop) for pop in measured}
        vs_pbt = {pop: compare(df, c, "pbt", pop) for pop in measured}
        rows[c] = {
            "vs_default": vs_default,
            "vs_pbt": vs_pbt,
            "worst_vs_default": min((r["poi"] for r in vs_default.values()), default=math.nan),
            "worst_vs_pbt": min((r["poi"] for r in vs_pbt.values()), default=math.nan),
        }
    ranked = sorted(CANDIDATES, key=lambda c: -_finite(rows[c]["worst_vs_default"]))
    lead = _finite(rows[ranked[0]]["worst_vs_default"])
    tied = [c for c in ranked if lead - _finite(rows[c]["worst_vs_default"]) < TIE]
    # no finished task yet: no candidate leads
    registered = max(tied, key=lambda c: _finite(rows[c]["worst_vs_pbt"])) if measured else None
    explore = compare(df, "pbt-logsym", "pbt", None)
    expected = sum(n for pop, n in EXPECTED_TASKS.items() if pop not in stopped)
    complete = len(finished_tasks(df)) == expected
    return {
        "status": "final" if complete else "interim",
        "stopped_populations": list(stopped),
        "populations_measured": measured,
        "candidates": rows,
        "registered": registered,
        "tied_with_leader": tied,
        "explore": explore,
        "pbt_default_becomes_logsym": bool(explore["poi"] >= 0.5),
        "any_candidate_beats_default": any(
            bool(rows[c]["vs_default"])
            and all(r["poi"] >= 0.5 for r in rows[c]["vs_default"].values())
            for c in CANDIDATES
        ),
    }


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def markdown(result: dict) -> str:
    lines = [
        f"**{result['status']}** (populations measured: {result['populations_measured']}"
        + (
            f"; stopped before any task finished, left out: {result['stopped_populations']})"
            if result["stopped_populations"]
            else ")"
        ),
        "",
        "| candidate | population | P(> default) [95%] | P(> pbt) [95%] | tasks |",
        "|---|---:|---|---|---:|",
    ]
    for c, row in result["candidates"].items():
        for pop in result["populations_measured"]:
            d, p = row["vs_default"][pop], row["vs_pbt"][pop]
            lines.append(
                f"| {c} | {pop} | {d['poi']:.2f} [{d['lo']:.2f}, {d['hi']:.2f}] | "
                f"{p['poi']:.2f} [{p['lo']:.2f}, {p['hi']:.2f}] | {len(d['tasks'])} |"
            )
    e = result["explore"]
    lines += [
        "",
        f"Rule 1, registered tuner: **{result['registered']}** (tied with the leader within "
        f"{TIE}: {', '.join(result['tied_with_leader'])}).",
        f"Rule 2, P(pbt-logsym > pbt) pooled: {e['poi']:.2f} [{e['lo']:.2f}, {e['hi']:.2f}] "
        f"over {len(e['tasks'])} tasks: pbt's default "
        f"{'becomes pbt-logsym' if result['pbt_default_becomes_logsym'] else 'stays Ray Tune'}'s"
        " explore.",
        f"Rule 3, a candidate with P(> default) >= 0.5 at every population measured: "
        f"{'yes' if result['any_candidate_beats_default'] else 'no'}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    parser.add_argument(
        "--stopped-population", type=int, action="append", default=[], choices=POPULATIONS,
        help="a population whose development was stopped before any task finished: left out",
    )  # fmt: skip
    args = parser.parse_args()
    try:
        result = rule(development_results(), tuple(args.stopped_population))
    except ValueError as err:
        raise SystemExit(f"tuning_rule: {err}") from None
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=_plain))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))


if __name__ == "__main__":
    main()
