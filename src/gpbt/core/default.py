"""The untuned reference: every member trains with one fixed config, nothing is ever exploited.

`method = "default"` answers "did tuning help at all?": the same budget, population and initial
weights as the tuning methods, but every member keeps the agent's default hyperparameters for
the whole run (the benchmark's `default` row). The members' configs are `values`, by default
empty: an engine fills every hyperparameter a config leaves out with the agent's own default
(the vector engine's `hyperparameters_to_arrays`, a local trainable's `setup`), so an empty
config *is* "the agent's defaults", exactly as the agent defines them for its static sizes.
`values` may pin some of the searched hyperparameters to chosen values instead; they need not
lie inside the searched ranges (a default often does not).

Pure and seeded like every scheduler: it draws nothing, so its state is its members.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpbt.core.schedulers import Member, RandomSearch
from gpbt.core.space import Choice, Space, to_plain


class DefaultConfig(RandomSearch):
    """No search, no exploit: `initial_population(n)` is n copies of `values`."""

    method = "default"
    tunes = False

    def __init__(
        self,
        space: Space | dict,
        *,
        values: Mapping[str, Any] | None = None,
        **common: Any,
    ):
        # the rest (perturbation_interval, burn_in_period, mode, seed, max_time) as RandomSearch
        super().__init__(space, **common)
        self.values = _check_values(self.space, values or {})

    @classmethod
    def example_options(cls, space: Space) -> dict[str, Any]:
        # the middle of the space: a config every toy trains with, inside every range
        return {"values": space.point(0.5)}

    def initial_population(self, n: int) -> list[dict[str, Any]]:
        if n < 1:
            raise ValueError(f"population={n}: need at least 1 member")
        for i in range(n):
            self.add_member(i, self.values)
        return [dict(self.values) for _ in range(n)]

    def start_at(self, points) -> None:
        raise ValueError(
            "method 'default' trains every member at the same values and never searches; "
            "start_points are for the methods that search (give [default] values = {...} "
            "to change what it trains)"
        )

    def add_member(self, member: int, config: dict[str, Any]) -> None:
        """Every member gets `values`, whatever an engine proposes: this method never searches."""
        self.members[member] = Member(config=dict(self.values), strategy_state={})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "values": dict(self.values)}


def _check_values(space: Space, values: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise ValueError(
            f"method 'default' option 'values' must be a table of hyperparameter values, got "
            f"{values!r}; leave it out to train with the agent's defaults"
        )
    flat = space.flat(values)
    out = {}
    for name, value in flat.items():
        if name not in space.params:
            raise ValueError(
                f"method 'default' option values.{name}: not in the search space "
                f"{list(space.names)}; a hyperparameter that is never searched belongs in "
                "[hyperparameters]"
            )
        p = space.params[name]
        if isinstance(p, Choice):
            if value not in p.values:
                raise ValueError(
                    f"method 'default' option values.{name} = {value!r}: use one of "
                    f"{list(p.values)}"
                )
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"method 'default' option values.{name} = {value!r}: must be a number")
        out[name] = to_plain(value)
    return out
