"""The Ray engine of `gpbt run` (engine = "ray"): a config in, a Tune run out, a `Summary` back.

It declares the engine (`ENGINE`: its config keys `OPTIONS`, `DEFAULTS`, `check_config`, and
what a finished run supports), resolves the trainable (a Tune class or function, or
`rllib:ALGO` with its param_space), checks that one trial fits the cluster, and runs Tune with
the integration's `GPBTScheduler` making every decision. The engine depends on the
integration, never the other way round.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time as _time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

# The integration before ray itself: without Ray its import guard says how to install it,
# which `gpbt run` shows; importing ray first would give a bare ModuleNotFoundError.
from gpbt.integrations.ray_tune.compat import check_ray_internals
from gpbt.integrations.ray_tune.scheduler import GPBTScheduler

# isort: split
import ray
from ray import tune

from gpbt.core.space import Space
from gpbt.engines.protocol import Engine, Summary, population_mean
from gpbt.engines.runner import run_with
from gpbt.imports import import_object
from gpbt.live_log import LiveLog
from gpbt.options import OPTIONAL, Option
from gpbt.spec import RunSpec

# The Ray engine's own config keys for `gpbt run` (gpbt.spec collects them; docs: docs/ray.md).
OPTIONS: dict[str, Option] = {
    "trainable": Option(
        str, help="'module:function', 'module:Class' or 'rllib:PPO'", nonempty=True
    ),
    "address": Option(str, "", "an existing cluster; empty: gpbt starts Ray locally"),
    "env": Option(str, "", "the environment of an rllib:* trainable"),
    "param_space": Option(dict, {}, "fixed values every trial gets"),
    "rllib": Option(dict, {}, "AlgorithmConfig settings of an rllib:* trainable"),
    "num_cpus": Option(int, OPTIONAL, "CPUs of a locally started Ray", at_least=1),
    "resources_per_trial": Option(dict, OPTIONAL, "e.g. { cpu = 1 }"),
    "num_to_keep": Option(int, OPTIONAL, "checkpoints kept per trial (default: all)", at_least=1),
    "max_failures": Option(
        int, 2, "restarts of a trial from its last checkpoint after it or its node died", at_least=0
    ),
    "reuse_actors": Option(bool, OPTIONAL, "default: true for functions and reset_config"),
    "store_metrics": Option(list, OPTIONAL, "extra result keys kept in the experiment store"),
}
DEFAULTS = {"metric": "episode_reward_mean", "time_attr": "training_iteration"}


def check_config(cfg: dict[str, Any]) -> None:
    """What the Ray engine needs beyond the key types (called by RunSpec.from_config)."""
    from gpbt.errors import ConfigError

    if cfg["method"] == "default":
        # Tune samples every trial's config from param_space before a scheduler sees it, so
        # "no search" cannot be imposed from the scheduler side.
        raise ConfigError(
            "method = 'default' runs with the vector and local engines; with Ray Tune, train "
            "the untuned agent by leaving the hyperparameters out of param_space instead"
        )


logger = logging.getLogger(__name__)


def _import_object(spec: str) -> Any:
    obj = import_object(
        spec, "trainable", "'my_module:MyTrainable', 'my_module:train_fn' or 'rllib:PPO'"
    )
    mod = sys.modules[spec.partition(":")[0]]
    origin = Path(getattr(mod, "__file__", "") or "").resolve()
    if origin.is_relative_to(Path.cwd().resolve()):
        # Ray's workers do not run in our working directory (nor on our machine, on a
        # cluster), so a module found there travels with the trainable, by value.
        ray.cloudpickle.register_pickle_by_value(sys.modules[mod.__name__.split(".")[0]])
    return obj


def rllib_param_space(
    algorithm: str,
    env: str,
    settings: Mapping[str, Any] | None = None,
    searched: tuple[str, ...] | list[str] = (),
) -> dict:
    """The fixed part of an RLlib algorithm's config as a plain dict for Tune's param_space.

    `settings` are AlgorithmConfig attributes (e.g. {"num_env_runners": 1}); the `searched`
    hyperparameters are filled in per trial by the scheduler, so they (and RLlib's private
    spelling of some, e.g. `_train_batch_size_per_learner`) are left out.
    """
    from ray.tune.registry import get_trainable_cls

    try:
        cls = get_trainable_cls(algorithm)
    except Exception as e:
        raise ValueError(
            f"trainable = 'rllib:{algorithm}': no RLlib algorithm of that name ({e}); "
            "use e.g. rllib:PPO, rllib:IMPALA, rllib:APPO, rllib:SAC (pip install 'gpbt[rllib]')"
        ) from e
    if not hasattr(cls, "get_default_config"):
        raise ValueError(f"trainable = 'rllib:{algorithm}' is not an RLlib algorithm")
    config = cls.get_default_config().environment(env)
    settings = dict(settings or {})
    unknown = [k for k in settings if not hasattr(config, k)]
    if unknown:
        raise ValueError(
            f"rllib setting {unknown[0]!r} is not an attribute of {algorithm}'s "
            "AlgorithmConfig; see the RLlib docs for the names"
        )
    return rllib_fixed_config(config.update_from_dict(settings), searched)


def rllib_fixed_config(config: Any, searched: Iterable[str] = ()) -> dict:
    """An RLlib AlgorithmConfig as Tune's param_space: a plain dict without the `searched`
    hyperparameters (and RLlib's private spellings of them, e.g. `_train_batch_size_per_learner`),
    which the scheduler fills in per trial."""
    d = config.to_dict()
    for name in searched:
        d.pop(name, None)
        d.pop("_" + name, None)
    return d


def trial_resources(trainable: Any, param_space: Mapping[str, Any]) -> dict[str, float] | None:
    """What one trial of `trainable` asks Ray for ({"CPU": 3.0, ...}); None if unknown. RLlib
    algorithms compute it from their config (main process, learners, env runners)."""
    cls = trainable
    if isinstance(trainable, str):
        from ray.tune.registry import get_trainable_cls

        cls = get_trainable_cls(trainable)
    request = getattr(cls, "default_resource_request", None)
    if request is None:
        return None
    try:
        req = request(dict(param_space))
    except Exception:  # a config the algorithm rejects fails again, with its message, in fit()
        logger.debug("default_resource_request failed", exc_info=True)
        return None
    if req is None:
        return None
    if hasattr(req, "required_resources"):  # a PlacementGroupFactory
        return {k: float(v) for k, v in req.required_resources.items() if v}
    return {"CPU": float(req.cpu + req.extra_cpu), "GPU": float(req.gpu + req.extra_gpu)}


def _check_trial_fits(trainable: Any, param_space: Mapping, resources: Any, *, local: bool):
    """A trial that needs more than the whole cluster would wait PENDING forever: say so."""
    if resources:
        need = {k.upper() if k.lower() in ("cpu", "gpu") else k: float(v)
                for k, v in dict(resources).items()}  # fmt: skip
    else:
        need = trial_resources(trainable, param_space)
    if not need:
        return
    have = ray.cluster_resources()
    short = {k: (v, have.get(k, 0.0)) for k, v in need.items() if v > have.get(k, 0.0) + 1e-9}
    if not short:
        return
    what = ", ".join(f"{v:g} {k}" for k, (v, _) in short.items())
    has = ", ".join(f"{h:g} {k}" for k, (_, h) in short.items())
    message = (
        f"one trial needs {what} but the Ray cluster has {has} in all, so every trial would "
        "wait forever; lower what a trial asks for (RLlib: rllib.num_env_runners = 0, "
        "num_learners = 0; otherwise resources_per_trial) or give Ray more (num_cpus, or an "
        "address of a larger cluster)"
    )
    if local:
        raise ValueError(message)
    logger.warning("%s (an autoscaling cluster may still add nodes)", message)


def _trainable_from_config(config: Mapping[str, Any]) -> tuple[Any, dict, bool]:
    spec = config.get("trainable")
    if not spec:
        raise ValueError(
            "engine = 'ray' needs trainable = 'module:Class' | 'module:function' | 'rllib:PPO'"
        )
    fixed = dict(config.get("param_space") or {})
    if spec.startswith("rllib:"):
        algo = spec.split(":", 1)[1]
        env = config.get("env")
        if not env:
            raise ValueError(f"trainable = {spec!r} needs env = '...' (a Gymnasium id)")
        names = Space(config["space"]).names if "space" in config else ()
        space = rllib_param_space(algo, env, config.get("rllib"), names)
        space.update(fixed)
        return algo, space, False
    obj = _import_object(spec)
    from ray.tune import Trainable

    if inspect.isclass(obj) and issubclass(obj, Trainable):
        reuse = obj.reset_config is not Trainable.reset_config
    elif callable(obj):
        reuse = True
    else:
        raise ValueError(f"trainable = {spec!r} is neither a Tune Trainable class nor a function")
    return obj, fixed, reuse


def run_ray(
    spec: RunSpec | Mapping[str, Any],
    folder: str | os.PathLike,
    *,
    resume: bool = False,
    on_event: Callable[[dict], None] | None = None,
):
    """Run one experiment on Ray Tune (engine = "ray") and return its `Summary` (`run_engine`
    with this engine); the folder is locked while it runs (a second run on it is refused).
    `spec` is a `RunSpec` (a plain config dict is validated into one). The keys are the shared
    ones plus `OPTIONS` above; the method's option table goes under its name. `on_event`, if
    given, gets a dict per report. Ray runs are resumed by Ray Tune itself
    (tune.Tuner.restore), not with `resume=True`."""
    return run_with(ENGINE, spec, folder, resume=resume, on_event=on_event)


def _prepare(spec: RunSpec, folder, *, resume: bool, on_event, supervise: bool):
    """Everything that can refuse the run, checked before the folder is locked and the run's
    live log opened (so a refused run leaves no W&B run behind): the trainable, the result
    keys to store, the Ray release, and that Ray starts (or its cluster answers) with room for
    one trial. The Ray started here is shut down when the run ends; a run refused after this
    (its folder's lock held by another run, its live log failing to open) leaves it up until
    this process exits, when Ray shuts itself down."""
    if resume:
        from gpbt.errors import ConfigError

        raise ConfigError(
            "Ray runs are resumed by Ray Tune itself (tune.Tuner.restore); see docs/ray.md"
        )
    config = spec.to_dict()
    trainable, param_space, reuse = _trainable_from_config(config)
    store_metrics = _names(config.get("store_metrics"), "store_metrics")
    check_ray_internals()
    resources = config.get("resources_per_trial")
    started_here = _start_ray(config)
    try:
        _check_trial_fits(trainable, param_space, resources, local=started_here)
        if resources and not isinstance(trainable, str):
            trainable = tune.with_resources(trainable, dict(resources))
    except BaseException:
        if started_here:
            ray.shutdown()
        raise

    def run(live_log: LiveLog | None) -> Summary:
        try:
            if live_log is not None:
                live_log.open()  # every refusal came before the lock: W&B starts before Tune
            return _run_tune(
                spec, folder, trainable, param_space,
                reuse=reuse, store_metrics=store_metrics, live_log=live_log, on_event=on_event,
            )  # fmt: skip
        finally:
            if started_here:
                ray.shutdown()

    return run


def _start_ray(config: Mapping[str, Any]) -> bool:
    """Connect to the cluster at `address`, or start Ray here; False if Ray already runs in
    this process (the caller's, left running)."""
    if ray.is_initialized():
        return False
    address = config.get("address")
    kwargs: dict[str, Any] = {"address": address} if address else {}
    if not address and config.get("num_cpus"):
        kwargs["num_cpus"] = int(config["num_cpus"])
    ray.init(**kwargs, include_dashboard=False, log_to_driver=False)
    return True


def _run_tune(
    spec: RunSpec,
    folder: str | os.PathLike,
    trainable: Any,
    param_space: dict,
    *,
    reuse: bool,
    store_metrics: tuple[str, ...],
    live_log: LiveLog | None,
    on_event=None,
) -> Summary:
    config = spec.to_dict()
    progress = on_event
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    scheduler = GPBTScheduler(
        # the core comes from the spec, the one place a scheduler is built from a config
        scheduler=spec.scheduler(max_time=spec.total_steps),
        time_attr=spec.time_attr,
        metric=spec.metric,
        mode=spec.mode,
        store=folder,
        store_metrics=store_metrics,
        experiment_config=config,
        live_log=live_log,  # run_engine's: it opens and closes it, as for every engine
    )
    callbacks = [_ProgressCallback(scheduler, progress)] if progress else []
    start = _time.perf_counter()
    try:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                scheduler=scheduler,
                num_samples=spec.population,
                reuse_actors=bool(config.get("reuse_actors", reuse)),
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(folder),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=config.get("num_to_keep")),
                # a trial whose actor or node died restarts from its last checkpoint
                failure_config=tune.FailureConfig(max_failures=int(config["max_failures"])),
                verbose=0 if progress else 1,
                callbacks=callbacks,
            ),
        )
        results = tuner.fit()
    finally:
        scheduler.close()  # its last rows go to the store and the live log, still open
    wall = _time.perf_counter() - start
    return Summary.from_dict(_summary(scheduler, results, folder, wall))


def _names(value: Any, field: str) -> tuple[str, ...]:
    """A list of result keys; a bare string would otherwise be read as one key per letter."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not all(isinstance(v, str) for v in value):
        raise ValueError(f"{field} must be a list of result keys (strings), got {value!r}")
    return tuple(value)


class _ProgressCallback(tune.Callback):
    def __init__(self, scheduler: GPBTScheduler, progress: Callable[[dict], None]):
        self._scheduler, self._progress = scheduler, progress

    def on_trial_result(self, iteration, trials, trial, result, **info):
        member = self._scheduler.member_of(trial)
        if member is None:
            return
        self._progress(
            {
                "type": "report",
                "member": member,
                "trial_id": trial.trial_id,
                "time": result.get(self._scheduler.time_attr),
                "score": result.get(self._scheduler.metric),
                "config": self._scheduler.core.config(member),
            }
        )


def _summary(scheduler: GPBTScheduler, results, folder: Path, wall: float) -> dict[str, Any]:
    best = scheduler.best()
    errors = [r.error for r in results if r.error is not None]
    scores = scheduler.latest_scores()
    return {
        "engine": "ray",
        "method": scheduler.method,
        "folder": str(folder),
        "population": len(scores),
        "best_member": None if best is None else best[0],
        "best_trial": None if best is None else best[1],
        "best_score": None if best is None else best[2],
        "score_basis": f"last reported {scheduler.metric}",
        "population_mean": population_mean(scores),
        "best_config": None if best is None else scheduler.core.config(best[0]),
        "final_configs": [c for _, c in sorted(scheduler.core.configs().items())],
        "exploits": scheduler.num_exploits,
        "finished": not errors,
        "decisions": scheduler.num_decisions,
        "errors": len(errors),
        "wall_seconds": wall,
    }


ENGINE = Engine(
    "ray",
    options=OPTIONS,
    defaults=DEFAULTS,
    check_config=check_config,
    prepare=_prepare,
    supports=("export", "replay"),
    driver="asynchronous",
    grid=True,
    weights="tune-checkpoint",
)
