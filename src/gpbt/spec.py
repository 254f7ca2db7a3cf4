"""The run description: everything a config decides, validated once, then frozen.

`RunSpec.from_config(raw, engine)` is the one place a config dict is checked: the keys every
engine shares (declared here), the keys of the chosen engine (declared by the engine itself, in
its `Engine` object, so its documentation, its validation and its code cannot drift apart; the
caller hands it over, `gpbt.engines.validate` from the registry, so this module imports no
engine), the search
space, the method and its options. What comes out is a `RunSpec`: the search space as a
`Space`, the scheduler factory (`spec.scheduler()`), the budget, the metric and the engine's own
section, plus a read-only view of the whole validated config (what the store keeps). Engines
take a `RunSpec` and never read a config file or import `gpbt.config`.

What this module reads of an engine (`EngineOptions`, which `gpbt.engines.protocol.Engine`
is):
    name                               the engine's name
    options: dict[str, Option]         its own keys, their types and defaults
    defaults: dict[str, Any]           defaults of shared keys it decides (metric, time_attr)
    check_config(cfg) or None          checks that need several keys, raising ConfigError
    default_hyperparameters(spec) or None   the agent's defaults (start_points = ["defaults"])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpbt.core.methods import METHODS, make_scheduler
from gpbt.core.schedulers import RandomSearch
from gpbt.core.space import Choice, Int, Space
from gpbt.errors import ConfigError
from gpbt.options import OPTIONAL, REQUIRED, Option

# Keys every engine shares. `metric` and `time_attr` get the engine's own DEFAULTS.
COMMON_OPTIONS: dict[str, Option] = {
    "engine": Option(str, "vector", "vector | local | ray"),
    "name": Option(str, "", "a name for the run folder"),
    "method": Option(str, REQUIRED, " | ".join(METHODS)),
    "population": Option(int, REQUIRED, "members trained at once", above=0),
    "total_steps": Option(
        (int, float), REQUIRED, "budget per member, in units of time_attr", above=0
    ),
    "perturbation_interval": Option(
        (int, float), REQUIRED, "time_attr units between decisions", above=0
    ),
    "burn_in_period": Option((int, float), 0, "no decision before this time", at_least=0),
    "seed": Option(int, 0, "same seed => same initial population for every method", at_least=0),
    "mode": Option(str, "max", "max or min"),
    "metric": Option(str, None, "the reported value members are ranked by", nonempty=True),
    "time_attr": Option(str, None, "what time is counted in", nonempty=True),
    "space": Option(dict, REQUIRED, "the search space, one entry per hyperparameter"),
    "checkpoint_interval": Option(
        (int, float), None, "default: every perturbation interval", above=0
    ),
    "logging": Option(dict, OPTIONAL, "live TensorBoard / W&B curves (gpbt.live_log)"),
    "start_points": Option(
        list, OPTIONAL, 'configs (or "defaults") members 0, 1, ... start at instead of a draw'
    ),
}

# A start point given as this string stands for the agent's default hyperparameters.
DEFAULTS_POINT = "defaults"

_EXAMPLES = {
    "method": 'method = "gpbt-pl"',
    "population": "population = 8",
    "total_steps": "total_steps = 1_000_000",
    "perturbation_interval": "perturbation_interval = 50_000",
    "space": '[space]\nlr = { type = "float", low = 1e-5, high = 1e-3, log = true }',
    "env": 'env = "CartPole-v1"',
    "trainable": 'trainable = "my_module:MyTrainable"',
}


class EngineOptions(Protocol):
    """What validating a config needs of its engine (`gpbt.engines.protocol.Engine`)."""

    name: str
    options: Mapping[str, Option]
    defaults: Mapping[str, Any]
    check_config: Callable[[dict[str, Any]], None] | None
    default_hyperparameters: Callable[[Any], Mapping[str, Any]] | None


@dataclass(frozen=True)
class RunSpec(Mapping):
    """A validated run. Typed fields for what every engine uses; `spec[key]` reads any key of
    the validated config (engine options included), which is also what the store records."""

    engine: str
    method: str
    space: Space
    population: int
    total_steps: float
    perturbation_interval: float
    burn_in_period: float
    seed: int
    mode: str
    metric: str
    time_attr: str
    checkpoint_interval: float
    method_options: Mapping[str, Any]
    _config: dict[str, Any] = field(repr=False)
    # the engine it was validated against, to validate again (`replace`)
    _engine: EngineOptions = field(repr=False, compare=False)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, raw: Mapping[str, Any], engine: EngineOptions) -> RunSpec:
        """Fill defaults and check everything that can be checked without training, for the
        engine `engine` (the one `raw` names: `gpbt.engines.validate` looks it up)."""
        if isinstance(raw, RunSpec):
            return raw
        cfg = copy.deepcopy(dict(raw))
        cfg.setdefault("engine", engine.name)
        if cfg["engine"] != engine.name:
            raise ValueError(f"a config for engine {cfg['engine']!r} given to {engine.name!r}")
        allowed = {**COMMON_OPTIONS, **engine.options}
        # Each method may have an options table named after it; other methods' tables are
        # allowed too so one file can be switched between methods with method=... overrides.
        unknown = sorted(k for k in cfg if k not in allowed and k not in METHODS)
        if unknown:
            raise ConfigError(
                f"unknown key {unknown[0]!r} in the config for engine '{engine.name}'; "
                f"allowed keys are {sorted(allowed)} plus a table per method {list(METHODS)}"
            )
        defaults = engine.defaults
        for key, opt in allowed.items():
            if opt.default is OPTIONAL and key not in cfg:
                continue
            if key not in cfg or cfg[key] is None:
                if opt.default is REQUIRED:
                    raise ConfigError(
                        f"missing required key {key!r}; add it to the config, e.g. "
                        f"{_EXAMPLES.get(key, f'{key} = ...')}"
                    )
                cfg[key] = copy.deepcopy(defaults.get(key, opt.default))
                continue
            value = cfg[key]
            if (isinstance(value, bool) and opt.types is not bool) or not isinstance(
                value, opt.types
            ):
                names = (opt.types,) if isinstance(opt.types, type) else opt.types
                raise ConfigError(
                    f"key {key!r} = {value!r} has the wrong type; expected "
                    f"{' or '.join(t.__name__ for t in names)}"
                )
            problem = opt.problem(value)
            if problem is not None:
                raise ConfigError(f"key {key!r} = {value!r} {problem} ({opt.help})")
        method = cfg["method"]
        if method not in METHODS:
            raise ConfigError(f"method = {method!r} is not known; use one of {list(METHODS)}")
        if cfg["perturbation_interval"] > cfg["total_steps"]:
            raise ConfigError(
                f"perturbation_interval ({cfg['perturbation_interval']}) is larger than "
                f"total_steps ({cfg['total_steps']}): no member would ever be ready; lower "
                "the interval or raise the budget"
            )
        if cfg["burn_in_period"] >= cfg["total_steps"]:
            raise ConfigError(
                f"burn_in_period ({cfg['burn_in_period']}) is not below total_steps "
                f"({cfg['total_steps']}): no decision would ever be made; lower burn_in_period "
                "(0: decide from the first interval on)"
            )
        if cfg["mode"] not in ("max", "min"):
            raise ConfigError(f"mode = {cfg['mode']!r}: use 'max' or 'min'")
        for m in METHODS:
            if m in cfg and not isinstance(cfg[m], dict):
                raise ConfigError(f"'{m}' must be a table of method options, e.g. [{m}]")
        if "logging" in cfg:
            from gpbt.live_log import check_logging

            check_logging(cfg["logging"])
        if engine.check_config is not None:
            engine.check_config(cfg)
        try:
            space = Space.from_dict(cfg["space"])
        except ValueError as err:
            raise ConfigError(f"[space] {err}") from None
        if cfg["checkpoint_interval"] is None:
            cfg["checkpoint_interval"] = cfg["perturbation_interval"]
        spec = cls(
            engine=engine.name,
            method=method,
            space=space,
            population=int(cfg["population"]),
            total_steps=cfg["total_steps"],
            perturbation_interval=cfg["perturbation_interval"],
            burn_in_period=cfg["burn_in_period"],
            seed=int(cfg["seed"]),
            mode=cfg["mode"],
            metric=cfg["metric"],
            time_attr=cfg["time_attr"],
            checkpoint_interval=cfg["checkpoint_interval"],
            method_options=copy.deepcopy(cfg.get(method, {})),
            _config=cfg,
            _engine=engine,
        )
        for i, point in enumerate(cfg.get("start_points", [])):
            if isinstance(point, str) and point != DEFAULTS_POINT:
                raise ConfigError(
                    f"start_points[{i}] = {point!r}: a start point is a table of values, e.g. "
                    f'{{lr = 1e-3}}, or "{DEFAULTS_POINT}" for the agent\'s defaults'
                )
        if DEFAULTS_POINT in cfg.get("start_points", []):
            # validated again with the values written out: what the store records, what
            # replay and resume rebuild from, with no agent to build
            return spec.replace(start_points=_agent_default_points(spec, engine))
        try:
            # Building the scheduler checks the method's options against the space (PB2 and
            # unordered choices, unknown options) and the start points before anything trains;
            # the population check says there are no more points than members, and that the
            # method can split it (MF-PBT's sub-populations), without drawing a population
            # that may be too large to hold (the vector engine estimates its memory later).
            scheduler = spec.scheduler()
            scheduler.check_population(spec.population)
        except ValueError as err:
            # the core's start_points messages name their entry already
            raise ConfigError(
                str(err) if str(err).startswith("start_points") else f"[{method}] {err}"
            ) from None
        if spec.population < 2 and not isinstance(scheduler, RandomSearch):
            raise ConfigError(
                f"population = 1 with method '{method}': it copies better members into worse "
                "ones, and one member has nobody to compare with; use population >= 2 (or "
                "method = 'random' to train one config)"
            )
        return spec

    # ------------------------------------------------------------------ what engines use
    def scheduler(self, *, max_time: float | None = None):
        """A fresh scheduler for this run: the one place a method is built from a config.
        Asynchronous engines pass `max_time` (the per-member budget) so members stop there."""
        return make_scheduler(
            self.method,
            self.space,
            perturbation_interval=self.perturbation_interval,
            seed=self.seed,
            mode=self.mode,
            burn_in_period=self.burn_in_period,
            max_time=max_time,
            options=dict(self.method_options),
            start_points=self._config.get("start_points"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The validated config as a plain, JSON-able dict (a copy): what the store records."""
        return copy.deepcopy(self._config)

    def replace(self, **changes: Any) -> RunSpec:
        """A new spec with some config keys changed, validated again."""
        return RunSpec.from_config({**self.to_dict(), **changes}, self._engine)

    # ------------------------------------------------------------------ read-only mapping
    def __getitem__(self, key: str) -> Any:
        return self._config[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._config)

    def __len__(self) -> int:
        return len(self._config)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RunSpec):
            return self._config == other._config
        if isinstance(other, Mapping):
            return self._config == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a config is not a dictionary key


def with_defaults(points: list, defaults: Mapping[str, Any], space: Space) -> list:
    """`points` with each "defaults" entry replaced by `defaults`' values of the names in
    `space` (the others are not tuned: they train at their default or fixed value anyway).
    A default outside its range is refused, not clipped: member 0 would not start at the
    defaults, which is what the user asked for."""
    out = []
    for i, point in enumerate(points):
        if point != DEFAULTS_POINT:
            out.append(point)
            continue
        resolved = {}
        for name, p in space.params.items():
            if name not in defaults:
                raise ConfigError(
                    f'start_points[{i}] = "defaults": the agent gives no default for {name!r}; '
                    "write that member's values out as a table instead"
                )
            value = defaults[name]
            # as a drawn member would hold it (agents give every default as a float)
            if isinstance(p, Int) and float(value).is_integer():
                value = int(value)
            if isinstance(p, Choice) and p.contains(value):
                value = p.values[p.index(value)]
            if not p.contains(value):
                where = (
                    f"one of {list(p.values)}"
                    if isinstance(p, Choice)
                    else f"[{p.low:g}, {p.high:g}]"
                )
                raise ConfigError(
                    f'start_points[{i}] = "defaults": the default {name} = {value!r} lies '
                    f"outside its range {where} in [space]; widen the range to hold it, or "
                    f"leave {name} out of [space] (it then trains at its default)"
                )
            resolved[name] = value
        out.append(resolved)
    return out


def _agent_default_points(spec: RunSpec, engine: EngineOptions) -> list:
    """The start points with "defaults" resolved against the run's agent (built and checked
    against the space as the engine will, by its own preflight)."""
    if engine.default_hyperparameters is None:
        raise ConfigError(
            f'start_points = ["defaults"] needs an agent whose defaults gpbt knows (engine '
            f"'vector'); engine '{spec.engine}' trains your own code, so write the values "
            "out, e.g. start_points = [{lr = 1e-3, clip = 0.2}]"
        )
    defaults = engine.default_hyperparameters(spec)
    return with_defaults(list(spec["start_points"]), defaults, spec.space)
