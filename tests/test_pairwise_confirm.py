"""benchmarks/pairwise_confirm.py: the pre-registered targets of issue 15, computed from
records, decide only when every needed cell is in, and say which target failed."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import load_benchmark_script, toy_cell_store

confirm = load_benchmark_script("pairwise_confirm")

METHODS = ("gpbt-pl-escape", "pbt", "pb2", "gpbt-pl", "random", "default")


def suite(name, scores, seeds=3, populations=(4, 8), diversity=None, drop=()):
    """A SuiteData with one task per population; `scores[method]` is added to the seed index
    to give each run's final_best; `diversity[method]` is the end diversity of every run."""
    expected, results, div = [], [], []
    for population in populations:
        task = f"{name}/Game@population={population}"
        for method in METHODS:
            for seed in range(seeds):
                cell = {"task": task, "method": method, "seed": seed, "population": population}
                expected.append(cell)
                if (method, seed) in drop or method not in scores:
                    continue
                results.append({**cell, "final_best": scores[method] + seed})
                for time, d in ((0.0, 1.0), (1.0, (diversity or {}).get(method, 0.5))):
                    div.append({"task": task, "method": method, "seed": seed, "time": time,
                                "diversity": d})  # fmt: skip
    return confirm.SuiteData(name, pd.DataFrame(results), pd.DataFrame(div), pd.DataFrame(expected))


ALL = {m: 0.0 for m in METHODS}
LATENCY = {"decisions": [{"method": "gpbt-pl-escape", "population": 256, "median_ms": 0.3}]}


def test_a_variant_that_beats_both_everywhere_meets_every_target():
    scores = {**ALL, "gpbt-pl-escape": 100.0}
    long = [suite("long-a", scores, diversity={"gpbt-pl-escape": 0.9, "pbt": 0.4})]
    held = [suite("hold-a", scores)]
    out = confirm.evaluate(long, held, LATENCY)
    t1 = out["primary"][0]
    assert (t1.key, t1.value, t1.verdict) == ("T1", 1.0, "met")
    assert t1.lo == 1.0 and t1.done == t1.needed == 6  # 2 methods x 3 seeds on one pop-4 task
    t5 = out["primary"][4]
    assert t5.value == pytest.approx(0.5) and t5.verdict == "met"
    assert out["primary"][5].verdict == "met"
    assert all(r.verdict == "met" for r in out["holdout"])
    assert out["claim"].startswith("met:")


def test_ties_fail_the_targets_and_the_claim_names_them():
    # every method scores the same per seed: P = 0.5 on every comparison
    long = [suite("long-a", ALL)]
    out = confirm.evaluate(long, [suite("hold-a", ALL)], LATENCY)
    assert [r.value for r in out["primary"][:4]] == [0.5] * 4
    assert [r.verdict for r in out["primary"][:4]] == ["not met"] * 4
    assert out["primary"][4].verdict == "met"  # equal diversity: gap 0 >= 0
    assert out["claim"] == "not met (T1, T2, T3, T4 not met)"
    # ties on held-out tasks still "support" (>= 0.5), as registered
    assert all(r.verdict == "met" for r in out["holdout"])


def test_a_missing_cell_keeps_a_target_interim_whatever_its_value():
    scores = {**ALL, "gpbt-pl-escape": 100.0}
    long = [suite("long-a", scores, drop={("pbt", 2)})]
    out = confirm.evaluate(long, [suite("hold-a", scores)], LATENCY)
    t1, t2 = out["primary"][0], out["primary"][1]
    assert t1.value == 1.0 and t1.verdict == "interim (5/6 cells)"
    assert t2.verdict == "met"
    assert out["claim"] == "undecided: the confirmation has not finished"


def test_pooling_averages_the_per_task_probabilities_over_suites():
    # suite a: the variant wins every pair; suite b: it loses every pair -> 0.5 over the two
    a = suite("long-a", {**ALL, "gpbt-pl-escape": 100.0}, populations=(4,))
    b = suite("long-b", {**ALL, "gpbt-pl-escape": -100.0}, populations=(4,))
    out = confirm.evaluate([a, b], [], LATENCY)
    t1 = out["primary"][0]
    assert t1.value == pytest.approx(0.5)
    assert t1.detail["per_task"] == {
        "long-a/Game@population=4": 1.0,
        "long-b/Game@population=4": 0.0,
    }
    assert t1.tasks == "2 population-4 tasks of long-a, long-b"


def test_latency_and_diversity_failures_are_their_own_verdicts():
    scores = {**ALL, "gpbt-pl-escape": 100.0}
    long = [suite("long-a", scores, diversity={"gpbt-pl-escape": 0.2, "pbt": 0.6})]
    slow = {"decisions": [{"method": "gpbt-pl-escape", "population": 256, "median_ms": 1.5}]}
    out = confirm.evaluate(long, [suite("hold-a", scores)], slow)
    t5, t6 = out["primary"][4], out["primary"][5]
    assert t5.value == pytest.approx(-0.4) and t5.verdict == "not met"
    assert (t6.value, t6.verdict) == (1.5, "not met")
    assert out["claim"] == "not met (T5, T6 not met)"
    no_latency = confirm.evaluate(long, [], None)["primary"][5]
    assert no_latency.verdict == "not run" and math.isnan(no_latency.value)


def test_a_held_out_loss_after_a_met_target_is_flagged_as_not_generalising():
    win = {**ALL, "gpbt-pl-escape": 100.0}
    lose = {**ALL, "gpbt-pl-escape": -100.0}
    out = confirm.evaluate([suite("long-a", win)], [suite("hold-a", lose)], LATENCY)
    pop4_pbt = out["holdout"][0]
    assert pop4_pbt.verdict == "not met" and pop4_pbt.detail["contradicts_T1"] is True
    assert "held-out tasks do not support it" in out["claim"]


def test_suites_without_results_count_every_registered_cell_as_missing(tmp_path):
    data = confirm.load_suite_data("pairwise-holdout-impala", tmp_path)
    # 2 games x 2 populations x 4 methods x 10 seeds
    assert len(data.expected) == 160 and len(data.results) == 0
    out = confirm.evaluate([], [data], None)
    assert [r.needed for r in out["holdout"]] == [40, 40, 40, 40]  # 2 games x 2 methods x 10 seeds
    assert {r.verdict for r in out["holdout"]} == {"not run"}
    text = confirm.markdown(out)
    assert "| T7 pop 4 | P(gpbt-pl-escape > pbt) |" in text and "0/40" in text


def _toy_cell(root: Path, method: str, seed: int = 0) -> Path:
    """One cell's real store, as a bench folder lays it out, filled by the lockstep loop."""
    folder = root / "long-impala" / "Game@population=4" / method / f"seed{seed}"
    toy_cell_store(folder, method, seed, steps=80)  # 20 generations
    return folder / "experiment.sqlite"


def test_decision_logs_give_the_exploit_rate_and_the_share_of_escaped_parameters(tmp_path):
    import json
    import sqlite3

    for method in ("pbt", "gpbt-pl", "gpbt-pl-escape"):
        db = _toy_cell(tmp_path, method)
    stats = confirm.decision_stats(tmp_path, ("long-impala",)).set_index("method")
    # PBT at population 4 replaces its bottom quarter: one exploit in every four decisions,
    # 19 decision rounds (none after the last generation)
    assert stats.loc["pbt", "decisions"] == 4 * 19
    assert stats.loc["pbt", "exploit_rate"] == 0.25
    assert math.isnan(stats.loc["pbt", "escaped_share"])  # PBT's exploits carry no velocity
    assert stats.loc["gpbt-pl", "escaped"] == 0  # the paper's update never zeroes a velocity
    # the variant's share, counted here straight from its store
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT velocity FROM decisions WHERE kind = 'exploit'").fetchall()
    values = [v for (text,) in rows for v in json.loads(text).values()]
    assert stats.loc["gpbt-pl-escape", "params"] == len(values) > 0
    escaped = sum(v == 0 for v in values)
    assert escaped > 0  # the toy's pairs converge, so the escape fires
    assert stats.loc["gpbt-pl-escape", "escaped_share"] == escaped / len(values)
    assert "| long-impala | pbt | 1 | 76 | 0.250 | - |" in confirm.decision_markdown(
        confirm.decision_stats(tmp_path, ("long-impala",))
    )
