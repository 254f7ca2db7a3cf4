"""benchmarks/tuning_confirm.py: issue 25's pre-registered targets C1-C4, judged from records:
pooled and per-task comparisons against the defaults and PBT, the held-out check, and
`interim` until every needed cell is in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
from conftest import load_benchmark_script

confirm = load_benchmark_script("tuning_confirm")

ROWS = confirm.CONFIRMED


def suite(name, scores, games=("A", "B"), seeds=10, populations=(4, 8), drop=()):
    """A SuiteData with `games` at each population; a run's final_test is its seed index plus
    `scores[method]`, or plus `scores[(method, game)]` where given; missing methods and
    (method, seed) pairs in `drop` have no record."""
    expected, results = [], []
    for population in populations:
        for game in games:
            task = f"{name}/{game}@population={population}"
            for method in ROWS:
                for seed in range(seeds):
                    cell = {"task": task, "method": method, "seed": seed,
                            "population": population}  # fmt: skip
                    expected.append(cell)
                    score = scores.get((method, game), scores.get(method))
                    if (method, seed) in drop or score is None:
                        continue
                    results.append({**cell, "final_test": score + seed})
    return confirm.SuiteData(name, pd.DataFrame(results), pd.DataFrame(), pd.DataFrame(expected))


ALL = {m: 0.0 for m in ROWS}
WINS = {**ALL, "mf-pbt": 100.0}


def verdicts(rows):
    return {r.key: r.verdict for r in rows}


def test_a_tuner_that_beats_both_everywhere_meets_every_target():
    out = confirm.evaluate([suite("long-a", WINS)], [suite("hold", WINS)])
    assert set(verdicts(out["primary"]).values()) == {"met"}
    c1 = out["primary"][0]
    assert c1.key == "C1 pop 4" and c1.value == 1.0 and c1.done == c1.needed == 40
    assert out["claim"].startswith("met: mf-pbt beats the defaults and PBT")
    # pbt and random tie the defaults: the secondary targets fail, the claim stands
    assert verdicts(out["secondary"]) == {"S1 pop 4": "not met", "S2 pop 4": "not met",
                                          "S1 pop 8": "not met", "S2 pop 8": "not met"}  # fmt: skip


def test_a_tie_with_the_defaults_fails_c1_and_c3():
    out = confirm.evaluate([suite("long-a", ALL)], [suite("hold", ALL)])
    v = verdicts(out["primary"])
    assert v["C1 pop 4"] == v["C3 pop 8"] == "not met"
    assert v["C2 pop 4"] == "met"  # a tie's interval holds 0.5
    assert out["primary"][0].value == 0.5
    assert out["claim"].startswith("not met (C1 pop 4, C3 pop 4, C1 pop 8, C3 pop 8")


def test_one_task_lost_outright_fails_c2_even_when_the_pool_wins():
    # wins by far on games A-D, loses every pair on E: pooled P = 0.8
    scores = {**WINS, ("mf-pbt", "E"): -100.0}
    out = confirm.evaluate([suite("long-a", scores, games=tuple("ABCDE"))], [suite("hold", WINS)])
    v = verdicts(out["primary"])
    assert v["C1 pop 4"] == "met" and v["C2 pop 4"] == "not met"
    c2 = out["primary"][1]
    assert c2.detail["worst_task"] == "long-a/E@population=4" and c2.hi == 0.0
    assert "C2 pop 4" in out["claim"] and "| C2 pop 4 | long-a/E@population=4 | 0 [0, 0] |" in (
        confirm.markdown(out)
    )


def test_held_out_tasks_pointing_the_other_way_deny_the_claim():
    out = confirm.evaluate([suite("long-a", WINS)], [suite("hold", {**ALL, "mf-pbt": -100.0})])
    assert verdicts(out["holdout"])["C4 pop 8 (C3)"] == "not met"
    assert out["claim"].startswith("not met: C1-C3 met, but the held-out tasks point the other")


def test_a_missing_cell_keeps_the_target_interim():
    out = confirm.evaluate([suite("long-a", WINS, drop={("default", 9)})], [])
    c1 = out["primary"][0]
    assert c1.verdict == "interim (38/40 cells)" and c1.value == 1.0
    assert out["claim"] == "undecided: the confirmation has not finished"


def test_the_real_suites_with_no_records_are_not_run(tmp_path):
    # the MinAtar and Pendulum suites (confirm-brax's file builds Brax to read)
    data = [confirm.load_suite_data(s, tmp_path) for s in confirm.LONG_SUITES[:2]]
    out = confirm.evaluate(data, [])
    c1 = out["primary"][0]
    # population 4: 3 PPO + 2 IMPALA tasks, 10 seeds, mf-pbt and default
    assert c1.tasks.startswith("5 population-4 tasks") and c1.needed == 100
    assert c1.verdict == "not run" and out["claim"].startswith("undecided")


def test_the_secondary_targets_judge_pbt_and_random_against_the_defaults():
    scores = {**ALL, "pbt": 100.0, "random": 1.0}  # random: P = 0.595, below 0.6
    out = confirm.evaluate([suite("long-a", scores)], [])
    rows = {r.key: r for r in out["secondary"]}
    assert rows["S1 pop 4"].verdict == "met" and rows["S1 pop 4"].value == 1.0
    assert rows["S2 pop 8"].verdict == "not met"
    assert abs(rows["S2 pop 8"].value - 0.595) < 1e-9
    assert out["claim"].startswith("not met (C1 pop 4")  # mf-pbt ties: the claim fails


def test_the_run_script_prints_the_registered_tiers_and_refuses_another_commit():
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "tuning_confirm_runs.sh"
    env = {"DRY": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["bash", str(script), "R"], env=env, capture_output=True, text=True)
    dry = out.stdout.splitlines()
    assert len(dry) == 11
    assert dry[0].endswith(
        "bench confirm-impala --methods default pbt mf-pbt "
        "--results benchmarks/results/confirm-impala --out R/confirm-impala"
    )
    assert [line.split(" --methods ")[1].split(" --results")[0] for line in dry] == (
        ["default pbt mf-pbt"] * 5 + ["random gpbt-pl pb2"] * 3 + ["pbt-anchored"] * 3
    )
    # this checkout is not at the part-2 commit (it came after it): refused, nothing run
    refused = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert refused.returncode == 2 and "run this in a checkout at d4d4967" in refused.stderr
