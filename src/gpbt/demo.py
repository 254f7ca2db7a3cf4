"""`gpbt demo`: every method on both toys over many seeds, in seconds, with no engine.

Seed s gives every method the same initial population and the same toy noise (common random
numbers), so "wins vs random" is a paired comparison, seed by seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpbt.core.methods import make_scheduler
from gpbt.engines.toys import TOYS, run_toy

DEMO_METHODS = [
    ("gpbt-pl", {}),
    ("gpbt-pl (sync)", {"pairing": "sync"}),
    ("pbt", {}),
    ("pb2", {}),
    ("random", {}),
]


@dataclass
class DemoRow:
    toy: str
    method: str
    mean: float
    stderr: float
    win_rate_vs_random: float
    mean_final_diversity: float
    exploits: float


def run_demo(seeds: int = 30, population: int = 8, methods=None) -> list[DemoRow]:
    rows: list[DemoRow] = []
    for toy_name, toy_cls in TOYS.items():
        toy = toy_cls()
        results: dict[str, tuple[np.ndarray, float, float]] = {}
        for label, options in methods or DEMO_METHODS:
            method = label.split(" ")[0]
            best, div, exploits = [], [], []
            for s in range(seeds):
                sched = make_scheduler(
                    method, toy.space, perturbation_interval=toy.interval, seed=s, options=options
                )
                res = run_toy(toy, sched, population, s)
                best.append(res.best_score)
                div.append(res.diversity[-1])
                exploits.append(res.exploits)
            results[label] = (np.array(best), float(np.mean(div)), float(np.mean(exploits)))
        baseline = results.get("random", (None,))[0]
        for label, (best, div, exploits) in results.items():
            win = float(np.mean(best > baseline)) if baseline is not None else float("nan")
            rows.append(
                DemoRow(
                    toy_name,
                    label,
                    float(best.mean()),
                    float(best.std(ddof=1) / np.sqrt(len(best))) if len(best) > 1 else 0.0,
                    win,
                    div,
                    exploits,
                )
            )
    return rows
