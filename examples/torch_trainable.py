"""A plain PyTorch trainable for the local engine: an MLP fitting a noisy 1-D function, with
SGD's learning rate, momentum and weight decay tuned by GPBT-PL (lower validation loss wins).

Run it (about a minute on 2 cores) either way:

    cd examples && gpbt run torch_trainable.toml --out runs/torch
    python examples/torch_trainable.py runs/torch

The data are generated from a fixed seed, so every member sees the same problem and nothing is
downloaded.
"""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

from gpbt.engines.trainable import Trainable


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 6 - 3
    y = torch.sin(2 * x) + 0.3 * x**2 + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


class SineRegression(Trainable):
    """`samples` (the time_attr) counts training examples seen; `val_loss` is the metric."""

    def setup(self, config):
        torch.manual_seed(self.seed or 0)
        self.model = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                                   nn.Linear(64, 1))  # fmt: skip
        self.opt = torch.optim.SGD(self.model.parameters(), lr=config["lr"])
        self.x, self.y = make_data(4096, seed=0)
        self.vx, self.vy = make_data(1024, seed=1)
        self.batch = int(config.get("batch", 64))
        self.updates_per_step = int(config.get("updates_per_step", 50))
        self.samples = 0
        self.g = torch.Generator().manual_seed(self.seed or 0)
        self._apply(config)

    def _apply(self, config):
        # Optimizer.load_state_dict() brings back the saved param_groups (the donor's lr and
        # momentum), so the hyperparameters are set again after every restore.
        for group in self.opt.param_groups:
            group["lr"] = config["lr"]
            group["momentum"] = config["momentum"]
            group["weight_decay"] = config["weight_decay"]

    def step(self):
        t0 = time.perf_counter()
        self.model.train()
        for _ in range(self.updates_per_step):
            idx = torch.randint(0, len(self.x), (self.batch,), generator=self.g)
            loss = nn.functional.mse_loss(self.model(self.x[idx]), self.y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.samples += self.batch
        with torch.no_grad():
            val = nn.functional.mse_loss(self.model(self.vx), self.vy).item()
        if val != val or val == float("inf"):
            val = float("nan")  # a diverged member: the engine counts NaN as the worst score
        elapsed = time.perf_counter() - t0
        return {"samples": self.samples, "val_loss": val, "time_this_iter_s": elapsed}

    def save(self, checkpoint_dir):
        torch.save(
            {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
             "samples": self.samples, "rng": self.g.get_state()},
            os.path.join(checkpoint_dir, "state.pt"),
        )  # fmt: skip

    def restore(self, checkpoint_dir):
        state = torch.load(os.path.join(checkpoint_dir, "state.pt"), weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.samples = state["samples"]  # time_attr is part of the state: restore it
        self._apply(self.config)

    def reset_config(self, config):
        self._apply(config)
        return True


if __name__ == "__main__":
    import tomllib
    from pathlib import Path

    from gpbt.engines.local import run_local

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))  # so worker processes can import torch_trainable
    config = tomllib.loads((here / "torch_trainable.toml").read_text())
    folder = sys.argv[1] if len(sys.argv) > 1 else "runs/torch-trainable"
    summary = run_local(config, folder, resume=Path(folder, "experiment.sqlite").exists())
    print(f"best member {summary['best_member']}: val_loss {summary['best_score']:.4f}")
    print(f"  config {summary['best_config']}, {summary['exploits']} exploits")
