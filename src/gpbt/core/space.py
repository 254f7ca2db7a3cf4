"""Typed search spaces and the unit-cube view every update strategy works in.

A `Space` maps parameter names (nested dicts allowed; nested names are joined with ".") to
`Float`, `Int` or `Choice`. Strategies never touch raw values directly: they move members in
`[0, 1]^d` (log parameters through log space, integers and ordered choices over their range or
index) so that one step size means the same thing for a learning rate and for a batch size.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Float", "Int", "Choice", "Space", "Param"]


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def check(self, name: str) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(
                f"parameter '{name}': bounds must be finite numbers, got "
                f"low={self.low}, high={self.high}"
            )
        _check_range(name, self.low, self.high, self.log)

    def sample(self, rng: np.random.Generator) -> float:
        return self.from_unit(rng.uniform())

    def to_unit(self, value: float) -> float:
        if self.log:
            return (math.log(value) - math.log(self.low)) / (
                math.log(self.high) - math.log(self.low)
            )
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return float(min(max(math.exp(lo + u * (hi - lo)), self.low), self.high))
        return float(self.low + u * (self.high - self.low))

    def to_raw(self, value: Any) -> float:
        return float(value)

    def from_raw(self, x: float) -> float:
        return float(min(max(x, self.low), self.high))

    def raw_bounds(self) -> tuple[float, float]:
        return float(self.low), float(self.high)

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= value <= self.high


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False

    def check(self, name: str) -> None:
        if int(self.low) != self.low or int(self.high) != self.high:
            raise ValueError(
                f"parameter '{name}': int bounds must be whole numbers, got "
                f"low={self.low}, high={self.high}; use type='float' for fractions"
            )
        _check_range(name, self.low, self.high, self.log)

    def _float(self) -> Float:
        # Integers live in the continuous interval [low - 0.5, high + 0.5) in unit space so that
        # every integer owns an equal share of [0, 1] and uniform sampling stays uniform.
        if self.log:
            return Float(self.low, self.high, log=True)
        return Float(self.low - 0.5, self.high + 0.5 - 1e-9)

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            return self.from_unit(rng.uniform())
        return int(rng.integers(self.low, self.high + 1))

    def to_unit(self, value: int) -> float:
        return self._float().to_unit(value)

    def from_unit(self, u: float) -> int:
        return int(min(max(round(self._float().from_unit(u)), self.low), self.high))

    def to_raw(self, value: Any) -> float:
        return float(value)

    def from_raw(self, x: float) -> int:
        return int(min(max(round(x), self.low), self.high))

    def raw_bounds(self) -> tuple[float, float]:
        return float(self.low), float(self.high)

    def contains(self, value: Any) -> bool:
        return _is_number(value) and float(value).is_integer() and self.low <= value <= self.high


@dataclass(frozen=True)
class Choice:
    values: tuple
    ordered: bool = True

    def __init__(self, values, ordered: bool = True):
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "ordered", bool(ordered))

    def check(self, name: str) -> None:
        if len(self.values) == 0:
            raise ValueError(
                f"parameter '{name}': a choice needs at least one value; "
                "list the allowed values, e.g. values = [16, 32, 64]"
            )
        seen = []
        for v in self.values:
            if v in seen:
                raise ValueError(
                    f"parameter '{name}': value {v!r} is listed twice; each choice must appear once"
                )
            seen.append(v)

    def index(self, value: Any) -> int:
        for i, v in enumerate(self.values):
            # True == 1 in Python; a choice between 1 and True must still tell them apart.
            if v == value and isinstance(v, bool) == isinstance(value, bool):
                return i
        raise ValueError(f"{value!r} is not one of {list(self.values)}")

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def to_unit(self, value: Any) -> float:
        n = len(self.values)
        return 0.5 if n == 1 else self.index(value) / (n - 1)

    def from_unit(self, u: float) -> Any:
        n = len(self.values)
        u = min(max(float(u), 0.0), 1.0)
        return self.values[int(round(u * (n - 1)))]

    def to_raw(self, value: Any) -> float:
        return float(self.index(value))

    def from_raw(self, x: float) -> Any:
        return self.values[int(min(max(round(x), 0), len(self.values) - 1))]

    def raw_bounds(self) -> tuple[float, float]:
        return 0.0, float(len(self.values) - 1)

    def contains(self, value: Any) -> bool:
        try:
            self.index(value)
            return True
        except ValueError:
            return False


Param = Float | Int | Choice


def _check_range(name: str, low: float, high: float, log: bool) -> None:
    """The bound rules Float and Int share."""
    if low >= high:
        raise ValueError(
            f"parameter '{name}': low ({low}) must be below high ({high}); swap them or widen "
            "the range"
        )
    if log and low <= 0:
        raise ValueError(
            f"parameter '{name}': log=true needs low > 0 (got {low}); use a positive lower "
            "bound or log=false"
        )


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


_PARAM_TYPES = {"float": Float, "int": Int, "choice": Choice}


def _flag(name: str, spec: Mapping, key: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"parameter '{name}': '{key}' must be true or false, got {value!r}")
    return value


def _param_from_dict(name: str, spec: Mapping) -> Param:
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _PARAM_TYPES:
        raise ValueError(
            f"parameter '{name}': unknown type {kind!r}; use one of "
            f'{sorted(_PARAM_TYPES)}, e.g. {{ type = "float", low = 0.1, high = 0.5 }}'
        )
    allowed = {
        "float": {"type", "low", "high", "log"},
        "int": {"type", "low", "high", "log"},
        "choice": {"type", "values", "ordered"},
    }[kind]
    extra = set(spec) - allowed
    if extra:
        raise ValueError(
            f"parameter '{name}': unknown key(s) {sorted(extra)} for type "
            f"'{kind}'; allowed keys are {sorted(allowed)}"
        )
    if kind == "choice":
        if not isinstance(spec.get("values"), list | tuple):
            raise ValueError(
                f"parameter '{name}': a choice needs a list of 'values', e.g. values = [16, 32]"
                + (f", got {spec['values']!r}" if "values" in spec else "")
            )
        return Choice(spec["values"], ordered=_flag(name, spec, "ordered", True))
    for key in ("low", "high"):
        if key not in spec:
            raise ValueError(f"parameter '{name}': missing '{key}' for type '{kind}'")
        if not _is_number(spec[key]):
            raise ValueError(
                f"parameter '{name}': '{key}' must be a finite number, got {spec[key]!r}"
            )
    cls = _PARAM_TYPES[kind]
    return cls(spec["low"], spec["high"], log=_flag(name, spec, "log", False))


class Space:
    """Named hyperparameters; the single source of truth for sampling, bounds and the unit view."""

    def __init__(self, params: Mapping[str, Any]):
        self.params: dict[str, Param] = {}
        self._flatten(params, prefix="")
        if not self.params:
            raise ValueError("the search space is empty; add at least one parameter")
        for name, p in self.params.items():
            p.check(name)
        self.names: tuple[str, ...] = tuple(self.params)

    def _flatten(self, params: Mapping[str, Any], prefix: str) -> None:
        for key, value in params.items():
            name = f"{prefix}{key}"
            if isinstance(value, Float | Int | Choice):
                self.params[name] = value
            elif isinstance(value, Mapping) and "type" in value:
                self.params[name] = _param_from_dict(name, value)
            elif isinstance(value, Mapping):
                self._flatten(value, prefix=name + ".")
            else:
                raise ValueError(
                    f"parameter '{name}': unknown parameter type "
                    f"{type(value).__name__}; use Float, Int or Choice (or a "
                    "table with type = 'float' | 'int' | 'choice')"
                )

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Space:
        """Build from a TOML/JSON-style table, e.g.
        `{lr = {type="float", low=1e-5, high=1e-3, log=true}}`."""
        return cls(spec)

    def to_dict(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for name, p in self.params.items():
            if isinstance(p, Choice):
                out[name] = {"type": "choice", "values": list(p.values), "ordered": p.ordered}
            else:
                out[name] = {
                    "type": "float" if isinstance(p, Float) else "int",
                    "low": p.low,
                    "high": p.high,
                    "log": p.log,
                }
        return out

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Space({self.params!r})"

    # --- configs are flat dicts keyed by the dotted names; nest() gives the user's shape back
    def flat(self, config: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def walk(d: Mapping, prefix: str) -> None:
            for k, v in d.items():
                name = f"{prefix}{k}"
                if isinstance(v, Mapping) and name not in self.params:
                    walk(v, name + ".")
                else:
                    out[name] = v

        walk(config, "")
        return out

    @staticmethod
    def nest(config: Mapping[str, Any], into: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Dotted names to nested dicts: {"opt.lr": 1} -> {"opt": {"lr": 1}}. With `into`, the
        values are written into a deep copy of that nested config (a trainable's options, a
        Ray trial's config), leaving its other keys as they are."""
        out: dict[str, Any] = copy.deepcopy(dict(into)) if into is not None else {}
        for name, v in config.items():
            parts = name.split(".")
            d = out
            for p in parts[:-1]:
                if not isinstance(d.get(p), dict):
                    d[p] = dict(d[p]) if isinstance(d.get(p), Mapping) else {}
                d = d[p]
            d[parts[-1]] = v
        return out

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {name: p.sample(rng) for name, p in self.params.items()}

    def validate(self, config: Mapping[str, Any], partial: bool = False) -> dict[str, Any]:
        """Return the flat config, or raise ValueError naming the offending parameter.
        `partial`: the config may leave names out (a start point); those it gives must fit."""
        flat = self.flat(config)
        unknown = sorted(set(flat) - set(self.params))
        if unknown:
            raise ValueError(
                f"parameter '{unknown[0]}' is not in the search space; known "
                f"parameters are {list(self.names)}"
            )
        for name, p in self.params.items():
            if name not in flat and partial:
                continue
            if name not in flat:
                raise ValueError(
                    f"parameter '{name}' is missing from the config; give it a "
                    "value inside the search space"
                )
            value = flat[name]
            if not p.contains(value):
                raise ValueError(
                    f"parameter '{name}': value {value!r} is outside the search "
                    f"space ({self._describe(p)}); choose a value inside it or "
                    "widen the space"
                )
        return flat

    @staticmethod
    def _describe(p: Param) -> str:
        if isinstance(p, Choice):
            return f"one of {list(p.values)}"
        kind = "integer" if isinstance(p, Int) else "number"
        return f"{kind} in [{p.low}, {p.high}]"

    def clip(self, config: Mapping[str, Any]) -> dict[str, Any]:
        flat = self.flat(config)
        out = {}
        for name, p in self.params.items():
            v = flat[name]
            out[name] = v if isinstance(p, Choice) else p.from_raw(v)
        return out

    def to_unit(self, config: Mapping[str, Any]) -> np.ndarray:
        flat = self.flat(config)
        return np.array([p.to_unit(flat[n]) for n, p in self.params.items()], dtype=float)

    def from_unit(self, u: np.ndarray) -> dict[str, Any]:
        return {n: p.from_unit(x) for (n, p), x in zip(self.params.items(), u, strict=True)}

    def point(self, u: float) -> dict[str, Any]:
        """The config `u` of the way along every range in the unit space (0.5: the middle),
        as plain values: a fixed config that lies in the space (a method's example options)."""
        return {n: to_plain(p.from_unit(u)) for n, p in self.params.items()}

    def to_raw(self, config: Mapping[str, Any]) -> np.ndarray:
        flat = self.flat(config)
        return np.array([p.to_raw(flat[n]) for n, p in self.params.items()], dtype=float)

    def from_raw(self, x: np.ndarray) -> dict[str, Any]:
        return {n: p.from_raw(v) for (n, p), v in zip(self.params.items(), x, strict=True)}

    def raw_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        b = np.array([p.raw_bounds() for p in self.params.values()], dtype=float)
        return b[:, 0], b[:, 1]

    def diversity(self, configs: list[Mapping[str, Any]]) -> float:
        """Mean pairwise Euclidean distance in the unit cube (the benchmark's diversity measure)."""
        if len(configs) < 2:
            return 0.0
        u = np.stack([self.to_unit(c) for c in configs])
        d = np.sqrt(((u[:, None, :] - u[None, :, :]) ** 2).sum(-1))
        n = len(configs)
        return float(d.sum() / (n * (n - 1)))


def to_plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so configs serialise and compare cleanly."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
