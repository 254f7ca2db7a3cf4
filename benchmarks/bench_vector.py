"""Vector-engine throughput: env-steps/s of a PPO population, with and without exploits.

    python benchmarks/bench_vector.py --env CartPole-v1 --population 8 --out results.json

Three runs per env, each a real `VectorRun` (store, scheduler, checkpoints included):
  - gpbt-pl: GPBT-PL deciding (and usually exploiting) at every interval,
  - no-exploit: the same engine with method "random" (no exploit ever),
  - alone: one member, no scheduler decisions.
The first generation (which compiles) is excluded from the throughput; compilation counts and
the share of wall time spent on population management (scheduler + gather + store + checkpoint)
are reported. Absolute numbers depend on the machine: quote them with its name.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time

from gpbt.config import validate_config
from gpbt.engines.vector import VectorRun, _enable_compilation_cache

SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    "clip": {"type": "float", "low": 0.1, "high": 0.4},
    "gae_lambda": {"type": "float", "low": 0.9, "high": 1.0},
    "gamma": {"type": "float", "low": 0.95, "high": 0.999},
}


def measure(
    env: str, method: str, population: int, interval: int, generations: int, agent_options: dict
) -> dict:
    cfg = validate_config(
        {
            "env": env,
            "method": method,
            "population": population,
            "total_steps": interval * generations,
            "perturbation_interval": interval,
            "seed": 0,
            "space": SPACE,
            "final_eval_episodes": 1,
            "agent_options": agent_options,
        }
    )
    events = []
    folder = tempfile.mkdtemp(prefix="gpbt-bench-")
    try:
        run = VectorRun(cfg, folder, emit=events.append)
        start = time.perf_counter()
        summary = run.run()
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    gens = [e for e in events if e["type"] == "generation"][1:]  # drop the compiling one
    train = sum(e["train_s"] for e in gens)
    manage = sum(e["manage_s"] for e in gens)
    steps = population * interval * len(gens)
    return {
        "env": env,
        "method": method,
        "population": population,
        "interval": interval,
        "generations_timed": len(gens),
        "env_steps_per_s": steps / (train + manage),
        "train_only_env_steps_per_s": steps / train,
        "management_share": manage / (train + manage),
        "exploits": summary["exploits"],
        "compilations": summary["compilations_during_run"],
        "wall_s_incl_compile": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", action="append", default=None)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--interval", type=int, default=100_000)
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--out")
    args = p.parse_args()
    _enable_compilation_cache()
    rows = []
    for env in args.env or ["CartPole-v1", "Breakout-MinAtar"]:
        for method, pop in (
            ("gpbt-pl", args.population),
            ("random", args.population),
            ("random", 1),
        ):
            row = measure(env, method, pop, args.interval, args.generations, {})
            row["label"] = {
                ("gpbt-pl", args.population): "gpbt-pl",
                ("random", args.population): "no-exploit",
                ("random", 1): "alone",
            }[(method, pop)]
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "machine": f"{platform.node()} {platform.processor()} {__import__('os').cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    for env in sorted({r["env"] for r in rows}):
        by = {r["label"]: r for r in rows if r["env"] == env}
        ratio = by["gpbt-pl"]["env_steps_per_s"] / by["no-exploit"]["env_steps_per_s"]
        print(
            f"{env}: gpbt-pl {by['gpbt-pl']['env_steps_per_s']:,.0f}/s, no-exploit "
            f"{by['no-exploit']['env_steps_per_s']:,.0f}/s, alone "
            f"{by['alone']['env_steps_per_s']:,.0f}/s, management "
            f"{100 * by['gpbt-pl']['management_share']:.2f}% of wall time, ratio "
            f"gpbt-pl/no-exploit {ratio:.3f}"
        )


if __name__ == "__main__":
    main()
