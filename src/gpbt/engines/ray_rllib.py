"""RLlib experiment scripts on the Ray engine: the paper-style command line and its run.

`rllib_experiment_arguments` is the command line the paper's experiment scripts share
(examples/ray_rllib_*.py); `run_rllib_experiment` turns the parsed arguments, an algorithm's
fixed config and a search space into a `gpbt run` config for the Ray engine and runs it, so
a script for another algorithm or environment is a few lines (docs/ray.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

# The engine before ray itself, for the same reason as there: without Ray, its import of the
# integration says how to install it instead of a bare ModuleNotFoundError.
from gpbt.engines.ray import _names, run_ray

# isort: split
import ray

from gpbt.core.methods import get_method, tuning_methods
from gpbt.core.space import Space

# RLlib's new API stack reports these; the paper's experiments use env steps as time.
RLLIB_METRIC = "env_runners/episode_return_mean"
RLLIB_TIME_ATTR = "num_env_steps_sampled_lifetime"


def rllib_experiment_arguments(
    description: str | None,
    *,
    env: str,
    total_steps: float,
    folder: str,
    argv: list[str] | None = None,
    env_flag: str = "--env",
):
    """The command line every paper-style RLlib experiment script takes: --method, --pairing,
    the env (`env_flag`, parsed into `args.env`), --population, --total-steps, --interval,
    --seed, --num-env-runners, --folder, --address and --tiny."""
    import argparse

    first_line = (description or "").strip().splitlines()[:1]
    p = argparse.ArgumentParser(description=first_line[0] if first_line else None)
    p.add_argument("--method", default="gpbt-pl", choices=tuning_methods())
    p.add_argument(
        "--pairing",
        default="random",
        choices=["random", "sync", "truncation"],
        help="for the methods that pair members (gpbt-pl and its variants)",
    )
    p.add_argument(env_flag, dest="env", default=env)
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--total-steps", type=float, default=total_steps, help="env steps per member")
    p.add_argument("--interval", type=float, default=5e4, help="env steps between decisions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-env-runners", type=int, default=0)
    p.add_argument("--folder", default=folder)
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: local)")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes (about a minute)")
    return p.parse_args(argv)


def run_rllib_experiment(
    args,
    algorithm: str,
    env: str,
    param_space: Mapping[str, Any],
    space: Mapping[str, Any] | Space,
    store_metrics: tuple[str, ...] | list[str] = (),
    module: Any = None,
    env_creator: Callable[[dict], Any] | None = None,
) -> dict[str, Any]:
    """Tune an RLlib algorithm with gpbt from a script's parsed arguments (see
    `rllib_experiment_arguments`): every method gets the same space, population, budget and
    seed. `param_space` is the algorithm's fixed config (AlgorithmConfig.to_dict() without the
    searched names); `module`, the script's module, is shipped to Ray's workers by value when
    it was imported rather than run (its learner classes and env creators live there);
    `env_creator`, if given, is registered under the name `env` (after the module is set to
    travel by value, or the workers could not unpickle it)."""
    if module is not None and module.__name__ != "__main__":
        ray.cloudpickle.register_pickle_by_value(module)
    if env_creator is not None:
        from ray import tune

        tune.register_env(env, env_creator)
    space = space if isinstance(space, Space) else Space(space)
    config: dict[str, Any] = {
        "engine": "ray",
        "trainable": f"rllib:{algorithm}",
        "env": env,
        "param_space": dict(param_space),
        "method": args.method,
        "population": args.population,
        "total_steps": args.total_steps,
        "perturbation_interval": args.interval,
        "time_attr": RLLIB_TIME_ATTR,
        "metric": RLLIB_METRIC,
        "mode": "max",
        "seed": args.seed,
        "space": space.to_dict(),
        "num_to_keep": 4,
        "store_metrics": list(_names(store_metrics, "store_metrics")),
    }
    if args.address:
        config["address"] = args.address
    if "pairing" in get_method(args.method).options():
        config[args.method] = {"pairing": args.pairing}
    summary = run_ray(config, args.folder)
    print(json.dumps(summary, indent=2, default=str))
    return summary
