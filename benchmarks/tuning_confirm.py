"""Issue 25: the pre-registered confirmation (targets C1-C4), computed from committed results.

    python benchmarks/tuning_confirm.py                  # targets so far, as markdown
    python benchmarks/tuning_confirm.py --md c.md --json c.json

Judges targets C1-C4 of docs/research/tuning-preregistration.md (section 4, made exact in
part 2) from the cell records under `benchmarks/results/`: the confirmation suites
`confirm-ppo`, `confirm-impala`, `confirm-brax` (the long tasks) and the held-out suites
`confirm-holdout-ppo`, `confirm-holdout-impala`. Written and committed before any confirmation
cell ran, so the verdict is computed by code fixed in advance, not read off tables afterwards.
The reading of results is `gpbt.bench.targets`' (issue 15's confirmation uses the same): a
target is judged only when every cell it needs is committed, `interim` before.

- C1: P(registered > default) over the long tasks pooled, each population: >= 0.6 with the
  95% interval's lower end > 0.5.
- C2: P(registered > default) on each long task, each population: no task's 95% interval
  wholly below 0.5 (its upper end >= 0.5).
- C3: P(registered > pbt) over the long tasks pooled, each population: >= 0.6.
- C4: C1's and C3's comparisons on the held-out tasks, each population: they "point the same
  way" when each is >= 0.5. Reported beside C1-C3; the claim holds only if C1-C3 are met and
  C4 points the same way at every population.

Secondary targets, registered in part 2 from the development readings (they do not change
the claim about the registered tuner): S1, P(pbt > default), and S2, P(random > default), over
the long tasks pooled, each population, with C1's threshold.

Reported, not deciding: every confirmed row against the defaults and against pbt, and
GPBT-PL against PBT and PB2 (the paper's claim, re-tested), each population.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpbt.bench import targets
from gpbt.bench.targets import SuiteData, Target, judge, number, target_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

REGISTERED = "mf-pbt"  # rule 1's choice, part 2 of the pre-registration
LONG_SUITES = ("confirm-ppo", "confirm-impala", "confirm-brax")
HOLDOUT_SUITES = ("confirm-holdout-ppo", "confirm-holdout-impala")
POPULATIONS = (4, 8)
SCORE = "final_test"
TARGET_P, TARGET_LO = 0.6, 0.5
# the rows part 2 runs on the long tasks, in the order it runs them (tier 1, 2, 3)
CONFIRMED = ("default", "pbt", REGISTERED, "random", "gpbt-pl", "pb2", "pbt-anchored")
SECONDARY = {"S1": "pbt", "S2": "random"}  # each against the defaults, C1's threshold


def load_suite_data(suite_name: str, results_root: Path = RESULTS) -> SuiteData:
    return targets.load_suite_data(suite_name, results_root, SCORE)


def _improvement(data: list[SuiteData], x: str, y: str, population: int, key: str,
                 target: str) -> Target:  # fmt: skip
    return targets.improvement(data, x, y, population, key, target, SCORE)


def per_task_target(long: list[SuiteData], population: int) -> Target:
    """C2 at one population: no long task with P(registered > default)'s interval below 0.5."""
    done, needed = targets.count_cells(long, (REGISTERED, "default"), population)
    row = Target(
        key=f"C2 pop {population}",
        comparison=f"P({REGISTERED} > default) per task",
        tasks=f"each of {len(targets.suite_tasks(long, population))} population-{population} "
        "long tasks",
        target="no interval wholly below 0.5",
        done=done,
        needed=needed,
    )
    per_task = targets.per_task_intervals(long, REGISTERED, "default", population, SCORE)
    if per_task:
        worst = min(per_task, key=lambda t: per_task[t][2])  # the lowest upper end
        row.value, row.lo, row.hi = per_task[worst]
        row.detail = {"worst_task": worst, "per_task": {t: list(v) for t, v in per_task.items()}}
    return row


def evaluate(long: list[SuiteData], holdout: list[SuiteData]) -> dict:
    """Every registered target, and the claim's verdict."""
    primary = []
    for population in POPULATIONS:
        c1 = _improvement(long, REGISTERED, "default", population, f"C1 pop {population}",
                          f">= {TARGET_P}, lower end > {TARGET_LO}")  # fmt: skip
        judge(c1, c1.value >= TARGET_P and c1.lo > TARGET_LO)
        c2 = per_task_target(long, population)
        judge(c2, c2.hi >= 0.5)
        c3 = _improvement(long, REGISTERED, "pbt", population, f"C3 pop {population}",
                          f">= {TARGET_P}")  # fmt: skip
        judge(c3, c3.value >= TARGET_P)
        primary += [c1, c2, c3]

    secondary = []
    for population in POPULATIONS:
        for key, row_name in SECONDARY.items():
            row = _improvement(long, row_name, "default", population, f"{key} pop {population}",
                               f">= {TARGET_P}, lower end > {TARGET_LO}")  # fmt: skip
            judge(row, row.value >= TARGET_P and row.lo > TARGET_LO)
            secondary.append(row)

    held = []
    for population in POPULATIONS:
        for other, twin in (("default", "C1"), ("pbt", "C3")):
            row = _improvement(holdout, REGISTERED, other, population,
                               f"C4 pop {population} ({twin})", ">= 0.5")  # fmt: skip
            judge(row, row.value >= 0.5)
            held.append(row)

    reported = []
    for population in POPULATIONS:
        pairs = [(m, "default") for m in CONFIRMED[1:]]
        pairs += [(m, "pbt") for m in CONFIRMED[2:]] + [("gpbt-pl", "pb2")]
        for x, y in pairs:
            row = _improvement(long, x, y, population, "reported", "(not deciding)")
            judge(row, True)
            if row.verdict == "met":
                row.verdict = "complete"
            reported.append(row)
    return {"claim": claim(primary, held), "primary": primary, "holdout": held,
            "secondary": secondary, "reported": reported}  # fmt: skip


def claim(primary: list[Target], held: list[Target]) -> str:
    if any(t.verdict == "not met" for t in primary):
        failed = ", ".join(t.key for t in primary if t.verdict == "not met")
        return f"not met ({failed} not met)"
    if not all(t.verdict == "met" for t in primary):
        return "undecided: the confirmation has not finished"
    if not all(t.complete for t in held):
        return "undecided: C1-C3 met, the held-out check (C4) has not finished"
    if any(t.verdict == "not met" for t in held):
        against = ", ".join(t.key for t in held if t.verdict == "not met")
        return f"not met: C1-C3 met, but the held-out tasks point the other way ({against})"
    return f"met: {REGISTERED} beats the defaults and PBT (C1-C3), and the held-out tasks agree"


def markdown(outcome: dict) -> str:
    lines = [f"**Claim: {outcome['claim']}.**", ""]
    for title, rows in (("Targets (C1-C3)", outcome["primary"]),
                        ("Held-out check (C4)", outcome["holdout"]),
                        ("Secondary targets (S1, S2)", outcome["secondary"]),
                        ("Reported, not deciding", outcome["reported"])):  # fmt: skip
        lines += target_table(title, rows)
    per_task = [r for r in outcome["primary"] if r.detail.get("per_task") and "C2" in r.key]
    if per_task:
        lines += ["C2 per task:", "", "| # | task | P [95% CI] |", "|---|---|---|"]
        for r in per_task:
            for task, (p, lo, hi) in r.detail["per_task"].items():
                lines.append(f"| {r.key} | {task} | {number(p)} [{number(lo)}, {number(hi)}] |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default=str(RESULTS), help="folder holding one folder per suite")
    p.add_argument("--md", help="write the markdown here too")
    p.add_argument("--json", help="write every target as JSON here")
    args = p.parse_args(argv)
    root = Path(args.results)
    outcome = evaluate(
        [load_suite_data(s, root) for s in LONG_SUITES],
        [load_suite_data(s, root) for s in HOLDOUT_SUITES],
    )
    text = markdown(outcome)
    print(text)
    targets.save_outcome(outcome, text, args.md, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
