"""The paper's IMPALA experiment, redone on current Ray: RLlib IMPALA on an Atari game
(ale-py ships the ROMs), tuned by gpbt under Ray Tune with PAPER.md's search space (RMSProp
epsilon, entropy coefficient, learning rate), the same for every method.

    python examples/ray_rllib_impala_atari.py --method gpbt-pl --game Breakout
    python examples/ray_rllib_impala_atari.py --method pb2 --address auto   # on a cluster
    python examples/ray_rllib_impala_atari.py --tiny                        # a 1-minute smoke run

RLlib's new API stack trains IMPALA with Adam; the paper's space has an RMSProp epsilon, so
the learner here uses RMSProp (decay 0.99, momentum 0: RLlib's old IMPALA defaults) with the
searched epsilon. `--tiny` shrinks frames, network, batches and budget, not the space.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import ray
import torch
from ray import tune
from ray.rllib.algorithms.impala import IMPALAConfig
from ray.rllib.algorithms.impala.torch.impala_torch_learner import IMPALATorchLearner
from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack

from gpbt.integrations.ray_tune import GPBTScheduler
from gpbt.space import Float, Space

# PAPER.md: RMSProp epsilon [0.01, 0.5], entropy coeff [0.001, 0.1], lr [1e-5, 1e-2].
PAPER_SPACE = {
    "epsilon": Float(0.01, 0.5, log=True),
    "entropy_coeff": Float(0.001, 0.1, log=True),
    "lr": Float(1e-5, 1e-2, log=True),
}
METRIC = "env_runners/episode_return_mean"
TIME_ATTR = "num_env_steps_sampled_lifetime"
LR_SEEN = "learners/default_policy/default_optimizer_learning_rate"


class RMSPropIMPALALearner(IMPALATorchLearner):
    """IMPALA with RMSProp, whose epsilon and lr come from the member's config, also right
    after a restore (loading the donor's optimiser state would bring back its settings)."""

    def configure_optimizers_for_module(self, module_id, config=None):
        params = self.get_parameters(self._module[module_id])
        optimizer = torch.optim.RMSprop(
            params, lr=config.lr, alpha=config.decay, eps=config.epsilon, momentum=config.momentum
        )
        self.register_optimizer(
            module_id=module_id, optimizer=optimizer, params=params, lr_or_lr_schedule=config.lr
        )

    def _set_optimizer_state(self, state):
        super()._set_optimizer_state(state)
        for module_id in self.module.keys():
            cfg = self.config.get_config_for_module(module_id)
            for _, optim in self.get_optimizers_for_module(module_id):
                for group in optim.param_groups:
                    group["eps"] = float(cfg.epsilon)
                    if isinstance(cfg.lr, int | float):
                        group["lr"] = float(cfg.lr)


def make_atari(env_config):
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{env_config['game']}-v5", frameskip=1)
    return wrap_atari_for_new_api_stack(env, dim=env_config["dim"], framestack=4)


def param_space(game: str, tiny: bool, num_env_runners: int) -> dict:
    config = (
        IMPALAConfig()
        .environment(
            "gpbt-atari", env_config={"game": game, "dim": 42 if tiny else 64}, clip_rewards=True
        )
        .env_runners(num_env_runners=num_env_runners, rollout_fragment_length=50)
        .learners(num_learners=0, learner_class=RMSPropIMPALALearner)
        .training(opt_type="rmsprop", decay=0.99, momentum=0.0)
        .debugging(seed=0)
    )
    if tiny:
        config = (
            config.training(train_batch_size_per_learner=200)
            .rl_module(
                model_config={
                    "conv_filters": [[16, 4, 2], [32, 4, 2], [64, 11, 1]],
                    "head_fcnet_hiddens": [64],
                }
            )
            .reporting(min_time_s_per_iteration=0, min_sample_timesteps_per_iteration=200)
        )
    d = config.to_dict()
    for name in PAPER_SPACE:
        d.pop(name, None)
        d.pop("_" + name, None)
    return d


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="gpbt-pl", choices=["gpbt-pl", "pbt", "pb2", "random"])
    p.add_argument("--pairing", default="random", choices=["random", "sync", "truncation"])
    p.add_argument("--game", default="Breakout")
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--total-steps", type=float, default=1e7, help="env steps per member")
    p.add_argument("--interval", type=float, default=5e4, help="env steps between decisions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-env-runners", type=int, default=0)
    p.add_argument("--folder", default="runs/ray-impala-atari")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: local)")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes (about a minute)")
    args = p.parse_args(argv)
    if args.tiny:
        args.population, args.total_steps, args.interval = 2, 1200, 300

    if __name__ != "__main__":
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    tune.register_env("gpbt-atari", make_atari)
    scheduler = GPBTScheduler(
        args.method,
        PAPER_SPACE,
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
            "trainable": "rllib:IMPALA",
            "env": f"ALE/{args.game}-v5",
            "method": args.method,
            "population": args.population,
            "total_steps": args.total_steps,
            "perturbation_interval": args.interval,
            "time_attr": TIME_ATTR,
            "metric": METRIC,
            "mode": "max",
            "seed": args.seed,
            "space": Space(PAPER_SPACE).to_dict(),
        },
    )
    try:
        grid = tune.Tuner(
            "IMPALA",
            param_space=param_space(args.game, args.tiny, args.num_env_runners),
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
    scores = [
        r.metrics["env_runners"]["episode_return_mean"]
        for r in grid
        if r.metrics and r.metrics.get("env_runners", {}).get("episode_return_mean") is not None
    ]
    summary = {
        "method": args.method,
        "game": args.game,
        "best_score": max(scores) if scores else None,
        "errors": sum(r.error is not None for r in grid),
        **scheduler.stats(),
    }
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
