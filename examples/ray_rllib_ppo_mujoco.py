"""The paper's PPO experiment, redone on current Ray: RLlib PPO on a Gymnasium MuJoCo task,
tuned by gpbt under Ray Tune. Every method gets the same search space (PAPER.md's seven PPO
hyperparameters), population, budget and seed.

    python examples/ray_rllib_ppo_mujoco.py --method gpbt-pl --env HalfCheetah-v5
    python examples/ray_rllib_ppo_mujoco.py --method pbt --address auto   # on a cluster
    python examples/ray_rllib_ppo_mujoco.py --tiny                         # a 1-minute smoke run

`--tiny` keeps the parameter names but shrinks batch sizes, epochs, network and budget so the
run finishes in about a minute on 2 CPUs (what tests/test_ray_tune.py runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import ray
from ray import tune
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

from gpbt.integrations.ray_tune import GPBTScheduler
from gpbt.space import Choice, Float, Int

# PAPER.md: GAE lambda [0.9, 1], clip [0.1, 0.5], lr [1e-5, 1e-3], train batch size
# [1000, 60000], gamma [0.95, 1], SGD epochs [5, 15], minibatch size {16..256}.
PAPER_SPACE = {
    "lambda": Float(0.9, 1.0),
    "clip_param": Float(0.1, 0.5),
    "lr": Float(1e-5, 1e-3, log=True),
    "train_batch_size_per_learner": Int(1000, 60000),
    "gamma": Float(0.95, 1.0),
    "num_epochs": Int(5, 15),
    "minibatch_size": Choice([16, 32, 64, 128, 256]),
}
TINY_SPACE = {
    **PAPER_SPACE,
    "train_batch_size_per_learner": Int(200, 400),
    "num_epochs": Int(1, 2),
    "minibatch_size": Choice([64, 128]),
}
METRIC = "env_runners/episode_return_mean"
TIME_ATTR = "num_env_steps_sampled_lifetime"
LR_SEEN = "learners/default_policy/default_optimizer_learning_rate"


class ConfigWinsPPOLearner(PPOTorchLearner):
    """Restoring a checkpoint loads the optimiser's param_groups, lr included, from the donor;
    the member's own (new) lr must win, or the first iteration after an exploit would still
    train at the donor's lr."""

    def _set_optimizer_state(self, state):
        super()._set_optimizer_state(state)
        for module_id in self.module.keys():
            lr = self.config.get_config_for_module(module_id).lr
            if isinstance(lr, int | float):
                for _, optim in self.get_optimizers_for_module(module_id):
                    for group in optim.param_groups:
                        group["lr"] = float(lr)


def param_space(env: str, tiny: bool, num_env_runners: int) -> dict:
    config = (
        PPOConfig()
        .environment(env, env_config={"max_episode_steps": 100} if tiny else {})
        .env_runners(num_env_runners=num_env_runners)
        .learners(learner_class=ConfigWinsPPOLearner)
        .debugging(seed=0)
    )
    if tiny:
        config = config.rl_module(model_config={"fcnet_hiddens": [32, 32]})
    d = config.to_dict()
    # the searched names are filled in per trial; drop RLlib's private spellings of them
    for name in PAPER_SPACE:
        d.pop(name, None)
        d.pop("_" + name, None)
    return d


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="gpbt-pl", choices=["gpbt-pl", "pbt", "pb2", "random"])
    p.add_argument("--pairing", default="random", choices=["random", "sync", "truncation"])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--total-steps", type=float, default=2e6, help="env steps per member")
    p.add_argument("--interval", type=float, default=5e4, help="env steps between decisions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-env-runners", type=int, default=0)
    p.add_argument("--folder", default="runs/ray-ppo-mujoco")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: local)")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes (about a minute)")
    args = p.parse_args(argv)
    if args.tiny:
        args.population, args.total_steps, args.interval = 2, 1500, 300

    if __name__ != "__main__":
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    space = TINY_SPACE if args.tiny else PAPER_SPACE
    scheduler = GPBTScheduler(
        args.method,
        space,
        time_attr=TIME_ATTR,
        metric=METRIC,
        mode="max",
        perturbation_interval=args.interval,
        max_time=args.total_steps,
        seed=args.seed,
        options={"pairing": args.pairing} if args.method == "gpbt-pl" else None,
        store=args.folder,
        store_metrics=(LR_SEEN,),
        experiment_config={
            "engine": "ray",
            "trainable": "rllib:PPO",
            "env": args.env,
            "method": args.method,
            "population": args.population,
            "total_steps": args.total_steps,
            "perturbation_interval": args.interval,
            "time_attr": TIME_ATTR,
            "metric": METRIC,
            "mode": "max",
            "seed": args.seed,
            "space": {k: v for k, v in _space_dict(space).items()},
        },
    )
    try:
        grid = tune.Tuner(
            "PPO",
            param_space=param_space(args.env, args.tiny, args.num_env_runners),
            tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=args.population),
            run_config=tune.RunConfig(
                storage_path=str(Path(args.folder).resolve() / "ray"),
                verbose=0 if args.tiny else 1,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=4),
            ),
        ).fit()
    finally:
        scheduler.close()
        if started:
            ray.shutdown()
    return _summary(args, scheduler, grid)


def _space_dict(space) -> dict:
    from gpbt.space import Space

    return Space(space).to_dict()


def _summary(args, scheduler, grid) -> dict:
    scores = {}
    for r in grid:
        s = (r.metrics or {}).get("env_runners", {}).get("episode_return_mean")
        if s is not None and s == s:
            scores[r.path] = s
    summary = {
        "method": args.method,
        "env": args.env,
        "best_score": max(scores.values()) if scores else None,
        "errors": sum(r.error is not None for r in grid),
        **scheduler.stats(),
    }
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
