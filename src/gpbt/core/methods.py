"""Every method by name, in one table, and `make_scheduler`: build one from a method name and a
table of options (what config files and the benchmark speak), with one clear error for an
unknown method or option or a value of the wrong type.

Each method is one `register_method` line: its name and its scheduler class, plus, for a named
variant, the options it starts from (`preset`) or pins (`fixed`). Nothing else is kept by hand:
what a method's options table may hold, and of which type, is read from the constructors, as
Optuna reads a sampler's options from its signature:

- the class's own keyword arguments (and, where its constructor forwards `**common` to a
  parent, the parent's, up to `PopulationScheduler`);
- the shared settings it names in `shared_options` (declared once, on `PopulationScheduler`);
- where it lets a strategy be picked by name (`strategies`, e.g. gpbt-pl's
  `strategy = "pl" | "perturb" | "resample" | "copy"`), the picked strategy's own constructor
  arguments.

A type hint says what a value must be (`float`: a number, `int`: an integer, `bool`: true or
false, `str`: a string, `tuple[float, ...]`: a list of numbers, `X | None`: X or absent); other
hints (tables, schedules) are left to the constructor's own checks. The run settings every
method takes (perturbation_interval, seed, mode, burn_in_period, max_time) are
`make_scheduler`'s keyword arguments, never options.

Add a method: write its class (own options as keyword arguments, `**common` forwarded to the
parent) and register it below, or from your own code with `register_method`.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, KeysView, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gpbt.core.default import DefaultConfig
from gpbt.core.fixed_schedule import FixedSchedule
from gpbt.core.mf_pbt import MFPBT
from gpbt.core.patient_pbt import PatientPBT
from gpbt.core.schedulers import GPBT, PB2, PBT, PopulationScheduler, RandomSearch
from gpbt.core.space import Space, _is_number
from gpbt.core.strategies import Strategy

_REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Option:
    """One entry a method's options table may hold, as a constructor declares it."""

    name: str
    hint: Any  # the constructor's type hint (what a value must be)
    default: Any  # _REQUIRED: the constructor has no default
    for_strategy: bool = False  # an argument of the picked strategy, not of the scheduler


@dataclass(frozen=True)
class Method:
    """A registered method: `cls` built with the user's options over `preset`, and `fixed`
    options the user may not change (a named variant's identity)."""

    name: str
    cls: type[PopulationScheduler]
    preset: Mapping[str, Any]
    fixed: Mapping[str, Any]

    @property
    def tunes(self) -> bool:
        """False for a method that follows given hyperparameters instead of searching."""
        return self.cls.tunes

    def options(self, table: Mapping[str, Any] | None = None) -> dict[str, Option]:
        """The options this method takes, by name, with their defaults (a variant's preset
        and fixed values included); which strategy's options are among them depends on the
        table's `strategy` (the default strategy when absent)."""
        merged = self._merged(table or {})
        found = _scheduler_options(self.cls)
        strategy = self._strategy(merged)
        if strategy is not None:
            found.update(_strategy_options(strategy))
        for key, value in {**self.preset, **self.fixed}.items():
            if key in found:  # (an unknown one is refused by register_method)
                found[key] = dataclasses.replace(found[key], default=value)
        return found

    def build(
        self, space: Space | dict, table: Mapping[str, Any], **settings: Any
    ) -> PopulationScheduler:
        """The scheduler for `table` (the method's options) and the run `settings`."""
        merged = self._merged(table)
        allowed = self.options(merged)
        kwargs = self._checked(merged, allowed)
        missing = [o.name for o in allowed.values() if o.default is _REQUIRED]
        missing = [name for name in missing if name not in merged]
        if missing:
            raise ValueError(f"method '{self.name}' needs the option {missing[0]!r}")
        own = {k: v for k, v in kwargs.items() if not allowed[k].for_strategy}
        strategy = self._strategy(merged)
        if strategy is not None:
            picked = {k: v for k, v in kwargs.items() if allowed[k].for_strategy}
            own["strategy"] = strategy(**picked)
        return self.cls(space, **settings, method=self.name, **own)

    # ------------------------------------------------------------------ checks
    def _merged(self, table: Mapping[str, Any]) -> dict[str, Any]:
        for key, value in self.fixed.items():
            if key in table and table[key] != value:
                plain = [m.name for m in REGISTRY.values() if m.cls is self.cls and m.is_plain]
                instead = f" (use method '{plain[0]}' with {key} = ... instead)" if plain else ""
                raise ValueError(
                    f"method '{self.name}' is {self.cls.__name__} with {key} = {value!r}; its "
                    f"{key} cannot be changed{instead}"
                )
        return {**self.preset, **table, **self.fixed}

    @property
    def is_plain(self) -> bool:
        return not self.preset and not self.fixed

    def _strategy(self, merged: Mapping[str, Any]) -> type[Strategy] | None:
        table = self.cls.strategies
        if not table:
            return None
        name = merged.get("strategy")
        if name is None:
            return next(iter(table.values()))
        if not isinstance(name, str):
            raise ValueError(f"method '{self.name}' option 'strategy' = {name!r} must be a string")
        if name not in table:
            raise ValueError(
                f"method '{self.name}' option 'strategy' = {name!r} is not known; use one of "
                f"{sorted(table)}"
            )
        return table[name]

    def _checked(self, table: dict[str, Any], allowed: dict[str, Option]) -> dict[str, Any]:
        """The constructor keyword arguments for `table`, or one ValueError for an unknown
        option or a value of the wrong type."""
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            hint = f"allowed options are {sorted(allowed)}" if allowed else "it takes no options"
            raise ValueError(f"method '{self.name}' has no option {unknown[0]!r}; {hint}")
        out = {}
        for key, value in table.items():
            expected = _expected(allowed[key].hint)
            if expected is not None:
                what, fits, convert = expected
                if not fits(value):
                    raise ValueError(
                        f"method '{self.name}' option {key!r} = {value!r} must be {what}"
                    )
                value = convert(value)
            out[key] = value
        out.pop("strategy", None)  # a name here; build() passes the strategy itself
        return out


# ---------------------------------------------------------------------- reading constructors
def _parameters(function: Callable) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    return list(inspect.signature(function).parameters.values()), typing.get_type_hints(function)


def _scheduler_options(cls: type[PopulationScheduler]) -> dict[str, Option]:
    """The options `cls`'s constructor takes: its own keyword arguments, its parents' while
    each constructor forwards `**common`, and the base settings it lists in shared_options."""
    found: dict[str, Option] = {}
    for klass in cls.__mro__:
        if klass is PopulationScheduler or not issubclass(klass, PopulationScheduler):
            break
        if "__init__" not in vars(klass):
            continue
        params, hints = _parameters(klass.__init__)
        forwards = False
        for p in params[2:]:  # after self and the space
            if p.kind is p.VAR_KEYWORD:
                forwards = True
            elif p.kind is not p.VAR_POSITIONAL and p.name not in found:
                hint = hints.get(p.name, Any)
                if p.name == "strategy" and cls.strategies:
                    hint, default = str, next(iter(cls.strategies))  # picked by name
                else:
                    default = p.default
                found[p.name] = Option(p.name, hint, default)
        if not forwards:
            return found
    params, hints = _parameters(PopulationScheduler.__init__)
    base = {p.name: p for p in params}
    for name in cls.shared_options:
        found.setdefault(name, Option(name, hints.get(name, Any), base[name].default))
    return found


def _strategy_options(strategy: type[Strategy]) -> dict[str, Option]:
    if strategy.__init__ is object.__init__:
        return {}
    params, hints = _parameters(strategy.__init__)
    return {
        p.name: Option(p.name, hints.get(p.name, Any), p.default, for_strategy=True)
        for p in params[1:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _is_integer(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _is_numbers(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(_is_number(v) for v in value)


def _same(value: Any) -> Any:
    return value


_SIMPLE_HINTS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", _is_integer),
    float: ("a number", _is_number),
    str: ("a string", lambda v: isinstance(v, str)),
}


def _expected(hint: Any) -> tuple[str, Callable[[Any], bool], Callable[[Any], Any]] | None:
    """What a value for `hint` must be (in words), its test and its conversion; None: a hint
    the constructor checks itself (a table of values, a schedule)."""
    if hint in _SIMPLE_HINTS:
        return (*_SIMPLE_HINTS[hint], _same)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float):
        return "a list of numbers", _is_numbers, tuple  # TOML gives a list
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        inner = _expected(next(a for a in args if a is not type(None)))
        if inner is not None:
            what, fits, convert = inner
            return (
                f"{what} (or absent)",
                lambda v: v is None or fits(v),
                lambda v: v if v is None else convert(v),
            )
    return None


# ---------------------------------------------------------------------- the table
REGISTRY: dict[str, Method] = {}
# The names, a live view of the table (a method registered later is in it).
METHODS: KeysView[str] = REGISTRY.keys()


def register_method(
    name: str,
    cls: type[PopulationScheduler],
    *,
    preset: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> Method:
    """Make `cls` available as method `name` (configs, `make_scheduler`, the benchmark).

    `cls`: a PopulationScheduler subclass whose constructor takes the space, its own options as
    keyword arguments, and forwards `**common` (the run settings and `method`) to its parent.
    `preset`: options a named variant starts from (the user's table overrides them); `fixed`:
    options it pins. Both are checked now, as a user's table would be."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a method's name must be a non-empty string, got {name!r}")
    if name in REGISTRY:
        raise ValueError(f"method {name!r} is already registered (to {REGISTRY[name].cls})")
    if not (
        isinstance(cls, type)
        and issubclass(cls, PopulationScheduler)
        and cls is not PopulationScheduler
    ):
        raise TypeError(f"method {name!r}: {cls!r} is not a PopulationScheduler subclass")
    params = inspect.signature(cls).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        raise TypeError(
            f"method {name!r}: {cls.__name__}.__init__ must take **common and pass it to its "
            "parent (the run settings: perturbation_interval, seed, mode, ...)"
        )
    entry = Method(
        name, cls, MappingProxyType(dict(preset or {})), MappingProxyType(dict(fixed or {}))
    )
    merged = {**entry.preset, **entry.fixed}
    entry._checked(merged, entry.options(merged))
    REGISTRY[name] = entry
    return entry


def unregister_method(name: str) -> None:
    """Remove a method registered with `register_method` (a test's or a plugin's)."""
    get_method(name)
    del REGISTRY[name]


def get_method(name: str) -> Method:
    """The registered method `name`, or one ValueError listing the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"method = {name!r} is not known; use one of {list(METHODS)}")
    return REGISTRY[name]


def tuning_methods() -> list[str]:
    """The registered methods that search (all but those following given hyperparameters)."""
    return [name for name, m in REGISTRY.items() if m.tunes]


# "gpbt-pl-escape" (issue 15, pre-registered in docs/research/pairwise-preregistration.md):
# GPBT-PL whose pairs copy only a clear lead and whose losers redraw the hyperparameters they
# had already agreed on with their winner; its options are frozen in ESCAPE_OPTIONS.
ESCAPE_OPTIONS = {"escape_distance": 0.1, "copy_margin": 0.5}

register_method("gpbt-pl", GPBT)
register_method("gpbt-pl-escape", GPBT, preset=ESCAPE_OPTIONS, fixed={"strategy": "pl"})
register_method("pbt", PBT)
register_method("pb2", PB2)
register_method("random", RandomSearch)
# "default" is the untuned reference (gpbt.core.default): the agent's defaults, no search;
# "schedule" tunes nothing either: it follows a given hyperparameter schedule (what
# `gpbt retrain` runs), so a retrained member goes through the same engines, store and
# reports as a search.
# "pbt-patient" (issue 25): PBT judging a member only after a grace period since its copy, on
# a smoothed score (gpbt.core.patient_pbt). "mf-pbt" (issue 25): sub-populations exploiting at
# several frequencies, with migration (gpbt.core.mf_pbt).
register_method("pbt-patient", PatientPBT)
register_method("mf-pbt", MFPBT)
register_method("default", DefaultConfig)
register_method("schedule", FixedSchedule)


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
    scheduler = get_method(method).build(
        space,
        dict(options or {}),
        perturbation_interval=perturbation_interval,
        seed=seed,
        mode=mode,
        burn_in_period=burn_in_period,
        max_time=max_time,
    )
    if start_points:
        scheduler.start_at(start_points)
    return scheduler
