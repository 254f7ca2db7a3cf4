"""The paper's PPO experiment, redone on current Ray: RLlib PPO on a Gymnasium MuJoCo task,
tuned by gpbt under Ray Tune. Every method gets the same search space (docs/method.md's seven PPO
hyperparameters), population, budget and seed.

    python examples/ray_rllib_ppo_mujoco.py --method gpbt-pl --env HalfCheetah-v5
    python examples/ray_rllib_ppo_mujoco.py --method pbt --address auto   # on a cluster
    python examples/ray_rllib_ppo_mujoco.py --tiny                         # a 1-minute smoke run

`--tiny` keeps the parameter names but shrinks batch sizes, epochs, network and budget so the
run finishes in about a minute on 2 CPUs (what tests/test_ray_tune.py runs).
"""

from __future__ import annotations

import sys

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

from gpbt.core.space import Choice, Float, Int
from gpbt.engines.ray import rllib_fixed_config
from gpbt.engines.ray_rllib import rllib_experiment_arguments, run_rllib_experiment

# docs/method.md: GAE lambda [0.9, 1], clip [0.1, 0.5], lr [1e-5, 1e-3], train batch size
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
    return rllib_fixed_config(config, PAPER_SPACE)


def main(argv=None) -> dict:
    args = rllib_experiment_arguments(
        __doc__, env="HalfCheetah-v5", total_steps=2e6, folder="runs/ray-ppo-mujoco", argv=argv
    )
    if args.tiny:
        args.population, args.total_steps, args.interval = 2, 1500, 300
    space = TINY_SPACE if args.tiny else PAPER_SPACE
    fixed = param_space(args.env, args.tiny, args.num_env_runners)
    return run_rllib_experiment(
        args, "PPO", args.env, fixed, space, (LR_SEEN,), sys.modules[__name__]
    )


if __name__ == "__main__":
    main()
