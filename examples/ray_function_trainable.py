"""GPBT-PL on Ray Tune with a plain function trainable.

    python examples/ray_function_trainable.py --method gpbt-pl --population 8 --steps 60
    gpbt report runs/ray-function          # the store works as for any gpbt run

What a function trainable needs for population training under Tune:
- restore from `tune.get_checkpoint()` when it starts (an exploit restarts it from the
  donor's checkpoint with the new config);
- pass `checkpoint=` to `tune.report()` (here on every report; at least once per
  perturbation_interval), because gpbt takes a member's checkpoint when it is ready.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import zlib
from pathlib import Path

import ray
from ray import tune

from gpbt.core.space import Choice, Float
from gpbt.integrations.ray_tune import GPBTScheduler

SPACE = {
    "lr": Float(1e-4, 1e-1, log=True),
    "momentum": Float(0.0, 0.99),
    "batch": Choice([16, 32, 64, 128]),
}


def train_quadratic(config):
    """SGD with momentum on a noisy 1-d quadratic: the loss falls fastest for a middling lr
    and a large momentum, so there is something to tune."""
    rng_seed = zlib.crc32(tune.get_context().get_trial_id().encode())
    state = {"w": 5.0, "v": 0.0, "step": 0}
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            state = json.loads(Path(d, "state.json").read_text())
    noise = 1.0 / math.sqrt(config["batch"])
    while True:
        state["step"] += 1
        grad = 2 * state["w"] + noise * math.sin(rng_seed + state["step"])
        state["v"] = config["momentum"] * state["v"] - config["lr"] * grad
        state["w"] += state["v"]
        with tempfile.TemporaryDirectory() as d:
            Path(d, "state.json").write_text(json.dumps(state))
            tune.report(
                {"score": -(state["w"] ** 2), "step": state["step"]},
                checkpoint=tune.Checkpoint.from_directory(d),
            )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="gpbt-pl", choices=["gpbt-pl", "pbt", "pb2", "random"])
    p.add_argument("--pairing", default="random", choices=["random", "sync", "truncation"])
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--steps", type=int, default=60, help="training_iteration budget per member")
    p.add_argument("--interval", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folder", default="runs/ray-function")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: local)")
    args = p.parse_args(argv)

    if __name__ != "__main__":
        # imported (by a test, a notebook): Ray's workers cannot import this file by name
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    scheduler = GPBTScheduler(
        args.method,
        SPACE,
        time_attr="training_iteration",
        perturbation_interval=args.interval,
        max_time=args.steps,
        seed=args.seed,
        options={"pairing": args.pairing} if args.method == "gpbt-pl" else None,
        store=args.folder,
    )
    try:
        grid = tune.Tuner(
            train_quadratic,
            tune_config=tune.TuneConfig(
                scheduler=scheduler,
                metric="score",
                mode="max",
                num_samples=args.population,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                storage_path=str(Path(args.folder).resolve() / "ray"), verbose=0
            ),
        ).fit()
    finally:
        scheduler.close()
        if started:
            ray.shutdown()
    best = grid.get_best_result(metric="score", mode="max", scope="last")
    summary = {
        "method": args.method,
        "best_score": best.metrics["score"],
        "best_config": {k: best.config[k] for k in SPACE},
        **scheduler.stats(),
    }
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
