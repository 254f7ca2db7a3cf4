"""Issue 15: the pre-registered confirmation of `gpbt-pl-escape`, computed from committed results.

    python benchmarks/pairwise_confirm.py                       # targets so far, as markdown
    python benchmarks/pairwise_confirm.py --latency scheduler.json --md confirm.md --json c.json

Evaluates targets T1-T7 of docs/research/pairwise-preregistration.md (section 3) exactly as
registered, from the cell records under `benchmarks/results/` (the long suites `long-ppo` and
`long-impala`, the held-out suites `pairwise-holdout-ppo` and `pairwise-holdout-impala`) and,
for T6, the JSON written by `benchmarks/bench_scheduler.py --out`. Written before the
confirmation finished, so that the verdict is computed by code fixed in advance rather than
read off tables afterwards.

A target is decided only when every cell it needs is committed (10 seeds of each compared
method on each task of its task set); until then its row says `interim` with the cells done,
and its numbers are not a result.

Statistics are gpbt.bench.stats's, as the suite reports compute them: per task the
Mann-Whitney P(X > Y) + 0.5 P(X = Y) over all run pairs of `final_best`, averaged over tasks;
the 95% interval by bootstrapping each method's runs within each task (2000 replicates,
seed 0). Task names are prefixed with their suite (`long-impala/Breakout-MinAtar@population=4`),
since the same game with another agent is another task.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpbt.bench import targets
from gpbt.bench.stats import diversity_summary
from gpbt.bench.targets import (
    SuiteData,
    Target,
    count_cells,
    judge,
    number,
    suite_tasks,
    target_table,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

VARIANT = "gpbt-pl-escape"
LONG_SUITES = ("long-ppo", "long-impala")
HOLDOUT_SUITES = ("pairwise-holdout-ppo", "pairwise-holdout-impala")
POPULATIONS = (4, 8)
SCORE = "final_best"
# section 3: ">= 0.6 and the 95% interval's lower end > 0.5"
TARGET_P, TARGET_LO = 0.6, 0.5
LATENCY_MS, LATENCY_POPULATION = 1.0, 256


def load_suite_data(suite_name: str, results_root: Path = RESULTS) -> SuiteData:
    """The committed records of one suite (none yet is fine: every cell counts as missing)."""
    return targets.load_suite_data(suite_name, results_root, SCORE)


# --------------------------------------------------------------------------- the targets
def improvement(
    data: list[SuiteData], other: str, population: int, key: str, target: str
) -> Target:
    """P(VARIANT > other) over the suites' tasks at one population size."""
    return targets.improvement(data, VARIANT, other, population, key, target, SCORE)


def end_diversity(diversity: pd.DataFrame, method: str) -> dict[str, float]:
    """Per task, the mean over seeds of the diversity at the last decision (the suite report's
    "end" column, gpbt.bench.stats.diversity_summary)."""
    if not len(diversity):
        return {}
    summary = diversity_summary(diversity[diversity["method"] == method])
    return {r.task: float(r.end) for r in summary.itertuples()} if len(summary) else {}


def diversity_target(data: list[SuiteData]) -> Target:
    done, needed = count_cells(data, (VARIANT, "pbt"), None)
    row = Target(
        key="T5",
        comparison=f"end diversity, {VARIANT} minus pbt",
        tasks=f"all {len(suite_tasks(data, None))} tasks of {', '.join(d.name for d in data)}",
        target="mean over tasks >= 0",
        done=done,
        needed=needed,
    )
    frames = [d.diversity for d in data if len(d.diversity)]
    if not frames:
        return row
    div = pd.concat(frames)
    ours, pbt = end_diversity(div, VARIANT), end_diversity(div, "pbt")
    both = sorted(set(ours) & set(pbt))
    if both:
        gaps = {t: ours[t] - pbt[t] for t in both}
        row.value = float(np.mean(list(gaps.values())))
        row.detail = {"per_task": gaps, VARIANT: ours, "pbt": pbt}
    return row


def latency_target(latency: dict | None) -> Target:
    row = Target(
        key="T6",
        comparison=f"median decision time of {VARIANT}",
        tasks=f"benchmarks/bench_scheduler.py, population {LATENCY_POPULATION}",
        target=f"< {LATENCY_MS:g} ms",
        done=0,
        needed=1,
    )
    for r in (latency or {}).get("decisions", []):
        if r.get("method") == VARIANT and int(r.get("population", 0)) == LATENCY_POPULATION:
            row.done, row.value = 1, float(r["median_ms"])
            row.detail = {"machine": latency.get("machine"), "date": latency.get("date"),
                          "p99_ms": r.get("p99_ms")}  # fmt: skip
    return row


def evaluate(long: list[SuiteData], holdout: list[SuiteData], latency: dict | None) -> dict:
    """Every registered target, and the claim's verdict (all of T1-T6 met)."""
    primary = []
    numbered = {("pbt", 4): "T1", ("pb2", 4): "T2", ("pbt", 8): "T3", ("pb2", 8): "T4"}
    for (other, population), key in numbered.items():
        row = improvement(long, other, population, key, ">= 0.6, lower end > 0.5")
        judge(row, row.value >= TARGET_P and row.lo > TARGET_LO)
        primary.append(row)
    t5 = diversity_target(long)
    judge(t5, t5.value >= 0)
    t6 = latency_target(latency)
    judge(t6, t6.value < LATENCY_MS)
    primary += [t5, t6]

    held = []
    for population in POPULATIONS:
        for other in ("pbt", "pb2"):
            row = improvement(holdout, other, population, f"T7 pop {population}", ">= 0.5")
            judge(row, row.value >= 0.5)
            held.append(row)
    # a primary target met but contradicted on the held-out tasks does not generalise
    for row in held:
        twin = next(p for p in primary[:4] if p.comparison == row.comparison
                    and p.tasks.split()[1] == row.tasks.split()[1])  # fmt: skip
        row.detail["contradicts_" + twin.key] = bool(
            twin.verdict == "met" and row.complete and row.value < 0.5
        )

    reported = []
    for population in POPULATIONS:
        for other in ("gpbt-pl", "random", "default"):
            row = improvement(long, other, population, "reported", "(not deciding)")
            judge(row, True)
            if row.verdict == "met":
                row.verdict = "complete"
            reported.append(row)

    if all(t.verdict == "met" for t in primary):
        claim = "met: gpbt-pl-escape beats PBT and PB2 (T1-T6 all met)"
        if any(r.verdict == "not met" for r in held):
            claim += "; the held-out tasks do not support it at every population (T7)"
    elif any(t.verdict == "not met" for t in primary):
        failed = ", ".join(t.key for t in primary if t.verdict == "not met")
        claim = f"not met ({failed} not met)"
    else:
        claim = "undecided: the confirmation has not finished"
    return {"claim": claim, "primary": primary, "holdout": held, "reported": reported}


# ------------------------------------------------------------------- the decision logs
def decision_stats(bench_root: Path, suite_names: tuple[str, ...]) -> pd.DataFrame:
    """Reported, not deciding: per suite and method, the exploit rate and, for the variant,
    the share of parameters an exploit escaped (drew afresh; its velocity is then exactly 0).

    Read from the cells' own stores in the bench folders (`gpbt bench --out`), which keep
    every decision; the committed records keep only the counts. Opened read-only, so a
    running bench is not disturbed."""
    rows = []
    for suite_name in suite_names:
        for db in sorted((bench_root / suite_name).glob("*/*/seed*/experiment.sqlite")):
            method = db.parent.parent.name
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                kinds = conn.execute("SELECT kind, velocity FROM decisions").fetchall()
            params = escaped = 0
            for kind, velocity in kinds:
                if kind == "exploit" and velocity:
                    values = json.loads(velocity).values()
                    params += len(values)
                    escaped += sum(1 for v in values if v == 0)
            rows.append({"suite": suite_name, "method": method, "decisions": len(kinds),
                         "exploits": sum(1 for k, _ in kinds if k == "exploit"),
                         "params": params, "escaped": escaped})  # fmt: skip
    if not rows:
        return pd.DataFrame()
    per_cell = pd.DataFrame(rows)
    out = per_cell.groupby(["suite", "method"], sort=False).sum(numeric_only=True).reset_index()
    out["cells"] = per_cell.groupby(["suite", "method"], sort=False).size().to_numpy()
    out["exploit_rate"] = out["exploits"] / out["decisions"]
    out["escaped_share"] = np.where(
        out["params"] > 0, out["escaped"] / out["params"].clip(1), np.nan
    )
    return out


def decision_markdown(stats: pd.DataFrame) -> str:
    lines = [
        "Decision logs (reported, not deciding): exploits per decision, and for pairwise "
        "updates the share of parameters an exploit set with zero velocity (the escape's draws):",
        "",
        "| suite | method | cells | decisions | exploit rate | escaped share |",
        "|---|---|---|---|---|---|",
    ]
    for r in stats.itertuples():
        lines.append(
            f"| {r.suite} | {r.method} | {r.cells} | {r.decisions} | {r.exploit_rate:.3f} "
            f"| {number(r.escaped_share)} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- output
def markdown(outcome: dict) -> str:
    lines = [f"**Claim: {outcome['claim']}.**", ""]
    for title, rows in (("Primary targets (T1-T6)", outcome["primary"]),
                        ("Held-out check (T7)", outcome["holdout"]),
                        ("Reported, not deciding", outcome["reported"])):  # fmt: skip
        lines += target_table(title, rows)
    per_task = [r for r in outcome["primary"][:4] + outcome["holdout"] if r.detail.get("per_task")]
    if per_task:
        lines += [
            "Per task (point estimates):",
            "",
            "| # | comparison | task | P |",
            "|---|---|---|---|",
        ]
        for r in per_task:
            for task, p in r.detail["per_task"].items():
                lines.append(f"| {r.key} | {r.comparison} | {task} | {number(p)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default=str(RESULTS), help="folder holding one folder per suite")
    p.add_argument("--latency", help="JSON written by benchmarks/bench_scheduler.py --out (T6)")
    p.add_argument(
        "--bench-root",
        help="folder holding the suites' bench folders (gpbt bench --out), for the decision logs",
    )
    p.add_argument("--md", help="write the markdown here too")
    p.add_argument("--json", help="write every target as JSON here")
    args = p.parse_args(argv)
    root = Path(args.results)
    latency = json.loads(Path(args.latency).read_text()) if args.latency else None
    outcome = evaluate(
        [load_suite_data(s, root) for s in LONG_SUITES],
        [load_suite_data(s, root) for s in HOLDOUT_SUITES],
        latency,
    )
    text = markdown(outcome)
    if args.bench_root:
        stats = decision_stats(Path(args.bench_root), LONG_SUITES + HOLDOUT_SUITES)
        if len(stats):
            text += "\n" + decision_markdown(stats)
    print(text)
    targets.save_outcome(outcome, text, args.md, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
