"""Build a scheduler from a method name and a table of options (what config files and the
benchmark speak), with one clear error for an unknown method or option."""

from __future__ import annotations

import inspect
from typing import Any

from gpbt.core.default import DefaultConfig
from gpbt.core.fixed_schedule import FixedSchedule
from gpbt.core.mf_pbt import MFPBT
from gpbt.core.patient_pbt import PatientPBT
from gpbt.core.schedulers import GPBT, PB2, PBT, PopulationScheduler, RandomSearch
from gpbt.core.space import Space, _is_number
from gpbt.core.strategies import KeepWinner, PairwiseLearning, Perturb, Resample

# "default" is the untuned reference (gpbt.core.default): the agent's defaults, no search;
# "schedule" tunes nothing either: it follows a given hyperparameter schedule (what
# `gpbt retrain` runs), so a retrained member goes through the same engines, store and
# reports as a search.
# "gpbt-pl-escape" (issue 15, pre-registered in docs/research/pairwise-preregistration.md):
# GPBT-PL whose pairs copy only a clear lead and whose losers redraw the hyperparameters they
# had already agreed on with their winner; its options are frozen in ESCAPE_OPTIONS.
# "pbt-patient" (issue 25): PBT judging a member only after a grace period since its copy, on
# a smoothed score (gpbt.core.patient_pbt).
METHODS = (
    "gpbt-pl", "gpbt-pl-escape", "pbt", "pbt-patient", "pb2", "mf-pbt", "random", "default",
    "schedule",
)  # fmt: skip
ESCAPE_OPTIONS = {"escape_distance": 0.1, "copy_margin": 0.5}
_PL_OPTIONS = set(inspect.signature(PairwiseLearning.__init__).parameters) - {"self"}
_GPBT_OPTIONS = {"pairing", "quantile_fraction", "strategy", "copy_margin"}
_STRATEGIES = {"pl": PairwiseLearning, "perturb": Perturb, "resample": Resample, "copy": KeepWinner}
# What each method option's value must be, checked before any scheduler is built so that a
# wrong type is named (the constructors' own range checks would fail on it with a TypeError).
_NUMBER, _INTEGER, _OPTIONAL_NUMBER, _FLAG, _TEXT, _NUMBERS = (
    "a number", "an integer", "a number (or absent)", "true or false", "a string",
    "a list of numbers",
)  # fmt: skip
_OPTION_KINDS = {
    **dict.fromkeys(
        (
            "quantile_fraction",
            "copy_margin",
            "resample_probability",
            "w_inertia",
            "w_winner",
            "w_center",
            "spread_jitter",
            "escape_distance",
            "kappa",
        ),
        _NUMBER,
    ),
    **dict.fromkeys(("data_window", "refit_every", "grace_intervals", "score_window"), _INTEGER),
    **dict.fromkeys(("velocity_clamp", "escape_step"), _OPTIONAL_NUMBER),
    "synch": _FLAG,
    **dict.fromkeys(("pairing", "strategy", "space", "anchor", "migration", "resample"), _TEXT),
    **dict.fromkeys(("perturbation_factors", "frequencies", "subpopulation_sizes"), _NUMBERS),
}


def _fits(kind: str, value: Any) -> bool:
    if kind == _NUMBER:
        return _is_number(value)
    if kind == _INTEGER:
        return _is_number(value) and float(value).is_integer()
    if kind == _OPTIONAL_NUMBER:
        return value is None or _is_number(value)
    if kind == _FLAG:
        return isinstance(value, bool)
    if kind == _TEXT:
        return isinstance(value, str)
    return isinstance(value, list | tuple) and all(_is_number(v) for v in value)


def _check_option_types(method: str, options: dict[str, Any]) -> None:
    for key, value in options.items():
        kind = _OPTION_KINDS.get(key)
        if kind is not None and not _fits(kind, value):
            raise ValueError(f"method '{method}' option {key!r} = {value!r} must be {kind}")


def make_scheduler(
    method: str,
    space: Space | dict,
    *,
    perturbation_interval: float,
    seed: int = 0,
    mode: str = "max",
    burn_in_period: float = 0,
    max_time: float | None = None,
    options: dict[str, Any] | None = None,
    start_points: list[dict[str, Any]] | None = None,
) -> PopulationScheduler:
    """`options` is the method's own table, e.g. {pairing = "sync", w_inertia = 0.5};
    `start_points`: configs (or parts of them) that members 0, 1, ... start at instead of a
    draw (`PopulationScheduler.start_at`).

    gpbt-pl also takes `strategy = "pl" | "perturb" | "resample" | "copy"` (ablations: GPBT
    pairing with PBT's explore, for instance); PL's options go to PairwiseLearning, Perturb's
    (`perturbation_factors`, `resample_probability`) to Perturb.
    """
    common = dict(
        perturbation_interval=perturbation_interval,
        seed=seed,
        mode=mode,
        burn_in_period=burn_in_period,
        max_time=max_time,
    )
    _check_option_types(method, dict(options or {}))
    scheduler = _build_scheduler(method, space, common, dict(options or {}))
    if start_points:
        scheduler.start_at(start_points)
    return scheduler


def _build_scheduler(
    method: str, space: Space | dict, common: dict[str, Any], options: dict[str, Any]
) -> PopulationScheduler:
    name = method
    if method == "gpbt-pl-escape":
        if options.get("strategy", "pl") != "pl":
            raise ValueError(
                "method 'gpbt-pl-escape' is Pairwise Learning with an escape; its strategy "
                "cannot be changed (use method 'gpbt-pl' with strategy = ... instead)"
            )
        options = {**ESCAPE_OPTIONS, **options}
        method = "gpbt-pl"
    if method == "gpbt-pl":
        pairing = options.pop("pairing", "random")
        quantile = options.pop("quantile_fraction", 0.25)
        copy_margin = options.pop("copy_margin", 0.0)
        strategy_name = options.pop("strategy", "pl")
        if strategy_name not in _STRATEGIES:
            raise ValueError(
                f"method option 'strategy' = {strategy_name!r} is not known; use "
                f"one of {sorted(_STRATEGIES)}"
            )
        if strategy_name == "pl":
            _reject_unknown(name, options, _PL_OPTIONS | _GPBT_OPTIONS)
            strategy = PairwiseLearning(**options)
        elif strategy_name == "perturb":
            _reject_unknown(
                method, options, {"perturbation_factors", "resample_probability"} | _GPBT_OPTIONS
            )
            strategy = Perturb(
                tuple(options.get("perturbation_factors", (1.2, 0.8))),
                options.get("resample_probability", 0.25),
            )
        else:
            _reject_unknown(method, options, _GPBT_OPTIONS)
            strategy = _STRATEGIES[strategy_name]()
        return GPBT(
            space,
            strategy,
            pairing=pairing,
            quantile_fraction=quantile,
            copy_margin=copy_margin,
            method=name,
            **common,
        )
    if method in ("pbt", "pbt-patient"):
        # resample: Perturb's resample rule (issue 25)
        pbt_options = {"quantile_fraction", "resample_probability", "perturbation_factors", "synch"}
        pbt_options |= {"resample"}
        patient = {"grace_intervals", "score_window"} if method == "pbt-patient" else set()
        _reject_unknown(method, options, pbt_options | patient)
        if "perturbation_factors" in options:
            options["perturbation_factors"] = tuple(options["perturbation_factors"])
        return (PatientPBT if patient else PBT)(space, **common, **options)
    if method == "pb2":
        _reject_unknown(
            method, options, {"quantile_fraction", "data_window", "kappa", "refit_every", "synch"}
        )
        return PB2(space, **common, **options)
    if method == "mf-pbt":
        allowed = set(inspect.signature(MFPBT).parameters) - set(common) - {"space"}
        _reject_unknown(method, options, allowed)
        return MFPBT(space, **common, **options)
    if method == "random":
        _reject_unknown(method, options, set())
        return RandomSearch(space, **common)
    if method == "default":
        _reject_unknown(method, options, {"values"})
        return DefaultConfig(space, **common, **options)
    if method == "schedule":
        _reject_unknown(method, options, {"entries"})
        return FixedSchedule(space, options.get("entries"), **common)
    raise ValueError(f"method = {method!r} is not known; use one of {list(METHODS)}")


def _reject_unknown(method: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        hint = f"allowed options are {sorted(allowed)}" if allowed else "it takes no options"
        raise ValueError(f"method '{method}' has no option {unknown[0]!r}; {hint}")
