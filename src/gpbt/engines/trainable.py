"""The Trainable API of the local engine (the class-based API Ray Tune users know).

A trainable is one member's training process. The engine creates it, calls `setup(config)`,
then `step()` repeatedly; after every step it calls `save(dir)` so that the member can be
resumed, restarted after a fault or cloned by another member. An exploit restores the donor's
checkpoint into the loser with `restore(dir)` and then hands it its new hyperparameters with
`reset_config(config)`; a trainable that returns False there is rebuilt instead
(`setup(new_config)` followed by `restore(dir)`).

The one rule that matters for correctness: **`restore` loads weights and training state, never
hyperparameters.** After `restore`, the trainable must train with `self.config`, not with
whatever the checkpoint was saved with; otherwise every exploit silently keeps the donor's
values and the search explores nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpbt.errors import GpbtError
from gpbt.imports import import_object

__all__ = ["Trainable", "TrainableError", "load_trainable", "trainable_name"]


class TrainableError(GpbtError, RuntimeError):
    """A trainable broke the API contract (a bug to fix, not a fault to retry); the message
    names the member and what its trainable must do."""


class Trainable:
    """Base class for local-engine trainables; subclass it and override the five methods.

    Attributes the engine sets before `setup`: `config` (the member's hyperparameters merged
    over `trainable_options`), `member` (its index in the population) and `seed` (a per-member
    seed derived from the experiment seed, so members differ but runs repeat).
    """

    config: dict[str, Any]
    member: int | None = None
    seed: int | None = None

    def setup(self, config: dict[str, Any]) -> None:
        """Build the model, optimiser and environment for `config`."""

    def step(self) -> dict[str, Any]:
        """Train for a while and return metrics; they must include the experiment's `metric`
        and `time_attr` (e.g. `episode_reward_mean` and `timesteps_total`), and `time_attr`
        must grow with every step."""
        raise NotImplementedError(f"{type(self).__name__}.step() is not implemented")

    def save(self, checkpoint_dir: str) -> None:
        """Write everything needed to continue training into the (existing, empty) folder."""
        raise NotImplementedError(f"{type(self).__name__}.save(dir) is not implemented")

    def restore(self, checkpoint_dir: str) -> None:
        """Load a folder written by `save` (possibly another member's); keep `self.config`."""
        raise NotImplementedError(f"{type(self).__name__}.restore(dir) is not implemented")

    def reset_config(self, config: dict[str, Any]) -> bool:
        """Switch to new hyperparameters in place; return False to be rebuilt instead."""
        return False

    def cleanup(self) -> None:
        """Release environments, files or threads; called when the engine drops the member."""


def trainable_name(trainable: type | str) -> str:
    if isinstance(trainable, str):
        return trainable
    return f"{trainable.__module__}:{trainable.__qualname__}"


def load_trainable(spec: str | type) -> type:
    """Resolve `"package.module:ClassName"` (importable from the working directory) to a class."""
    if not isinstance(spec, str):
        _check_class(spec, trainable_name(spec))
        return spec
    obj = import_object(
        spec,
        "trainable",
        "'my_agents:PPOTrainable' or 'gpbt.integrations.sb3:PPOTrainable'",
    )
    _check_class(obj, spec)
    return obj


def _check_class(cls: Any, name: str) -> None:
    if not isinstance(cls, type):
        raise ValueError(f"trainable {name!r} must be a class, got {type(cls).__name__}")
    missing = [
        m for m in ("setup", "step", "save", "restore") if not callable(getattr(cls, m, None))
    ]
    if missing:
        raise ValueError(
            f"trainable {name!r} lacks {missing}; subclass gpbt.engines.trainable.Trainable "
            "and implement setup(config), step(), save(dir), restore(dir)"
        )


def clean_metrics(metrics: Any, member: int) -> tuple[dict[str, Any], list[str]]:
    """Keep JSON-able scalars (numpy and torch scalars become Python numbers) and report the
    keys dropped, so a stray tensor or object in the metrics never breaks the store."""
    if not isinstance(metrics, Mapping):
        raise TrainableError(
            f"member {member}: step() must return a dict of metrics, got {type(metrics).__name__}"
        )
    out: dict[str, Any] = {}
    dropped = []
    for key, value in metrics.items():
        key = str(key)
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = value
            continue
        item = getattr(value, "item", None)
        size = getattr(value, "size", 1)
        if callable(size):  # torch: size() is a method
            try:
                size = value.numel()
            except Exception:
                size = 2
        if item is not None and size == 1:
            try:
                v = item()
            except Exception:
                dropped.append(key)
                continue
            if v is None or isinstance(v, bool | int | float | str):
                out[key] = v
                continue
        dropped.append(key)
    return out, dropped
