"""benchmarks/tuning_rule.py: issue 25's pre-registered choice (rules 1-3), computed from
records: only finished tasks count, the worst population decides, a tie within 0.02 goes to
the candidate that beats PBT more often, and rule 2 pools both populations."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import load_benchmark_script

rule = load_benchmark_script("tuning_rule")


def results(offsets: dict[tuple[str, int], float], tasks=("A", "B"), populations=(4, 8),
            drop=()) -> pd.DataFrame:  # fmt: skip
    """Every row on every task and population at the development seeds; a run's final_test is
    its seed's index plus `offsets[(row, population)]` (0 if not given), so a row offset by
    more than 4 beats every run of a row offset by 0."""
    rows = []
    for population in populations:
        for task in tasks:
            for method in rule.ROWS:
                for i, seed in enumerate(rule.SEEDS):
                    if (task, method, seed) in drop:
                        continue
                    rows.append({
                        "task": f"tuning-dev/{task}@population={population}", "method": method,
                        "seed": seed, "population": population,
                        "final_test": i + offsets.get((method, population), 0.0),
                    })  # fmt: skip
    return pd.DataFrame(rows)


def test_the_worst_population_decides_the_registered_tuner():
    # mf-pbt wins clearly at population 4 but loses at 8; pbt-patient wins a little at both
    # five tasks at each population: as many as the two development suites hold, so final
    df = results({("mf-pbt", 4): 10, ("mf-pbt", 8): -10, ("pbt-patient", 4): 2,
                  ("pbt-patient", 8): 2}, tasks=("A", "B", "C", "D", "E"))  # fmt: skip
    out = rule.rule(df)
    assert out["populations_measured"] == [4, 8]
    assert out["registered"] == "pbt-patient"
    patient = out["candidates"]["pbt-patient"]
    # runs 2..6 against 0..4: 19 of 25 pairs won, 3 tied -> 0.82
    assert patient["vs_default"][4]["poi"] == patient["worst_vs_default"] == pytest.approx(0.82)
    assert out["candidates"]["mf-pbt"]["worst_vs_default"] == 0.0
    assert out["any_candidate_beats_default"] and out["status"] == "final"


def test_a_tie_goes_to_the_candidate_that_beats_pbt_more_often():
    # pbt-logsym and pbt-anchored tie against the defaults (both beat them always); PBT itself
    # is strong, and only pbt-anchored beats it
    df = results({("pbt-logsym", 4): 10, ("pbt-logsym", 8): 10, ("pbt-anchored", 4): 20,
                  ("pbt-anchored", 8): 20, ("pbt", 4): 15, ("pbt", 8): 15})  # fmt: skip
    out = rule.rule(df)
    assert set(out["tied_with_leader"]) == {"pbt-logsym", "pbt-anchored"}
    assert out["registered"] == "pbt-anchored"
    # rule 2: pbt-logsym loses to pbt at both populations, so pbt keeps Ray Tune's explore
    assert out["explore"]["poi"] == 0.0 and not out["pbt_default_becomes_logsym"]


def test_an_unfinished_task_is_left_out_and_the_result_is_interim():
    df = results({("pbt-logsym", 4): 10}, drop={("B", "random", 104)}, populations=(4,))
    out = rule.rule(df)
    assert out["status"] == "interim"
    assert out["explore"]["tasks"] == ["tuning-dev/A@population=4"]
    assert out["populations_measured"] == [4]
    assert out["pbt_default_becomes_logsym"]


def test_no_finished_task_registers_nothing():
    out = rule.rule(results({}, drop={("A", "pbt", 100), ("B", "pbt", 100)}))
    assert out["registered"] is None and out["populations_measured"] == []
    assert "interim" in rule.markdown(out)


def test_a_stopped_population_is_left_out_and_the_other_decides_finally():
    # population 8 unfinished (pbt's seed 104 missing on every task) and, were it counted,
    # against mf-pbt; stopped, population 4 alone decides and the answer is final
    tasks = ("A", "B", "C", "D", "E")
    offsets = {("mf-pbt", 4): 10, ("mf-pbt", 8): -10, ("pbt-patient", 4): 2}
    df = pd.concat([
        results(offsets, tasks=tasks, populations=(4,)),
        results(offsets, tasks=tasks, populations=(8,), drop={(t, "pbt", 104) for t in tasks}),
    ])  # fmt: skip
    assert rule.rule(df)["status"] == "interim"
    out = rule.rule(df, stopped=(8,))
    assert out["status"] == "final" and out["populations_measured"] == [4]
    assert out["registered"] == "mf-pbt"
    assert "left out: [8]" in rule.markdown(out)


def test_a_population_with_a_finished_task_cannot_be_stopped():
    df = results({}, populations=(4, 8))
    with pytest.raises(ValueError, match="population 8 cannot be stopped"):
        rule.rule(df, stopped=(8,))


def test_the_command_part_2_quotes_registers_mf_pbt_from_the_committed_records(capsys, monkeypatch):
    # docs/research/tuning-preregistration.md part 2 quotes this command's output
    monkeypatch.setattr("sys.argv", ["tuning_rule.py", "--stopped-population", "8"])
    rule.main()
    out = capsys.readouterr().out
    assert out.startswith("**final** (populations measured: [4]; stopped")
    assert "| mf-pbt | 4 | 0.66 [0.54, 0.78] | 0.48 [0.35, 0.62] | 5 |" in out
    assert "registered tuner: **mf-pbt**" in out and "stays Ray Tune's explore" in out
