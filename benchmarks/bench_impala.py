"""IMPALA in the vector engine: throughput against PPO, and learning curves, on MinAtar.

Measures (prints one JSON document; ``--out FILE`` also writes it):

* ``throughput``: env steps per second of a population of ``--population`` (8) members training
  on MinAtar Breakout, IMPALA (default config) against PPO (default config), in the same process
  and the same engine call (``agent.train``). The two agents alternate, ``--repeats`` timed calls
  each after a warm-up call that compiles, so a change in the machine's load hits both alike;
  the best and the median call are reported. The machine is shared, so the load average is
  recorded with the numbers.
* ``curves``: mean training-episode return every ``--chunk`` env steps of single agents (each
  seed is an independent member of one population, which the engine trains exactly as it would
  alone) for ``--curve-steps`` steps: IMPALA at its defaults (the IMPALA paper's Atari settings,
  actor lag 2) and with ``lr = 3e-3``, and PPO at its defaults. We found no published MinAtar
  learning curve for IMPALA to compare with, so PPO is the reference. A final evaluation (32
  episodes, each agent's own evaluate) closes each curve.

Run: ``python benchmarks/bench_impala.py`` (about 10 minutes on 2 CPU cores);
``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gpbt.rl.envs import make_env
from gpbt.rl.impala import IMPALA, IMPALAConfig
from gpbt.rl.ppo import PPO, PPOConfig


def _init(agent, seed: int, population: int):
    # Member by member, then stacked: vmapping the orthogonal initialiser's QR over members has
    # deadlocked XLA's CPU runtime on this machine (see gpbt.rl.impala.IMPALA.init), and PPO.init
    # still vmaps it. The training programs are unaffected.
    parts = [agent.init(jax.random.key(seed * 1000 + i), 1) for i in range(population)]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


def throughput(env_name: str, population: int, steps: int, repeats: int) -> dict:
    env = make_env(env_name)
    agents = {"impala": IMPALA(env, IMPALAConfig()), "ppo": PPO(env, PPOConfig())}
    states, out = {}, {}
    for name, agent in agents.items():
        state = _init(agent, 0, population)
        hp = agent.hyperparameters_to_arrays([{}] * population)
        t0 = time.perf_counter()
        state, m = agent.train(state, hp, steps)
        jax.block_until_ready(m)
        states[name] = (state, hp)
        out[name] = {"first_call_s": round(time.perf_counter() - t0, 2), "steps_per_s": []}
    for _ in range(repeats):
        for name, agent in agents.items():
            state, hp = states[name]
            t0 = time.perf_counter()
            state, m = agent.train(state, hp, steps)
            m = jax.device_get(m)
            dt = time.perf_counter() - t0
            states[name] = (state, hp)
            out[name]["steps_per_s"].append(round(float(np.sum(m["env_steps"])) / dt))
    for name in agents:
        sps = out[name]["steps_per_s"]
        out[name]["best_steps_per_s"] = max(sps)
        out[name]["median_steps_per_s"] = round(statistics.median(sps))
    out["impala_over_ppo_median"] = round(
        out["impala"]["median_steps_per_s"] / out["ppo"]["median_steps_per_s"], 2
    )
    out["config"] = {
        "env": env_name,
        "population": population,
        "env_steps_per_member_per_call": steps,
        "repeats": repeats,
        "impala": {"num_envs": 32, "unroll_length": 20, "actor_lag": 2, "hidden": [64, 64]},
        "ppo": "PPOConfig() defaults, default discrete hyperparameters",
    }
    return out


def curve(agent, hps: list[dict], seeds: int, total: int, chunk: int) -> dict:
    population = len(hps) * seeds
    state = _init(agent, 1, population)
    hp = agent.hyperparameters_to_arrays([h for h in hps for _ in range(seeds)])
    steps, returns, t0 = [], [[] for _ in hps], time.perf_counter()
    for i in range(total // chunk):
        state, m = agent.train(state, hp, chunk)
        ret = np.asarray(jax.device_get(m["episode_return"]), float)
        steps.append((i + 1) * chunk)
        for j in range(len(hps)):
            returns[j].append(round(float(np.nanmean(ret[j * seeds : (j + 1) * seeds])), 2))
    wall = time.perf_counter() - t0
    final = np.asarray(agent.evaluate(state, jax.random.key(123), 32), float)
    return {
        "hyperparameters": hps,
        "seeds": seeds,
        "wall_s": round(wall, 1),
        "env_steps": steps,
        "mean_train_return": returns,  # one curve per hyperparameter set, mean over seeds
        "final_eval_return": [
            [round(float(x), 2) for x in final[j * seeds : (j + 1) * seeds]]
            for j in range(len(hps))
        ],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Breakout-MinAtar")
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--steps", type=int, default=50_000, help="env steps per member per call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--curve-steps", type=int, default=3_000_000)
    p.add_argument("--chunk", type=int, default=250_000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--skip-curves", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.curve_steps, args.chunk = 5_000, 1, 20_000, 10_000
    result = {
        "benchmark": "impala",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "loadavg_start": os.getloadavg()[0],
        },
        "throughput": throughput(args.env, args.population, args.steps, args.repeats),
    }
    if not args.skip_curves:
        env = make_env(args.env)
        result["curves"] = {
            "env": args.env,
            "impala": curve(
                IMPALA(env), [{}, {"lr": 3e-3}], args.seeds, args.curve_steps, args.chunk
            ),
            "ppo": curve(PPO(env), [{}], args.seeds, args.curve_steps, args.chunk),
        }
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=1)
    # Keep number lists on one line each.
    text = re.sub(
        r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
