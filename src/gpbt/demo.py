"""`gpbt demo`: every method on both toys over many seeds, in seconds, with no engine.

Seed s gives every method the same initial population and the same toy noise (common random
numbers), so "wins vs random" is a paired comparison, seed by seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpbt.core.methods import get_method, make_scheduler, tuning_methods
from gpbt.engines.toys import TOYS, run_toy


def demo_methods() -> list[tuple[str, dict]]:
    """Every registered method that tunes, as (label, options); a method that pairs members
    (not a named variant of one) also with its pairs decided in lockstep: "gpbt-pl (sync)"."""
    out: list[tuple[str, dict]] = []
    for name in tuning_methods():
        out.append((name, {}))
        method = get_method(name)
        if method.is_plain and "pairing" in method.options():
            out.append((f"{name} (sync)", {"pairing": "sync"}))
    return out


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
        for label, options in methods or demo_methods():
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
