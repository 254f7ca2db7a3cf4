"""The paper's IMPALA experiment, redone on current Ray: RLlib IMPALA on an Atari game
(ale-py ships the ROMs), tuned by gpbt under Ray Tune with docs/method.md's search space (RMSProp
epsilon, entropy coefficient, learning rate), the same for every method.

    python examples/ray_rllib_impala_atari.py --method gpbt-pl --game Breakout
    python examples/ray_rllib_impala_atari.py --method pb2 --address auto   # on a cluster
    python examples/ray_rllib_impala_atari.py --tiny                        # a 1-minute smoke run

RLlib's new API stack trains IMPALA with Adam; the paper's space has an RMSProp epsilon, so
the learner here uses RMSProp (decay 0.99, momentum 0: RLlib's old IMPALA defaults) with the
searched epsilon. `--tiny` shrinks frames, network, batches and budget, not the space.
"""

from __future__ import annotations

import sys

import gymnasium as gym
import torch
from ray.rllib.algorithms.impala import IMPALAConfig
from ray.rllib.algorithms.impala.torch.impala_torch_learner import IMPALATorchLearner
from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack

from gpbt.core.space import Float
from gpbt.engines.ray import rllib_fixed_config
from gpbt.engines.ray_rllib import rllib_experiment_arguments, run_rllib_experiment

# docs/method.md: RMSProp epsilon [0.01, 0.5], entropy coeff [0.001, 0.1], lr [1e-5, 1e-2].
PAPER_SPACE = {
    "epsilon": Float(0.01, 0.5, log=True),
    "entropy_coeff": Float(0.001, 0.1, log=True),
    "lr": Float(1e-5, 1e-2, log=True),
}
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
    return rllib_fixed_config(config, PAPER_SPACE)


def main(argv=None) -> dict:
    args = rllib_experiment_arguments(
        __doc__,
        env="Breakout",
        total_steps=1e7,
        folder="runs/ray-impala-atari",
        argv=argv,
        env_flag="--game",
    )
    if args.tiny:
        args.population, args.total_steps, args.interval = 2, 1200, 300
    fixed = param_space(args.env, args.tiny, args.num_env_runners)
    return run_rllib_experiment(
        args,
        "IMPALA",
        "gpbt-atari",
        fixed,
        PAPER_SPACE,
        store_metrics=(LR_SEEN,),
        module=sys.modules[__name__],
        env_creator=make_atari,
    )


if __name__ == "__main__":
    main()
