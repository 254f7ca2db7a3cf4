"""benchmarks/pairwise_horizon.py: how often one interval's score orders members as the final
evaluation does, and which way selection moved a hyperparameter, on known inputs and on real
stores laid out as a bench folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import load_benchmark_script, toy_cell_store

horizon = load_benchmark_script("pairwise_horizon")


def test_agreement_counts_pairs_ordered_alike_and_leaves_ties_out():
    assert horizon.agreement([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == (3, 3)
    assert horizon.agreement([3.0, 2.0, 1.0], [10.0, 20.0, 30.0]) == (0, 3)
    # the tie between members 0 and 1 at g is left out; 0<2 agrees, 1<2 agrees
    assert horizon.agreement([1.0, 1.0, 3.0], [10.0, 5.0, 30.0]) == (2, 2)
    assert horizon.agreement([1.0, math.nan], [2.0, 3.0]) == (0, 0)


def reports(scores: dict[int, list[float]], lrs: dict[int, list[float]]) -> pd.DataFrame:
    rows = []
    for m, series in scores.items():
        for g, s in enumerate(series):
            rows.append({"member": m, "time": 10 * (g + 1), "score": s, "config.lr": lrs[m][g]})
    return pd.DataFrame(rows)


def test_run_table_on_fixed_configs():
    # member 2 has the highest lr and ends best; at g1 member 0 leads, from g2 the order is final
    r = reports(
        {0: [3.0, 1.0, 1.0], 1: [2.0, 2.0, 2.0], 2: [1.0, 3.0, 3.0]},
        {0: [1e-4] * 3, 1: [1e-3] * 3, 2: [1e-2] * 3},
    )
    t = horizon.run_table(r, final=[0.0, 5.0, 9.0])
    assert list(t["agree_1"]) == [0.0, 1.0, 1.0]
    # the mean over the intervals so far is 2.0 for all three at g2 (every pair tied: nothing
    # to count), and at g3 (5/3, 2, 7/3) orders them as the final evaluation does
    assert math.isnan(t["agree_3"].iloc[1]) and t["agree_3"].iloc[2] == 1.0
    assert list(t["rho_lr"]) == pytest.approx([-1.0, 1.0, 1.0])
    assert list(t["rho_lr_final"]) == pytest.approx([1.0] * 3)


def test_exploit_table_says_which_way_selection_moved_lr():
    r = reports(
        {0: [1.0, 1.0], 1: [2.0, 2.0], 2: [3.0, 0.5]},
        {0: [1e-4, 1e-2], 1: [1e-3, 1e-3], 2: [1e-2, 1e-2]},
    )
    decisions = pd.DataFrame(
        [
            # g1: member 0 copies member 2 (higher lr); a continue; a scheduled self-change
            {"time": 10, "member": 0, "donor": 2, "kind": "exploit"},
            {"time": 10, "member": 1, "donor": 1, "kind": "continue"},
            {"time": 10, "member": 1, "donor": 1, "kind": "exploit"},
            # g2: member 2 copies member 1 (lower lr); member 0 copies member 2 (same lr: out)
            {"time": 20, "member": 2, "donor": 1, "kind": "exploit"},
            {"time": 20, "member": 0, "donor": 2, "kind": "exploit"},
        ]
    )
    t = horizon.exploit_table(r, decisions)
    assert list(t["exploits"]) == [1, 1]
    assert list(t["donor_lr_higher"]) == [1.0, 0.0]
    assert t["rho_lr"].iloc[0] == pytest.approx(1.0)
    w = horizon.windows([t, t])
    # two generations split in thirds: g1 and g2 (the empty third is dropped); pooled over runs
    assert [(x["from"], x["to"], x["exploits"]) for x in w] == [(1, 1, 2), (2, 2, 2)]
    assert w[0]["donor_lr_higher"][0] == 1.0 and w[1]["donor_lr_higher"][0] == 0.0


def _cell(root: Path, method: str, seed: int) -> None:
    """A bench cell's real store on the quadratic toy (10 generations), with the final
    evaluation the bench writes."""
    from gpbt.store.writer import ExperimentStore

    folder = toy_cell_store(root / "suite" / "Game@population=4" / method / f"seed{seed}",
                            method, seed, steps=40)  # fmt: skip
    with ExperimentStore(folder) as store:
        store.set_state("final_evaluation", {"episodes": 1, "returns": store_scores(folder)})


def store_scores(folder: Path) -> list[float]:
    import sqlite3

    with sqlite3.connect(folder / "experiment.sqlite") as conn:
        rows = conn.execute("SELECT member, score FROM reports ORDER BY time").fetchall()
    last = {m: s for m, s in rows}
    return [last[m] for m in sorted(last)]


def test_main_reads_bench_folders_and_writes_the_summary(tmp_path, capsys):
    for seed in (0, 1):
        _cell(tmp_path, "random", seed)
        _cell(tmp_path, "pbt", seed)
    out = tmp_path / "h.json"
    code = horizon.main(
        ["--bench-root", str(tmp_path), "--suites", "suite", "--param", "h0",
         "--json", str(out), "--plot", str(tmp_path / "h.png")]
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    rand = doc["random"]["suite/Game@population=4"]
    assert rand["runs"] == 2 and len(rand["generations"]) == 10
    # the final evaluation here is the last interval's score: the last generation agrees fully
    assert rand["generations"][-1]["agree_1"][0] == 1.0
    pbt = doc["exploiting"]["suite/Game@population=4"]["pbt"]
    assert pbt["runs"] == 2 and sum(w["exploits"] for w in pbt["windows"]) > 0
    assert (tmp_path / "h.png").stat().st_size > 10_000
    assert "exploiting methods" in capsys.readouterr().out
    assert horizon.main(["--bench-root", str(tmp_path / "none")]) == 2
