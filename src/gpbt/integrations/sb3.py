"""Stable-Baselines3 PPO on a Gymnasium environment as a local-engine trainable.

    trainable = "gpbt.integrations.sb3:PPOTrainable"
    [trainable_options]
    env = "InvertedPendulum-v5"     # any gymnasium id (MuJoCo ids need gymnasium[mujoco])
    n_envs = 1

Hyperparameters the search space may name (the paper's seven PPO ones first):

    learning_rate, clip_range, gae_lambda, gamma, n_epochs, batch_size (the SGD minibatch),
    train_batch_size (= n_steps x n_envs, the samples per PPO iteration; or give n_steps),
    ent_coef, vf_coef, max_grad_norm

Why this adapter exists: SB3 keeps copies of several hyperparameters where a plain attribute
assignment does not reach them (the rollout buffer has its own `gamma`, `gae_lambda` and size;
the learning rate and clip range are schedules; `PPO.load` brings back the saved values). An
exploit that restores a donor and then "sets" new values can silently keep training with the
old ones. Here `restore` loads only weights, optimiser state, counters and normaliser
statistics, and every hyperparameter is re-applied to each place SB3 reads it from; each step
reports the values the update actually used under `hp/...` so a run can be audited.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import time
import warnings
from collections import deque
from typing import Any

try:
    import gymnasium  # noqa: F401
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecNormalize
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gpbt.integrations.sb3 needs Stable-Baselines3, Gymnasium and PyTorch: "
        "pip install 'gpbt[sb3]' (stable-baselines3, gymnasium[mujoco], torch). "
        f"Import failed with: {e}"
    ) from e

try:
    from stable_baselines3.common.utils import FloatSchedule as _Schedule
except ImportError:  # stable-baselines3 < 2.6
    from stable_baselines3.common.utils import get_schedule_fn as _Schedule

from gpbt.engines.trainable import Trainable

__all__ = ["PPOTrainable", "HYPERPARAMETERS", "STRUCTURAL_KEYS"]

HYPERPARAMETERS = (
    "learning_rate",
    "clip_range",
    "gae_lambda",
    "gamma",
    "n_epochs",
    "batch_size",
    "train_batch_size",
    "n_steps",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
)
# Settings that shape the model or environment; changing one means building a new trainable.
STRUCTURAL_KEYS = ("env", "env_kwargs", "n_envs", "policy", "policy_kwargs", "normalize", "device")
SETTINGS = STRUCTURAL_KEYS + ("timesteps_per_step", "smoothing_episodes")

_PARAMS, _STATE, _NORM = "params.pt", "state.json", "vecnormalize.pkl"


class PPOTrainable(Trainable):
    """PPO (Stable-Baselines3) whose hyperparameters can be changed between any two steps.

    Settings (from `trainable_options`): `env` (required), `n_envs` (1), `env_kwargs`,
    `policy` ("MlpPolicy"), `policy_kwargs`, `normalize` (false; VecNormalize on observations
    and rewards, its statistics travel with the weights), `device` ("cpu"),
    `timesteps_per_step` (default: one PPO iteration, `n_steps x n_envs`), and
    `smoothing_episodes` (10: `episode_reward_mean` is the mean return of the last this-many
    episodes, NaN before the first one ends).
    """

    def setup(self, config: dict[str, Any]) -> None:
        self._check(config)
        self.config = config
        env_id = config["env"]
        self.n_envs = int(config.get("n_envs", 1))
        venv = make_vec_env(
            env_id, n_envs=self.n_envs, seed=self.seed, env_kwargs=config.get("env_kwargs")
        )
        hp = self._hyperparameters(config)
        if config.get("normalize", False):
            venv = VecNormalize(venv, gamma=hp["gamma"])
        self.venv = venv
        with warnings.catch_warnings():
            # The search varies batch sizes on purpose; a last, shorter minibatch is expected.
            warnings.filterwarnings("ignore", message=".*mini-batch size.*", category=UserWarning)
            self.model = PPO(
                config.get("policy", "MlpPolicy"),
                venv,
                seed=self.seed,
                device=config.get("device", "cpu"),
                policy_kwargs=config.get("policy_kwargs"),
                verbose=0,
                **hp,
            )
        # Without a logger of its own, every `learn` call (one per step) makes an empty
        # SB3-<date> folder in the temp folder; the engine records the metrics, so log nowhere.
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.iteration = 0
        self.returns: deque[float] = deque(maxlen=int(config.get("smoothing_episodes", 10)))
        self.lengths: deque[int] = deque(maxlen=self.returns.maxlen)
        self._apply(config)

    # ---------------------------------------------------------------- config
    def _check(self, config: dict[str, Any]) -> None:
        if "env" not in config:
            raise ValueError(
                "PPOTrainable needs an environment: set env = 'InvertedPendulum-v5' (any "
                "gymnasium id) under [trainable_options]"
            )
        unknown = sorted(set(config) - set(HYPERPARAMETERS) - set(SETTINGS))
        if unknown:
            raise ValueError(
                f"PPOTrainable: unknown setting or hyperparameter {unknown[0]!r}; "
                f"hyperparameters: {list(HYPERPARAMETERS)}; settings: {list(SETTINGS)}"
            )
        if "train_batch_size" in config and "n_steps" in config:
            raise ValueError(
                "PPOTrainable: give train_batch_size or n_steps, not both "
                "(train_batch_size = n_steps x n_envs)"
            )

    def _hyperparameters(self, config: dict[str, Any]) -> dict[str, Any]:
        """Constructor keyword arguments for the hyperparameters `config` names."""
        hp: dict[str, Any] = {"gamma": 0.99}
        for key in ("learning_rate", "clip_range", "gae_lambda", "gamma", "ent_coef", "vf_coef"):
            if key in config:
                hp[key] = float(config[key])
        if "max_grad_norm" in config:
            hp["max_grad_norm"] = float(config["max_grad_norm"])
        if "n_epochs" in config:
            hp["n_epochs"] = int(round(config["n_epochs"]))
        if "batch_size" in config:
            hp["batch_size"] = max(2, int(round(config["batch_size"])))
        if "train_batch_size" in config:
            hp["n_steps"] = max(2, int(round(float(config["train_batch_size"]) / self.n_envs)))
        elif "n_steps" in config:
            hp["n_steps"] = max(2, int(round(config["n_steps"])))
        return hp

    def _apply(self, config: dict[str, Any]) -> None:
        """Put every hyperparameter where PPO reads it during rollouts and updates."""
        m = self.model
        hp = self._hyperparameters(config)
        if "learning_rate" in hp:
            m.learning_rate = hp["learning_rate"]
            m.lr_schedule = _Schedule(hp["learning_rate"])
            # train() sets this again from lr_schedule; set it now so nothing sees the old one
            for group in m.policy.optimizer.param_groups:
                group["lr"] = hp["learning_rate"]
        if "clip_range" in hp:
            m.clip_range = _Schedule(hp["clip_range"])
        for key in ("ent_coef", "vf_coef", "max_grad_norm", "n_epochs", "batch_size"):
            if key in hp:
                setattr(m, key, hp[key])
        m.gamma = hp["gamma"]
        if "gae_lambda" in hp:
            m.gae_lambda = hp["gae_lambda"]
        if hp.get("n_steps", m.n_steps) != m.n_steps:
            m.n_steps = hp["n_steps"]
            m.rollout_buffer = m.rollout_buffer_class(
                m.n_steps,
                m.observation_space,
                m.action_space,
                device=m.device,
                gamma=m.gamma,
                gae_lambda=m.gae_lambda,
                n_envs=m.n_envs,
                **m.rollout_buffer_kwargs,
            )
        # The rollout buffer computes returns and advantages with its own copies.
        m.rollout_buffer.gamma = m.gamma
        m.rollout_buffer.gae_lambda = m.gae_lambda
        if isinstance(self.venv, VecNormalize):
            self.venv.gamma = m.gamma

    def reset_config(self, config: dict[str, Any]) -> bool:
        if any(config.get(k) != self.config.get(k) for k in STRUCTURAL_KEYS):
            return False
        self._check(config)
        self.returns = deque(self.returns, maxlen=int(config.get("smoothing_episodes", 10)))
        self.lengths = deque(self.lengths, maxlen=self.returns.maxlen)
        self.config = config
        self._apply(config)
        return True

    # ---------------------------------------------------------------- training
    def step(self) -> dict[str, Any]:
        m = self.model
        per = self.config.get("timesteps_per_step") or m.n_steps * m.n_envs
        updates_before = m._n_updates
        if m.ep_info_buffer is not None:
            m.ep_info_buffer.clear()
        t0 = time.perf_counter()
        m.learn(total_timesteps=int(per), reset_num_timesteps=False, progress_bar=False)
        elapsed = time.perf_counter() - t0
        episodes = list(m.ep_info_buffer or [])
        for info in episodes:
            self.returns.append(float(info["r"]))
            self.lengths.append(int(info["l"]))
        self.iteration += 1
        mean = sum(self.returns) / len(self.returns) if self.returns else math.nan
        buf = m.rollout_buffer
        return {
            "timesteps_total": int(m.num_timesteps),
            "episode_reward_mean": mean,
            "episode_len_mean": (
                sum(self.lengths) / len(self.lengths) if self.lengths else math.nan
            ),
            "episodes_this_iter": len(episodes),
            "training_iteration": self.iteration,
            "time_this_iter_s": elapsed,
            # What the last update really used, read back from where PPO reads it.
            "hp/learning_rate": float(m.policy.optimizer.param_groups[0]["lr"]),
            "hp/clip_range": float(m.clip_range(m._current_progress_remaining)),
            "hp/gamma": float(buf.gamma),
            "hp/gae_lambda": float(buf.gae_lambda),
            "hp/n_epochs": int(m.n_epochs),
            "hp/epochs_run": int(m._n_updates - updates_before),
            "hp/batch_size": int(m.batch_size),
            "hp/n_steps": int(buf.buffer_size),
            "hp/train_batch_size": int(buf.buffer_size * buf.n_envs),
        }

    # ---------------------------------------------------------------- checkpoints
    def save(self, checkpoint_dir: str) -> None:
        torch.save(self.model.get_parameters(), os.path.join(checkpoint_dir, _PARAMS))
        state = {
            "num_timesteps": int(self.model.num_timesteps),
            "n_updates": int(self.model._n_updates),
            "iteration": self.iteration,
            "returns": list(self.returns),
            "lengths": list(self.lengths),
        }
        with open(os.path.join(checkpoint_dir, _STATE), "w") as f:
            json.dump(state, f)
        if isinstance(self.venv, VecNormalize):
            with open(os.path.join(checkpoint_dir, _NORM), "wb") as f:
                pickle.dump({"obs_rms": self.venv.obs_rms, "ret_rms": self.venv.ret_rms}, f)

    def restore(self, checkpoint_dir: str) -> None:
        params = torch.load(
            os.path.join(checkpoint_dir, _PARAMS), map_location=self.model.device, weights_only=True
        )
        # Weights and Adam moments only: never PPO.load, which would bring back the donor's
        # hyperparameters along with its weights.
        self.model.set_parameters(params, exact_match=True, device=self.model.device)
        with open(os.path.join(checkpoint_dir, _STATE)) as f:
            state = json.load(f)
        self.model.num_timesteps = int(state["num_timesteps"])
        self.model._n_updates = int(state["n_updates"])
        self.iteration = int(state["iteration"])
        self.returns = deque(state["returns"], maxlen=self.returns.maxlen)
        self.lengths = deque(state["lengths"], maxlen=self.lengths.maxlen)
        norm = os.path.join(checkpoint_dir, _NORM)
        if isinstance(self.venv, VecNormalize) and os.path.exists(norm):
            with open(norm, "rb") as f:
                stats = pickle.load(f)
            self.venv.obs_rms, self.venv.ret_rms = stats["obs_rms"], stats["ret_rms"]
        self._apply(self.config)

    def cleanup(self) -> None:
        venv = getattr(self, "venv", None)
        if venv is not None:
            venv.close()
