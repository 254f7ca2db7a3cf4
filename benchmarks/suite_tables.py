"""BENCHMARKS.md's tables for one suite, from its committed results folder alone.

    python benchmarks/suite_tables.py benchmarks/results/long-brax
    python benchmarks/suite_tables.py benchmarks/results/anchor-ppo --reference pbt-anchored

The long suites' sections of BENCHMARKS.md show, per task, every row side by side (mean and 95%
interval of the suite's score: `final_best` for the suites measured before `final_test`),
P(reference > each other row) per task and over all tasks with
seed-by-seed wins, the other pairs that the paragraph discusses, IQM and average rank of the
other scores, and the best member's final config per row. `gpbt report` computes the same
numbers (gpbt.bench.stats, the same bootstrap settings) but lays them out one method per line
for the HTML page; this script prints the wide layout BENCHMARKS.md uses, so that a section is
written from a fresh clone and never copied by hand. Interim until every cell is done: a
mean over fewer than all seeds shows its count in parentheses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from gpbt.bench import stats
from gpbt.bench.results import load_results

REPS, SEED = 2000, 0


def short(task: str) -> str:
    """'Breakout-MinAtar@population=8' -> 'Breakout, pop 8' (the tables' task column)."""
    name, _, pop = task.partition("@population=")
    name = name.replace("-MinAtar", "").replace("-v1", "")
    return f"{name}, pop {pop}" if pop else name


def _fmt(x: float) -> str:
    """Three significant digits, without an exponent for returns in the thousands (brax)."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


class Tables:
    def __init__(self, folder: str | Path, reference: str | None = None):
        self.folder = Path(folder)
        bench = load_results(self.folder)
        self.results, self.diversity = bench.results, bench.diversity
        self.methods = list(dict.fromkeys(self.results["method"]))
        self.tasks = list(dict.fromkeys(self.results["task"]))
        self.seeds = list(bench.suite["seeds"])
        self.reference = reference or bench.suite["reference"]
        # the suite's own headline score (the suites measured before final_test say final_best)
        self.score = bench.suite.get("score", "final_best")

    def scores(self, task: str, method: str, column: str | None = None) -> pd.Series:
        column = column or self.score
        r = self.results
        return r[(r.task == task) & (r.method == method)].set_index("seed")[column].sort_index()

    def per_task(self) -> list[str]:
        lines = [
            "| task | " + " | ".join(self.methods) + " |",
            "|---|" + "---|" * len(self.methods),
        ]
        for t in self.tasks:
            means = {m: self.scores(t, m).mean() for m in self.methods}
            top = max(v for v in means.values() if np.isfinite(v))
            cells = []
            for m in self.methods:
                x = self.scores(t, m).to_numpy(float)
                if not len(x):
                    cells.append("-")
                    continue
                mean, lo, hi = stats.mean_ci(x, reps=REPS, seed=SEED)
                text = f"**{_fmt(mean)}**" if means[m] == top else _fmt(mean)
                partial = "" if len(x) == len(self.seeds) else f" ({len(x)})"
                cells.append(f"{text} [{_fmt(lo)}, {_fmt(hi)}]{partial}")
            lines.append(f"| {short(t)} | " + " | ".join(cells) + " |")
        return lines

    def improvement(self, x_m: str, y_m: str, tasks: list[str]) -> str:
        """P(x > y) [95% CI] verdict (seed-by-seed wins / seeds both ran)."""
        x = {t: self.scores(t, x_m).to_numpy(float) for t in tasks}
        y = {t: self.scores(t, y_m).to_numpy(float) for t in tasks}
        p, lo, hi = stats.probability_of_improvement_ci(x, y, reps=REPS, seed=SEED)
        word = stats.verdict(lo, hi)
        wins = pairs = 0
        for t in tasks:
            a, b = self.scores(t, x_m), self.scores(t, y_m)
            both = a.index.intersection(b.index)
            wins += int((a[both] > b[both]).sum())
            pairs += len(both)
        word = word if word == "tie" else f"**{word}**"
        return f"{p:.2f} [{lo:.2f}, {hi:.2f}] {word} ({wins}/{pairs})"

    def against_reference(self) -> list[str]:
        others = [m for m in self.methods if m != self.reference]
        lines = [
            "| task | " + " | ".join(f"vs {o}" for o in others) + " |",
            "|---|" + "---|" * len(others),
        ]
        for label, tasks in [(short(t), [t]) for t in self.tasks] + [("all tasks", self.tasks)]:
            row = [self.improvement(self.reference, o, tasks) for o in others]
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        return lines

    def other_pairs(self) -> list[str]:
        """Every other ordered pair over all tasks (each pair once, the row listed first)."""
        rest = [m for m in self.methods if m != self.reference]
        return [
            f"P({a} > {b}) {self.improvement(a, b, self.tasks)}"
            for i, a in enumerate(rest)
            for b in rest[i + 1 :]
        ]

    def aggregates(self) -> list[str]:
        lines = [
            f"| method | `{self.score}` IQM, rank | `final_mean` IQM, rank | `auc` IQM, rank |",
            "|---|---|---|---|",
        ]
        cols = {}
        for score in (self.score, "final_mean", "auc"):
            norm = stats.normalize(self.results, score, {})
            agg = stats.aggregate(norm, reps=REPS).set_index("method")
            cols[score] = (agg, stats.average_rank(norm))
        for m in self.methods:
            parts = []
            for agg, rank in cols.values():
                a = agg.loc[m]
                parts.append(
                    f"{a['iqm']:.2f} [{a['iqm_lo']:.2f}, {a['iqm_hi']:.2f}], {rank[m]:.2f}"
                )
            lines.append(f"| {m} | " + " | ".join(parts) + " |")
        return lines

    def diversity_range(self) -> list[str]:
        ds = stats.diversity_summary(self.diversity)
        agg = ds.groupby("method", sort=False)[["start", "end", "time_average"]].agg(["min", "max"])
        return agg.round(2).to_string().splitlines()

    def best_configs(self) -> list[str]:
        """Median over seeds of the best member's final config, per task and row."""
        records = [json.loads(p.read_text()) for p in self.folder.glob("*/*/seed*.json")]
        frame = pd.DataFrame(
            [
                {"task": r["task"], "method": r["method"], **r["final"]["best_config"]}
                for r in records
            ]
        )
        lines = []
        for t in self.tasks:
            part = frame[frame.task == t].drop(columns="task")
            table = part.groupby("method", sort=False).median(numeric_only=True)
            lines += [short(t), table.to_string(float_format=lambda v: f"{v:.3g}"), ""]
        return lines

    def markdown(self) -> str:
        sections = [
            (f"{self.score} per task: mean [95% CI] over seeds (count when not every seed)",
             self.per_task()),
            (f"P({self.reference} > row) [95% CI] (seed-by-seed wins)", self.against_reference()),
            ("other pairs over all tasks", self.other_pairs()),
            ("IQM of min-max normalised scores [95% CI], average rank", self.aggregates()),
            ("diversity: min and max over tasks of the per-task mean over seeds",
             self.diversity_range()),
            ("best member's final config, median over seeds", self.best_configs()),
        ]  # fmt: skip
        return "\n".join(f"## {title}\n\n" + "\n".join(body) + "\n" for title, body in sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a results folder (gpbt bench SUITE --results FOLDER)")
    parser.add_argument("--reference", help="the row the P(reference > row) table is about "
                        "(default: the suite's reference)")  # fmt: skip
    args = parser.parse_args(argv)
    print(Tables(args.folder, args.reference).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
