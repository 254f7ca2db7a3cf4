"""How a run's headline score is decided: select a member, then test it on fresh episodes.

Taking the best member's return on the very episodes used to pick it (`final_best`, the maximum
over members of one shared evaluation) is a winner's curse: the maximum of P noisy estimates is
biased upwards, by more the more the members differ in luck and the less they differ in truth.
It pays a population of independent members (the untuned defaults, random search) and not one
of near-clones (PBT after a few exploits), so it decided comparisons before any tuning did.

The unbiased score picks the member as a user would, without the test episodes: by a greedy
*selection* evaluation of every member (its own key), and reports that one member's return
on *test* episodes drawn from another key. The selection evaluation, not the population's last
training score, picks the member by default: it measures the policy a user deploys (greedy, at
the final weights), on episodes every member shares, whereas a training score is a stochastic
policy's return over an interval in which the member may have just been copied. Both choices
are kept in the run's record (`by_training`), so either can be compared.

Everything here is pure: arrays in, numbers (or the words that describe them) out (gpbt.core
has no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Selected:
    """The member a run hands to its user and what it scores.

    `member`: the member picked on the selection scores (None when none is finite);
    `test`: its score on the test episodes (the headline, unbiased);
    `selection`: its score on the selection episodes (the winner's-curse figure, what
    `final_best` reported); `test_mean`: the population's mean test score (every member, no
    selection at all)."""

    member: int | None
    test: float
    selection: float
    test_mean: float


def pick(scores: Sequence[float], mode: str = "max") -> int | None:
    """The best member by `scores` (NaN and inf never win; ties go to the lowest index), or
    None if no score is finite."""
    values = np.asarray(scores, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    masked = np.where(finite, values, -np.inf if mode == "max" else np.inf)
    return int(np.argmax(masked) if mode == "max" else np.argmin(masked))


def select_then_test(
    selection: Sequence[float], test: Sequence[float], mode: str = "max"
) -> Selected:
    """Pick the member on `selection` (one score per member), report its `test` score."""
    sel = np.asarray(selection, dtype=float)
    tst = np.asarray(test, dtype=float)
    if sel.shape != tst.shape:
        raise ValueError(
            f"selection and test scores must have one entry per member each, got {sel.shape} "
            f"and {tst.shape}"
        )
    member = pick(sel, mode)
    finite = tst[np.isfinite(tst)]
    mean = float(finite.mean()) if len(finite) else math.nan
    if member is None:
        return Selected(None, math.nan, math.nan, mean)
    return Selected(member, float(tst[member]), float(sel[member]), mean)


def score_basis(selection_episodes: int, test_episodes: int | None = None) -> str:
    """How the score was decided, in the words a run's summary and report use: picked on a
    greedy evaluation of `selection_episodes` episodes per member and scored on
    `test_episodes` fresh ones; without test episodes (a run from before they existed) picked
    and scored on the one evaluation."""
    per_member = f"{counted(selection_episodes, 'episode')} per member"
    if test_episodes is None:
        return f"greedy evaluation, {per_member}"
    return (
        f"selected on a greedy evaluation ({per_member}), tested on "
        f"{counted(test_episodes, 'fresh episode')}"
    )


def counted(n: int, noun: str) -> str:
    """`n` and the noun, plural unless there is exactly one: "1 episode", "32 episodes"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
