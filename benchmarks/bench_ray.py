"""gpbt on Ray Tune side by side with Ray's own schedulers, and with gpbt's local engine.

    python benchmarks/bench_ray.py [--quick] [--seeds 3] [--out results.json]

One trainable for every run: the moving-optimum toy (progress per step is largest when lr
sits near an optimum that drifts from high to low during training, so a schedule beats any
constant). A step costs microseconds, so wall time is the framework's. Population 8,
`steps` reports per member, perturbation interval `interval`; the same 8 initial configs
(gpbt's seeded draw for that seed) for every scheduler; `lr` in [1e-4, 1e-1], log scale.

Runs per seed: Tune FIFO (no scheduler; also the "random search" control, since it keeps the
initial configs), Tune `PopulationBasedTraining`, Tune `PB2`, gpbt GPBT-PL on Tune; for the
first seed also gpbt's local engine (2 worker processes). Tune runs use `reuse_actors=True`.

Reported per run: wall time; per-report overhead against FIFO ((wall - FIFO wall) / reports);
scheduler time (inside on_trial_result + choose_trial_to_run) per report and per decision
(ready event); exploits; final best and mean score. Prints one JSON object.

`--slots` sets how many trials run at once (Ray CPUs, one per trial): 8 (default) runs the
whole population at once and measures the scheduler alone; 2 adds the cost of fair
time-multiplexing (pause, checkpoint, restore) that population methods need on a small machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ray import tune

from gpbt.engines.trainable import Trainable

LOW, HIGH = 1e-4, 1e-1


def unit(lr: float) -> float:
    return (math.log(lr) - math.log(LOW)) / (math.log(HIGH) - math.log(LOW))


def gain(lr: float, t: int, steps: int, rng: np.random.Generator) -> float:
    opt = 0.85 - 0.7 * t / steps
    return math.exp(-((unit(lr) - opt) ** 2) / (2 * 0.15**2)) + 0.02 * rng.standard_normal()


class MovingOptimum(tune.Trainable):
    def setup(self, config):
        self.lr, self.steps = config["lr"], config["steps"]
        self.x, self.t = 0.0, 0
        self.rng = np.random.default_rng(config.get("noise_seed", 0))

    def step(self):
        self.t += 1
        self.x += gain(self.lr, self.t, self.steps, self.rng)
        return {"score": self.x}

    def save_checkpoint(self, d):
        Path(d, "s.json").write_text(json.dumps([self.x, self.t]))

    def load_checkpoint(self, d):
        self.x, self.t = json.loads(Path(d, "s.json").read_text())

    def reset_config(self, config):
        self.lr = config["lr"]
        return True


class LocalMovingOptimum(Trainable):
    """The same toy for gpbt's local engine (its Trainable API: save/restore)."""

    def setup(self, config):
        self.lr, self.steps = config["lr"], config["steps"]
        self.x, self.t = 0.0, 0
        self.rng = np.random.default_rng(self.seed or 0)

    def step(self):
        self.t += 1
        self.x += gain(self.lr, self.t, self.steps, self.rng)
        return {"score": self.x, "training_iteration": self.t}

    def save(self, d):
        Path(d, "s.json").write_text(json.dumps([self.x, self.t]))

    def restore(self, d):
        self.x, self.t = json.loads(Path(d, "s.json").read_text())

    def reset_config(self, config):
        self.lr = config["lr"]
        return True


def timed(cls):
    """Subclass a Tune scheduler so the time spent in it is measured the same way for all."""

    class Timed(cls):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.bench_seconds = 0.0
            self.bench_results = 0
            self.bench_ready = 0

        def on_trial_result(self, tc, trial, result):
            t0 = time.perf_counter()
            try:
                return super().on_trial_result(tc, trial, result)
            finally:
                self.bench_seconds += time.perf_counter() - t0
                self.bench_results += 1

        def choose_trial_to_run(self, tc):
            t0 = time.perf_counter()
            try:
                return super().choose_trial_to_run(tc)
            finally:
                self.bench_seconds += time.perf_counter() - t0

        # Ray's PBT/PB2: one call per ready event in asynchronous mode
        def _checkpoint_or_exploit(self, *a, **k):
            self.bench_ready += 1
            return super()._checkpoint_or_exploit(*a, **k)

    Timed.__name__ = cls.__name__
    return Timed


def initial_lrs(seed: int, population: int) -> list[float]:
    from gpbt.core.methods import make_scheduler
    from gpbt.core.space import Float

    core = make_scheduler(
        "gpbt-pl", {"lr": Float(LOW, HIGH, log=True)}, perturbation_interval=1, seed=seed
    )
    return [c["lr"] for c in core.initial_population(population)]


def run_tune(kind: str, seed: int, args, folder: Path) -> dict:
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler, PopulationBasedTraining
    from ray.tune.schedulers.pb2 import PB2

    from gpbt.core.space import Float
    from gpbt.integrations.ray_tune import GPBTScheduler

    lrs = initial_lrs(seed, args.population)
    stop = None
    if kind == "fifo":
        sched = timed(FIFOScheduler)()
        stop = {"training_iteration": args.steps}
    elif kind == "tune-pbt":
        sched = timed(PopulationBasedTraining)(
            time_attr="training_iteration",
            perturbation_interval=args.interval,
            hyperparam_mutations={"lr": tune.loguniform(LOW, HIGH)},
            quantile_fraction=0.25,
            resample_probability=0.25,
            log_config=False,
        )
        stop = {"training_iteration": args.steps}
    elif kind == "tune-pb2":
        sched = timed(PB2)(
            time_attr="training_iteration",
            perturbation_interval=args.interval,
            hyperparam_bounds={"lr": [LOW, HIGH]},
            quantile_fraction=0.25,
            log_config=False,
        )
        stop = {"training_iteration": args.steps}
    elif kind == "gpbt-pl":
        sched = timed(GPBTScheduler)(
            "gpbt-pl",
            {"lr": Float(LOW, HIGH, log=True)},
            time_attr="training_iteration",
            perturbation_interval=args.interval,
            max_time=args.steps,
            seed=seed,
            store=folder / f"store-{kind}-{seed}",
        )
    else:
        raise ValueError(kind)
    # Ray's PBT draws with Python's `random`; seed it so its runs repeat too.
    import random

    random.seed(seed)
    np.random.seed(seed)
    t0 = time.perf_counter()
    # Tune prints its settings table on stdout even at verbose=0; stdout is for our JSON.
    with contextlib.redirect_stdout(sys.stderr):
        grid = _fit(sched, lrs, seed, args, folder, kind, stop)
    wall = time.perf_counter() - t0
    if kind == "gpbt-pl":
        sched.close()
    return _finish(kind, sched, grid, seed, wall)


def _fit(sched, lrs, seed, args, folder, kind, stop):
    return tune.Tuner(
        tune.with_resources(MovingOptimum, {"cpu": 1}),
        param_space={
            "lr": tune.grid_search(lrs),
            "steps": args.steps,
            "noise_seed": seed,
        },
        tune_config=tune.TuneConfig(
            scheduler=sched, metric="score", mode="max", num_samples=1, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            storage_path=str(folder / "ray"),
            name=f"{kind}-{seed}",
            stop=stop,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    ).fit()


def _finish(kind, sched, grid, seed, wall):
    finals = [r.metrics.get("score", float("nan")) for r in grid]
    reports = sched.bench_results
    if kind == "gpbt-pl":
        decisions, exploits = sched.num_decisions, sched.num_exploits
    elif kind == "fifo":
        decisions, exploits = 0, 0
    else:
        decisions, exploits = sched.bench_ready, sched._num_perturbations
    return {
        "scheduler": kind,
        "seed": seed,
        "wall_s": wall,
        "reports": reports,
        "scheduler_s": sched.bench_seconds,
        "scheduler_ms_per_report": 1e3 * sched.bench_seconds / max(reports, 1),
        "decisions": decisions,
        "scheduler_ms_per_decision": (1e3 * sched.bench_seconds / decisions if decisions else None),
        "exploits": exploits,
        "final_best": max(finals),
        "final_mean": statistics.fmean(finals),
        "errors": sum(r.error is not None for r in grid),
    }


def run_local(seed: int, args, folder: Path) -> dict:
    from gpbt.core.methods import make_scheduler
    from gpbt.core.space import Float
    from gpbt.engines.local import LocalEngine

    sched = make_scheduler(
        "gpbt-pl",
        {"lr": Float(LOW, HIGH, log=True)},
        perturbation_interval=args.interval,
        seed=seed,
        max_time=args.steps,
    )
    engine = LocalEngine(
        LocalMovingOptimum,
        sched,
        folder / f"local-{seed}",
        population=args.population,
        workers=2,
        total_steps=args.steps,
        time_attr="training_iteration",
        metric="score",
        trainable_options={"steps": args.steps},
        seed=seed,
    )
    t0 = time.perf_counter()
    summary = engine.run()
    wall = time.perf_counter() - t0
    from gpbt.store import load

    r = load(folder / f"local-{seed}").reports
    last = r.sort_values("time").groupby("member").last()["score"]
    return {
        "scheduler": "gpbt-pl (local engine, 2 workers)",
        "seed": seed,
        "wall_s": wall,
        "reports": int(len(r)),
        "exploits": summary.get("exploits"),
        "final_best": float(last.max()),
        "final_mean": float(last.mean()),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 60 steps (a smoke run)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--interval", type=int, default=20)
    p.add_argument("--slots", type=int, default=8, help="trials running at once (Ray CPUs)")
    p.add_argument("--no-local", action="store_true", help="skip the local-engine run")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.interval = 1, 60, 10

    import logging

    import ray

    # Ray Tune logs a warning per restored trial (result.json not synced yet); not ours.
    logging.getLogger("ray.tune.logger").setLevel(logging.ERROR)
    ray.init(num_cpus=args.slots, include_dashboard=False, log_to_driver=False)
    kinds = ["fifo", "tune-pbt", "tune-pb2", "gpbt-pl"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seed in range(args.seeds):
            for kind in kinds:
                runs.append(run_tune(kind, seed, args, folder))
                print(json.dumps(runs[-1]), file=sys.stderr)
        ray.shutdown()
        if not args.no_local:
            runs.append(run_local(0, args, folder))
            print(json.dumps(runs[-1]), file=sys.stderr)

    by_kind: dict[str, list[dict]] = {}
    for r in runs:
        by_kind.setdefault(r["scheduler"], []).append(r)
    fifo = {r["seed"]: r["wall_s"] for r in by_kind["fifo"]}
    summary = {}
    for kind, rs in by_kind.items():
        s = {
            "runs": len(rs),
            "wall_s_mean": statistics.fmean(r["wall_s"] for r in rs),
            "final_best_mean": statistics.fmean(r["final_best"] for r in rs),
            "final_mean_mean": statistics.fmean(r["final_mean"] for r in rs),
            "exploits_mean": statistics.fmean(r["exploits"] or 0 for r in rs),
        }
        overhead = [
            1e3 * (r["wall_s"] - fifo[r["seed"]]) / r["reports"]
            for r in rs
            if r["seed"] in fifo and r.get("scheduler_s") is not None
        ]
        if overhead:
            s["overhead_ms_per_report_vs_fifo"] = statistics.fmean(overhead)
        if rs[0].get("scheduler_s") is not None:
            s["scheduler_ms_per_report"] = statistics.fmean(
                r["scheduler_ms_per_report"] for r in rs
            )
            per_dec = [r["scheduler_ms_per_decision"] for r in rs if r["scheduler_ms_per_decision"]]
            if per_dec:
                s["scheduler_ms_per_decision"] = statistics.fmean(per_dec)
        summary[kind] = s
    import ray as _ray

    out = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "ray": _ray.__version__,
            "load_avg_1m": os.getloadavg()[0],
        },
        "settings": {
            "population": args.population,
            "steps": args.steps,
            "interval": args.interval,
            "slots": args.slots,
            "seeds": args.seeds,
        },
        "summary": summary,
        "runs": runs,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return out


if __name__ == "__main__":
    main()
