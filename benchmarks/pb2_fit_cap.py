"""Does capping PB2's GP fit at 40 likelihood evaluations change its decisions' quality?

    python benchmarks/pb2_fit_cap.py [--seeds 30]

Runs PB2 (population 8) on the toy problems with the capped fit (gpbt's default) and with an
uncapped one (iterations capped only), seed by seed, and prints the mean best score of each and
how many paired seeds came out identical.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.optimize import minimize

import gpbt.core.pb2 as pb2
from gpbt.core.methods import make_scheduler
from gpbt.engines.toys import MovingOptimumToy, QuadraticToy, run_toy


def _uncapped(obj, theta, bounds):
    r = minimize(obj, theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": 30})
    return r.x, r.fun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    capped = pb2._bounded_lbfgs
    try:
        for toy_cls in (QuadraticToy, MovingOptimumToy):
            best = {}
            for name, optimiser in (("capped", capped), ("uncapped", _uncapped)):
                pb2._bounded_lbfgs = optimiser  # the one optimiser PB2Explore's fits call
                scores = []
                for seed in range(args.seeds):
                    toy = toy_cls()
                    sched = make_scheduler(
                        "pb2", toy.space, perturbation_interval=toy.interval, seed=seed
                    )
                    scores.append(run_toy(toy, sched, 8, seed).best_score)
                best[name] = np.array(scores)
            same = int((best["capped"] == best["uncapped"]).sum())
            print(
                f"{toy_cls.__name__}: capped {best['capped'].mean():.4f}, uncapped "
                f"{best['uncapped'].mean():.4f}, identical on {same}/{args.seeds} seeds"
            )
    finally:
        pb2._bounded_lbfgs = capped


if __name__ == "__main__":
    main()
