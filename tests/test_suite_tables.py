"""benchmarks/suite_tables.py: BENCHMARKS.md's wide tables, from a results folder alone, with the
numbers gpbt.bench.stats gives and the count of seeds where a row is not complete."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark_script

from gpbt.bench import stats
from gpbt.bench.runner import run_suite
from gpbt.bench.suite import build_suite

tables = load_benchmark_script("suite_tables")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A toy suite (seconds, no JAX): 3 seeds of pbt and default, 2 of random, on one task."""
    tmp = tmp_path_factory.mktemp("tables")
    suite = {
        "name": "tiny", "seeds": 3, "reference": "pbt", "config": {"population": 4},
        "tasks": [{"toy": "quadratic", "grid": {"population": [4]}}],
        "methods": [{"name": "pbt", "method": "pbt"}, {"name": "random", "method": "random"},
                    {"name": "default", "method": "default"}],
    }  # fmt: skip
    out = tmp / "results"
    run_suite(build_suite(suite), tmp / "bench", supervise=False, progress=False, results=out)
    (out / "quadratic@population=4" / "random" / "seed2.json").unlink()  # an unfinished cell
    return out


def record_scores(folder: Path, method: str) -> dict[int, float]:
    out = {}
    for p in (folder / "quadratic@population=4" / method).glob("seed*.json"):
        rec = json.loads(p.read_text())
        out[rec["seed"]] = max(rec["final"]["returns"])
    return out


def test_the_tables_carry_the_records_numbers(results):
    md = tables.Tables(results).markdown()
    pbt, rnd = record_scores(results, "pbt"), record_scores(results, "random")
    assert sorted(pbt) == [0, 1, 2] and sorted(rnd) == [0, 1]
    row = next(line for line in md.splitlines() if line.startswith("| quadratic, pop 4 |"))
    cells = row.strip("|").split("|")[1:]
    mean, lo, hi = stats.mean_ci(np.array(list(pbt.values())), reps=2000, seed=0)
    assert cells[0].strip().strip("*").startswith(tables._fmt(mean))
    assert f"[{tables._fmt(lo)}, {tables._fmt(hi)}]" in cells[0]
    assert cells[1].strip().endswith("(2)") and not cells[0].strip().endswith(")")
    # P(pbt > random) over the seeds both rows have, with seed-by-seed wins
    p, lo, hi = stats.probability_of_improvement_ci(
        {"t": np.array(list(pbt.values()))}, {"t": np.array(list(rnd.values()))}, reps=2000, seed=0
    )
    wins = sum(pbt[s] > rnd[s] for s in rnd)
    assert f"| all tasks | {p:.2f} [{lo:.2f}, {hi:.2f}]" in md
    assert re.search(rf"\({wins}/2\) \| .* \(\d/3\) \|\n", md)
    assert "P(random > default)" in md and "P(default > random)" not in md


def test_reference_and_task_names(results):
    md = tables.Tables(results, reference="default").markdown()
    assert "## P(default > row)" in md and "| task | vs pbt | vs random |" in md
    assert tables.short("Breakout-MinAtar@population=8") == "Breakout, pop 8"
    assert tables.short("brax-hopper") == "brax-hopper"
    assert tables._fmt(3597.4) == "3597" and tables._fmt(0.123456) == "0.123"
