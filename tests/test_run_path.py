"""docs/architecture.md's `python benchmarks/run_path.py --draw` runs, and the parent's path
ends as the docs draw it: from the run's summary, without reading the store back, and without
building the agent (the training child builds it and checks the spec against it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the quickstart, shrunk, twice

ROOT = Path(__file__).resolve().parents[1]


def test_the_documented_path_measurement_runs_and_the_run_end_reads_no_store(tmp_path):
    out = tmp_path / "path.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/run_path.py", "--draw", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "parent: gpbt run (module, floor, then one column per stay):" in done.stdout
    figures = json.loads(out.read_text())
    parent, child = figures["legs"]
    assert parent["leg"] == "parent: gpbt run" and child["leg"] == "child: training"
    for leg in (parent, child):
        assert leg["steps"] >= leg["stays"] == len(leg["modules_in_order"]) > 0
        assert leg["climbs"] <= leg["stays"] and leg["returns"] < leg["stays"]
    assert figures["total"]["stays"] == parent["stays"] + child["stays"]
    order = parent["modules_in_order"]
    assert order[0] == "gpbt.cli" and "gpbt.engines.vector" in order
    # the range-edge notes come from the summary: the parent never opens the store to read
    assert not any(m.startswith("gpbt.store") for m in order), order
    assert order[-1] == "gpbt.core.space"  # the last note's edge test, as the docs draw it
    # the agent is built once, in the training child: the parent never enters the agents
    assert not any(m.startswith("gpbt.rl") for m in order), order
    assert "gpbt.rl.agents" in child["modules_in_order"]
