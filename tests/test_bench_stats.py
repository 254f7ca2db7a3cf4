"""The benchmark statistics against small examples worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gpbt.bench import stats


def frame(rows):
    return pd.DataFrame(rows, columns=["task", "method", "seed", "final_best"])


def test_iqm_trims_a_quarter_from_each_end():
    # n = 8: drop 2 from each end, mean of 3, 4, 5, 6
    assert stats.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    # n = 5: floor(1.25) = 1 from each end, mean of 2, 3, 4: the outlier is gone
    assert stats.iqm([1, 2, 3, 4, 100]) == pytest.approx(3.0)
    # n = 3: floor(0.75) = 0, plain mean (scipy.stats.trim_mean convention)
    assert stats.iqm([0, 0, 9]) == pytest.approx(3.0)
    # row-wise on a (reps, runs) array
    np.testing.assert_allclose(stats.iqm(np.array([[1, 2, 3, 4], [4, 4, 4, 8]]), axis=1), [2.5, 4])


def test_normalize_min_max_per_task_and_fixed_ranges():
    df = frame(
        [
            ("a", "x", 0, 0.0), ("a", "y", 0, 5.0), ("a", "z", 0, 10.0),
            ("b", "x", 0, -100.0), ("b", "y", 0, -50.0), ("b", "z", 0, -100.0),
            ("c", "x", 0, 3.0), ("c", "y", 0, 3.0),
        ]
    )  # fmt: skip
    out = stats.normalize(df, "final_best", ranges={"b": (-200.0, 0.0)})
    assert out["norm"].tolist() == pytest.approx([0, 0.5, 1, 0.5, 0.75, 0.5, 0.5, 0.5])


def test_probability_of_improvement_hand_examples():
    # x = [1, 2, 3] vs y = [2, 2, 2]: of 9 pairs 3 are wins (3 > 2) and 3 ties (2 = 2):
    # 3/9 + 0.5 * 3/9 = 0.5
    assert stats.probability_of_improvement({"t": [1, 2, 3]}, {"t": [2, 2, 2]}) == 0.5
    assert stats.probability_of_improvement({"t": [3, 4]}, {"t": [1, 2]}) == 1.0
    # averaged over tasks: 1 on one task, 0 on the other
    x = {"t1": [3, 4], "t2": [0, 0]}
    y = {"t1": [1, 2], "t2": [1, 1]}
    assert stats.probability_of_improvement(x, y) == 0.5
    p, lo, hi = stats.probability_of_improvement_ci({"t": [5, 6, 7]}, {"t": [1, 2, 3]}, reps=200)
    assert (p, lo, hi) == (1.0, 1.0, 1.0)


def test_stratified_bootstrap_keeps_the_task_mix():
    # Task a is always 0, task b always 1. Resampling within tasks keeps 3 runs of each, so the
    # pooled mean is exactly 0.5 in every replicate; an unstratified bootstrap would vary.
    scores = {"a": np.zeros(3), "b": np.ones(3)}
    point, lo, hi = stats.stratified_bootstrap_ci(scores, lambda a: a.mean(axis=1), reps=500)
    assert (point, lo, hi) == (0.5, 0.5, 0.5)
    # a real spread gives an interval around the point estimate
    rng = np.random.default_rng(1)
    scores = {"a": rng.normal(0, 1, 50), "b": rng.normal(0, 1, 50)}
    point, lo, hi = stats.stratified_bootstrap_ci(scores, reps=1000)
    assert lo < point < hi and hi - lo < 0.8


def test_average_rank_is_paired_per_task_and_seed_with_average_ties():
    df = frame(
        [
            ("t", "a", 0, 3.0), ("t", "b", 0, 2.0), ("t", "c", 0, 1.0),
            ("t", "a", 1, 5.0), ("t", "b", 1, 5.0), ("t", "c", 1, 0.0),
        ]
    )  # fmt: skip
    ranks = stats.average_rank(stats.normalize(df))
    # seed 0: a 1, b 2, c 3; seed 1: a and b tie for 1-2 -> 1.5 each, c 3
    assert ranks.to_dict() == pytest.approx({"a": 1.25, "b": 1.75, "c": 3.0})


def test_performance_profile_counts_runs_strictly_above_tau():
    df = pd.DataFrame(
        {"task": ["t", "t"], "method": ["m", "m"], "seed": [0, 1], "norm": [0.2, 0.6]}
    )
    prof = stats.performance_profile(df, taus=np.array([0.1, 0.2, 0.5, 0.6]), reps=100)
    assert prof["fraction"].tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0])
    assert (prof["lo"] <= prof["fraction"] + 1e-12).all()
    assert (prof["hi"] >= prof["fraction"] - 1e-12).all()


def test_aggregate_and_headline_on_a_clear_winner():
    rows = []
    for task, base in (("t1", 0.0), ("t2", 100.0)):
        for seed in range(5):
            rows.append((task, "good", seed, base + 10 + seed))
            rows.append((task, "bad", seed, base + seed * 0.1))
    table = stats.headline(frame(rows), reps=300)
    good = table.set_index("method").loc["good"]
    bad = table.set_index("method").loc["bad"]
    assert good["iqm_lo"] > bad["iqm_hi"]
    assert good["mean_rank"] == 1.0 and bad["mean_rank"] == 2.0
    assert good["runs"] == 10


def test_win_tie_loss_verdicts():
    rows = []
    for seed in range(5):
        rows += [
            ("easy", "ref", seed, 10.0 + seed), ("easy", "other", seed, float(seed)),
            ("same", "ref", seed, float(seed)), ("same", "other", seed, float(seed)),
            ("hard", "ref", seed, float(seed)), ("hard", "other", seed, 10.0 + seed),
        ]  # fmt: skip
    wtl = stats.win_tie_loss(stats.normalize(frame(rows)), "ref", reps=300)
    v = wtl.set_index("task")["verdict"].to_dict()
    assert v == {"easy": "win", "hard": "loss", "same": "tie", "all tasks": "tie"}
    assert wtl.set_index("task").loc["easy", "seed_wins"] == "5/5"
    assert stats.verdict(0.51, 0.9) == "win"
    assert stats.verdict(0.2, 0.49) == "loss"
    assert stats.verdict(0.3, 0.7) == "tie"


def test_bands_and_overhead_summaries():
    curves = pd.DataFrame(
        {
            "task": ["t"] * 4,
            "method": ["m"] * 4,
            "seed": [0, 1, 0, 1],
            "time": [1, 1, 2, 2],
            "best": [1.0, 3.0, 5.0, 5.0],
        }
    )
    b = stats.bands(curves, "best")
    assert b["mean"].tolist() == [2.0, 5.0]
    assert b.iloc[1][["lo", "hi"]].tolist() == [5.0, 5.0]
    timings = pd.DataFrame(
        {
            "task": ["t"] * 2,
            "method": ["m"] * 2,
            "seed": [0, 0],
            "generation": [1, 2],
            "train_s": [9.0, 9.0],
            "manage_s": [1.0, 1.0],
            "scheduler_s": [0.001, 0.003],
            "gather_s": [0.0, 0.01],
            "exploits": [0, 2],
        }
    )
    o = stats.overhead(timings).iloc[0]
    assert o["manage_fraction"] == pytest.approx(0.1)
    assert o["scheduler_ms_median"] == pytest.approx(2.0)
    assert o["gather_ms_median"] == pytest.approx(10.0)
