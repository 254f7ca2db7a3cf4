"""Scheduler cost: decision latency per method and population size, and PB2's fit time.

    python benchmarks/bench_scheduler.py --out scheduler.json

A decision = one `on_ready` call of an asynchronous engine (pairing, the update strategy and
the decision record), on the paper's seven-hyperparameter PPO space, with random scores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from gpbt.core.methods import make_scheduler
from gpbt.core.pb2 import PB2Explore
from gpbt.core.space import Choice, Float, Int, Space
from gpbt.core.strategies import ExploreContext

SPACE = Space(
    {
        "gae_lambda": Float(0.9, 1.0),
        "clip": Float(0.1, 0.5),
        "lr": Float(1e-5, 1e-3, log=True),
        "train_batch_size": Int(1000, 60000, log=True),
        "gamma": Float(0.95, 1.0),
        "num_epochs": Int(5, 15),
        "minibatch_size": Choice([16, 32, 64, 128, 256]),
    }
)


def decision_latency(method: str, population: int, decisions: int) -> dict:
    sched = make_scheduler(method, SPACE, perturbation_interval=1, seed=0)
    sched.initial_population(population)
    rng = np.random.default_rng(0)
    for m in range(population):  # everyone has a score, so every decision has partners
        sched.report(m, 0, float(rng.normal()))
    times = []
    for k in range(decisions):
        member = int(rng.integers(population))
        t = 1 + k // population
        score = float(rng.normal() + 0.01 * t)
        start = time.perf_counter()
        sched.on_ready(member, t, score)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return {
        "method": method,
        "population": population,
        "decisions": decisions,
        "median_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def pb2_fit_time(points: int, repeats: int = 5) -> dict:
    rng = np.random.default_rng(0)
    times = []
    for _ in range(repeats):
        pb2 = PB2Explore(data_window=points)
        pb2.check_space(SPACE)
        for i in range(points):
            cfg = SPACE.sample(rng)
            pb2.observe(0, i + 1, i, float(rng.normal()), float(rng.normal()), cfg)
        pop = {j: (SPACE.sample(rng), float(rng.normal())) for j in range(8)}
        ctx = ExploreContext(
            space=SPACE,
            rng=rng,
            time=points + 1.0,
            loser=0,
            winner=1,
            loser_config=pop[0][0],
            winner_config=pop[1][0],
            loser_state={},
            winner_score=pop[1][1],
            population=pop,
        )
        start = time.perf_counter()
        pb2.explore(ctx)  # a fresh fit (new data) plus the UCB maximisation
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return {"points": points, "median_ms": float(np.median(ms)), "max_ms": float(ms.max())}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    args = p.parse_args()
    rows = []
    for method in ("gpbt-pl", "gpbt-pl-escape", "pbt", "random", "pb2"):
        for population in (8, 64, 256):
            n = 200 if method == "pb2" else 2000
            row = decision_latency(method, population, n)
            rows.append(row)
            print(json.dumps(row), flush=True)
    fits = []
    for points in (16, 32, 64, 128):
        row = pb2_fit_time(points)
        fits.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "decisions": rows,
        "pb2_fit": fits,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
