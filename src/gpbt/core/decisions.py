"""What a scheduler tells an engine, and the audit record it keeps of why."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DecisionRecord:
    """One line of the decision log: enough to replay and audit the decision later.

    `member_score` / `partner_score` are the scores as reported (NaN stays NaN); `invalid_*`
    says the scheduler treated that score as the worst possible one.
    """

    time: float
    member: int
    kind: str  # "continue" | "exploit" | "stop"
    method: str
    partner: int | None = None
    donor: int | None = None
    member_score: float = math.nan
    partner_score: float = math.nan
    old_config: dict[str, Any] = field(default_factory=dict)
    new_config: dict[str, Any] | None = None
    velocity: dict[str, float] | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Continue:
    """Keep training with the same weights and hyperparameters."""

    record: DecisionRecord | None = None
    kind: str = "continue"


@dataclass
class Exploit:
    """Copy `donor`'s latest state (weights, optimiser, normaliser) and train on with `config`."""

    donor: int
    config: dict[str, Any]
    record: DecisionRecord | None = None
    kind: str = "exploit"


@dataclass
class Stop:
    """The member has used its budget (or failed); train it no more."""

    record: DecisionRecord | None = None
    kind: str = "stop"


Decision = Continue | Exploit | Stop
