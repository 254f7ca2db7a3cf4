"""The Stable-Baselines3 adapter on a real MuJoCo task (InvertedPendulum-v5), small budgets.

The contract under test: after an exploit, PPO trains with the loser's *new* hyperparameters
on the donor's weights; other tools have silently kept the values stored in the checkpoint.
"""

from __future__ import annotations

import math
import os

try:
    import gymnasium  # noqa: F401
    import mujoco  # noqa: F401
    import stable_baselines3  # noqa: F401
    import torch
except ImportError as e:
    raise ImportError(
        "tests/test_sb3.py needs the sb3 extra (stable-baselines3, gymnasium[mujoco], torch): "
        "pip install -e '.[sb3]'"
    ) from e

import pytest
from stable_baselines3 import PPO

from gpbt.core.methods import make_scheduler
from gpbt.core.space import Space
from gpbt.engines.local import LocalEngine, run_local
from gpbt.integrations.sb3 import PPOTrainable
from gpbt.store import load

torch.set_num_threads(1)

# trains real agents in worker processes: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

ENV = {"env": "InvertedPendulum-v5"}
C1 = dict(ENV, learning_rate=3e-4, clip_range=0.2, gae_lambda=0.95, gamma=0.99,
          n_epochs=2, batch_size=64, train_batch_size=128)  # fmt: skip
C2 = dict(ENV, learning_rate=1e-5, clip_range=0.1, gae_lambda=0.9, gamma=0.95,
          n_epochs=1, batch_size=32, train_batch_size=64)  # fmt: skip
C3 = dict(ENV, learning_rate=7e-4, clip_range=0.35, gae_lambda=0.97, gamma=0.97,
          n_epochs=3, batch_size=16, train_batch_size=256)  # fmt: skip

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
    "clip_range": {"type": "float", "low": 0.1, "high": 0.5},
    "gae_lambda": {"type": "float", "low": 0.9, "high": 1.0},
    "gamma": {"type": "float", "low": 0.95, "high": 1.0},
    "n_epochs": {"type": "int", "low": 1, "high": 3},
    "batch_size": {"type": "choice", "values": [32, 64]},
    "train_batch_size": {"type": "choice", "values": [128, 256]},
}


def make(config, seed=0, cls=PPOTrainable):
    t = cls()
    t.member, t.seed, t.config = 0, seed, dict(config)
    t.setup(dict(config))
    return t


def assert_trains_with(metrics, config):
    """The values the update really used, as the adapter reads them back from PPO."""
    assert metrics["hp/learning_rate"] == pytest.approx(config["learning_rate"])
    assert metrics["hp/clip_range"] == pytest.approx(config["clip_range"])
    assert metrics["hp/gamma"] == pytest.approx(config["gamma"])
    assert metrics["hp/gae_lambda"] == pytest.approx(config["gae_lambda"])
    assert metrics["hp/n_epochs"] == config["n_epochs"]
    assert metrics["hp/epochs_run"] == config["n_epochs"]
    assert metrics["hp/batch_size"] == config["batch_size"]
    assert metrics["hp/train_batch_size"] == config["train_batch_size"]


def same_weights(a, b):
    sa, sb = a.model.policy.state_dict(), b.model.policy.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def donor(tmp_path_factory):
    d = tmp_path_factory.mktemp("donor")
    a = make(C1)
    m = a.step()
    m = a.step()
    a.save(str(d))
    yield a, str(d), m
    a.cleanup()


def test_exploit_in_place_trains_with_the_new_values(donor):
    a, ckpt, donor_metrics = donor
    b = make(C2, seed=1)
    b.step()
    assert not same_weights(a, b)
    b.restore(ckpt)  # the engine's order: weights first, then the new hyperparameters
    assert b.reset_config(dict(C3, env="Hopper-v5")) is False  # structural: rebuild instead
    assert b.reset_config(dict(C3)) is True
    assert same_weights(a, b)
    opt_a = a.model.policy.optimizer.state_dict()["state"]
    opt_b = b.model.policy.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)
    m = b.step()
    assert_trains_with(m, C3)
    assert m["timesteps_total"] == donor_metrics["timesteps_total"] + C3["train_batch_size"]
    b.cleanup()


def test_rebuilt_trainable_keeps_its_config_over_the_checkpoint(donor):
    """A trainable rebuilt for the loser (setup(new) then restore(donor)) must not take the
    donor's hyperparameters back from the checkpoint."""
    a, ckpt, donor_metrics = donor
    c = make(C3, seed=2)
    c.restore(ckpt)
    assert same_weights(a, c)
    m = c.step()
    assert_trains_with(m, C3)
    assert m["timesteps_total"] == donor_metrics["timesteps_total"] + C3["train_batch_size"]
    c.cleanup()


class RestoresWithPPOLoad(PPOTrainable):
    """The usual SB3 pattern, `PPO.load(checkpoint)`: it brings back the donor's
    hyperparameters together with its weights."""

    def save(self, checkpoint_dir):
        super().save(checkpoint_dir)
        self.model.save(os.path.join(checkpoint_dir, "model.zip"))

    def restore(self, checkpoint_dir):
        path = os.path.join(checkpoint_dir, "model.zip")
        self.model = PPO.load(path, env=self.venv, device="cpu")


def test_the_contract_catches_a_restore_that_brings_back_old_values(tmp_path):
    """Negative control: the checks above fail for the known bug they guard against."""
    a = make(C1, cls=RestoresWithPPOLoad)
    a.step()
    a.save(str(tmp_path))
    c = make(C3, seed=2, cls=RestoresWithPPOLoad)
    c.restore(str(tmp_path))
    with pytest.raises(AssertionError):
        assert_trains_with(c.step(), C3)
    a.cleanup()
    c.cleanup()


def test_normalizer_statistics_travel_with_the_weights(tmp_path):
    a = make(dict(C1, normalize=True))
    a.step()
    a.save(str(tmp_path))
    b = make(dict(C2, normalize=True), seed=1)
    b.restore(str(tmp_path))
    assert (b.venv.obs_rms.mean == a.venv.obs_rms.mean).all()
    assert b.venv.gamma == pytest.approx(C2["gamma"])
    assert_trains_with(b.step(), dict(C2, normalize=True))
    a.cleanup()
    b.cleanup()


def test_training_writes_nothing_to_the_temp_folder(tmp_path, monkeypatch):
    """SB3 makes an empty `SB3-<date>` log folder in the temp folder on each `learn` call unless
    the model has its own logger; a step is one `learn` call, so a long run left thousands."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    t = make(C2)
    t.step()
    t.step()
    t.cleanup()
    # (torch may make its one shared cache folder here; SB3's are one per call)
    assert sorted(p.name for p in tmp_path.glob("SB3-*")) == []


def test_bad_settings_fail_clearly():
    with pytest.raises(ValueError, match="needs an environment"):
        make({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="unknown setting or hyperparameter 'lr'"):
        make(dict(ENV, lr=1e-3))


@pytest.mark.slow
def test_engine_exploits_apply_new_hyperparameters_on_mujoco(tmp_path):
    """Through the engine (deterministic mode): every exploited member's next step trains with
    the config the scheduler chose, on the donor's network."""
    sched = make_scheduler(
        "gpbt-pl", Space(SPACE), perturbation_interval=256, seed=1, max_time=1024
    )
    eng = LocalEngine(
        PPOTrainable,
        sched,
        tmp_path,
        population=3,
        workers=3,
        total_steps=1024,
        trainable_options=ENV,
        deterministic=True,
    )
    events = []
    eng.progress = events.append
    summary = eng.run()
    assert summary["finished"] and summary["exploits"] >= 1
    pending = {}
    checked = 0
    for e in events:
        if e["type"] == "exploit":
            pending[e["member"]] = e["config"]
        elif e["type"] == "report" and e["member"] in pending:
            config = pending.pop(e["member"])
            assert e["config"] == config
            assert_trains_with(e["metrics"], config)
            checked += 1
    assert checked >= 1
    reports = load(tmp_path).reports
    assert reports.groupby("member")["time"].max().tolist() == [1024] * 3
    assert not math.isnan(summary["best_score"])


@pytest.mark.slow
def test_sb3_in_worker_processes(tmp_path):
    """The config-file path the examples use: real worker processes, PPO by name."""
    config = {
        "engine": "local",
        "trainable": "gpbt.integrations.sb3:PPOTrainable",
        "workers": 2,
        "method": "gpbt-pl",
        "population": 2,
        "total_steps": 512,
        "perturbation_interval": 256,
        "seed": 0,
        "space": SPACE,
        "trainable_options": ENV,
        "step_timeout": 120,
    }
    summary = run_local(config, tmp_path)
    assert summary["finished"] and not summary["failed_members"]
    assert sorted(load(tmp_path).reports.groupby("member")["time"].max()) == [512, 512]
