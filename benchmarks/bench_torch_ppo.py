"""The PyTorch baseline for the vector engine: Stable-Baselines3 PPO (PyTorch) on CartPole-v1.

    python benchmarks/bench_torch_ppo.py --steps 50000

Trains one member with the same PPO settings as the vector engine's discrete defaults (16 envs,
batch 512, 4 epochs, minibatch 128, 64x64 MLP) and reports env-steps/s. Trained member by member,
a population of 8 runs at this same total rate (each member alone, one after another), which is
what the vector engine's population throughput is compared against.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=50_000)
    args = p.parse_args()
    torch.set_num_threads(1)  # one member per core is how a population would be spread
    env = make_vec_env("CartPole-v1", n_envs=16, seed=0)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=128,
        n_epochs=4,
        learning_rate=1e-3,
        ent_coef=0.01,
        seed=0,
        device="cpu",
        verbose=0,
    )
    model.learn(2_048)  # warm-up: first allocations and imports
    start = time.perf_counter()
    model.learn(args.steps, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "library": "stable-baselines3 (PyTorch)",
                "env": "CartPole-v1",
                "steps": args.steps,
                "env_steps_per_s": args.steps / elapsed,
                "torch_threads": 1,
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


if __name__ == "__main__":
    main()
