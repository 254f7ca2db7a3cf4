"""Which Ray the Tune scheduler works with: the import guard and the internals probe.

The scheduler drives Tune through a few of its internals; this module is the one place that
knows which, checks them (`check_ray_internals()`, run when a `GPBTScheduler` is built) and
names the tested releases, so a Ray upgrade that breaks one fails here with its name instead
of deep inside a run.

Ray internals the scheduler relies on (a Ray release that drops one fails loudly in
`check_ray_internals()` and in tests/test_ray_tune.py):

- `TuneController._schedule_trial_save(trial, result=)` returning a `_FutureTrainingResult`
  (`ray.train._internal.session`) whose `resolve()` blocks until the save is done,
- `TuneController.pause_trial(trial, should_checkpoint=...)` (False when the donor's weights
  replace the receiver's, True when a donor with no checkpoint leaves it its own),
- `trial.run_metadata.checkpoint_manager._latest_checkpoint_result`, which Tune restores a
  trial from when it starts again (set to the donor's `_TrainingResult` on exploit),
- `trial.temporary_state.saving_to`, `trial.checkpoint`, `trial.set_config`,
  `trial.latest_checkpoint_result`, `trial.get_trainable_cls()`,
  `ray.tune.trainable.function_trainable.FunctionTrainable` (a function trainable has only
  the checkpoints it reported), `TrialScheduler.NOOP`.
Ray's own PopulationBasedTraining uses the same ones (ray/tune/schedulers/pbt.py), so they
tend to move together with it.
"""

from __future__ import annotations

import inspect
import warnings

# Every route into the integration (and the Ray engine, which imports it first) passes this
# guard, so a missing Ray says how to install it instead of a bare ModuleNotFoundError.
try:
    import ray
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler
except ImportError as _err:  # pragma: no cover - exercised only without ray installed
    raise ImportError(
        "gpbt.integrations.ray_tune needs Ray Tune, which is an optional extra of gpbt: "
        "pip install 'gpbt[ray]' (or 'gpbt[rllib]' for the RLlib examples)"
    ) from _err

# The Ray releases the adapter was tested against (tests/test_ray_tune.py on real Ray). Any
# other release gets a warning, not a refusal: the internals check below is what really
# decides whether it can work.
TESTED_RAY = ("2.60",)


class RayCompatibilityError(RuntimeError):
    """This Ray release lacks an internal the adapter needs."""


_internals_ok = False


def check_ray_internals() -> None:
    """Fail loudly, naming the internal, when Ray changed something the adapter uses."""
    global _internals_ok
    if _internals_ok:
        return
    problems = []
    try:
        from ray.train._internal.session import _FutureTrainingResult, _TrainingResult

        if not callable(getattr(_FutureTrainingResult, "resolve", None)):
            problems.append("_FutureTrainingResult.resolve()")
        params = inspect.signature(_TrainingResult).parameters
        if not {"checkpoint", "metrics"} <= set(params):
            problems.append("_TrainingResult(checkpoint=, metrics=)")
    except ImportError:
        problems.append("ray.train._internal.session._TrainingResult/_FutureTrainingResult")
    try:
        from ray.tune.execution.tune_controller import TuneController

        for name in ("_schedule_trial_save", "pause_trial", "get_trials", "get_live_trials"):
            if not callable(getattr(TuneController, name, None)):
                problems.append(f"TuneController.{name}")
        if "should_checkpoint" not in inspect.signature(TuneController.pause_trial).parameters:
            problems.append("TuneController.pause_trial(should_checkpoint=)")
        wrapped = inspect.getsource(TuneController._wrapped)
        for name in ("_schedule_trial_save", "pause_trial"):
            if f'"{name}"' not in wrapped:
                problems.append(f"{name} on the scheduler's TuneController whitelist")
    except (ImportError, OSError, TypeError):
        problems.append("ray.tune.execution.tune_controller.TuneController")
    try:
        from ray.train._internal.checkpoint_manager import _CheckpointManager

        if "_latest_checkpoint_result" not in inspect.getsource(_CheckpointManager):
            problems.append("_CheckpointManager._latest_checkpoint_result")
    except (ImportError, OSError, TypeError):
        problems.append("ray.train._internal.checkpoint_manager._CheckpointManager")
    try:
        from ray.tune.trainable.function_trainable import FunctionTrainable  # noqa: F401
    except ImportError:
        problems.append("ray.tune.trainable.function_trainable.FunctionTrainable")
    for name in (
        "set_config",
        "set_experiment_tag",
        "checkpoint",
        "temporary_state",
        "latest_checkpoint_result",
        "get_trainable_cls",
    ):
        if not hasattr(Trial, name) and name != "temporary_state":
            problems.append(f"Trial.{name}")
    if "temporary_state" not in inspect.getsource(Trial.__init__):
        problems.append("Trial.temporary_state")
    if getattr(TrialScheduler, "NOOP", None) is None:
        problems.append("TrialScheduler.NOOP")
    if problems:
        raise RayCompatibilityError(
            f"gpbt's Ray Tune adapter cannot work with ray {ray.__version__}: missing "
            f"{', '.join(problems)}. It was tested with ray {', '.join(TESTED_RAY)}; install "
            f"a supported release (pip install 'gpbt[ray]') or report this so the adapter "
            "can follow Ray."
        )
    _internals_ok = True
    major_minor = ".".join(ray.__version__.split(".")[:2])
    if major_minor not in TESTED_RAY:
        warnings.warn(
            f"gpbt's Ray Tune adapter was tested with ray {', '.join(TESTED_RAY)}, this is "
            f"ray {ray.__version__}; its internals check passed, but run "
            "tests/test_ray_tune.py before trusting results",
            stacklevel=3,
        )
