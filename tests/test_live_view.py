"""What `gpbt run` prints into a log file (no terminal): the best member is the best under the
run's mode, and a member without a finite score is never the best."""

from __future__ import annotations

import math

import pytest

from gpbt.live_view import LiveView


def generation(scores: list[float]) -> dict:
    """A generation event as the vector engine's lockstep loop emits it."""
    return {
        "type": "generation", "generation": 3, "generations": 10, "time": 30_000,
        "train_s": 4.0, "exploits": 1,
        "members": [
            {"member": i, "score": s, "config": {"lr": 1e-3}, "event": ""}
            for i, s in enumerate(scores)
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    "mode, best", [("max", "member 0 score 5.00"), ("min", "member 3 score -2.00")]
)
def test_the_plain_line_names_the_best_member_under_the_runs_mode(capsys, mode, best):
    view = LiveView({"mode": mode, "population": 4})
    view.plain = True  # as when the output is not a terminal
    view.update(generation([5.0, math.nan, 3.0, -2.0]))
    line = capsys.readouterr().out.strip()
    assert line == f"generation 3/10  t=30,000  best {best}  exploits 1  train 4.0s"
