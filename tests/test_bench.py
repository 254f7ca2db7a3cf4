"""The benchmark harness: suites, fairness, resume, and the smoke suite end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gpbt.bench import load_bench
from gpbt.bench.runner import run_suite
from gpbt.bench.suite import build_suite, check_fairness, load_suite
from gpbt.config import ConfigError

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

TOY_SUITE = {
    "name": "toys",
    "seeds": 2,
    "config": {"population": 6},
    "tasks": [{"toy": "quadratic"}, {"toy": "moving-optimum", "population": 4}],
    "methods": [
        {"name": "gpbt-pl", "method": "gpbt-pl"},
        {"name": "pl-sync", "method": "gpbt-pl", "options": {"pairing": "sync"}},
        {"name": "pbt", "method": "pbt"},
        {"name": "random", "method": "random"},
    ],
}
# The columns that must not depend on whether and where a bench was interrupted (timings do).
STABLE = [
    "task", "method", "seed", "final_best", "final_mean", "auc", "final_train_best",
    "exploits", "population", "generations", "initial_configs_hash", "initial_state_hash",
    "best_config",
]  # fmt: skip


# --------------------------------------------------------------------------- suite files
def test_every_shipped_suite_loads_with_its_variants():
    for name in ("smoke", "paper-ppo", "paper-impala", "sensitivity", "scaling", "ablations"):
        suite = load_suite(name)
        assert suite.cells(), name
    assert len(load_suite("paper-ppo:full").seeds) == 10
    assert len(load_suite("smoke", seeds=3).seeds) == 3


def test_the_long_suites_give_every_run_about_20_decisions_with_both_reference_rows():
    for name, cells, generations in (("long-ppo", 480, {20}), ("long-brax", 70, {20}),
                                     ("long-impala", 240, {60})):  # fmt: skip
        suite = load_suite(name)
        assert len(suite.seeds) == 10 and len(suite.cells()) == cells, name
        gens = {c.config["total_steps"] // c.config["perturbation_interval"] for c in suite.cells()}
        assert gens == generations, name
        rows = {c.method: c.row for c in suite.cells()}
        assert rows["default"] == "default" and rows["gpbt-pl"] == "equal"
    ppo = {c.method: c for c in load_suite("long-ppo").cells() if c.seed == 0}
    assert sorted(ppo["pbt-paper-protocol"].config["space"]) == [
        "clip", "gae_lambda", "lr", "train_batch_size"
    ]  # fmt: skip
    assert len(ppo["gpbt-pl"].config["space"]) == 7
    # the released IMPALA scripts gave everyone the same space: no paper-protocol rows there
    assert {c.row for c in load_suite("long-impala").cells()} == {"equal", "default"}
    # issue 15's pre-registered variant is an equal row of both (not of long-brax)
    for name in ("long-ppo", "long-impala"):
        rows = {c.method: c.row for c in load_suite(name).cells()}
        assert rows["gpbt-pl-escape"] == "equal", name


def test_anchor_ppo_starts_member_0_at_ppos_defaults_on_long_ppos_tasks():
    from gpbt.rl.agents import make_agent

    anchor = load_suite("anchor-ppo")
    long_ppo = {(c.task, c.method, c.seed): c for c in load_suite("long-ppo").cells()}
    assert len(anchor.cells()) == 120
    for c in anchor.cells():
        # the same task, space, budget and interval as long-ppo's row of that name
        twin = long_ppo[(c.task, "pbt" if c.method == "pbt-anchored" else c.method, c.seed)]
        same = {k: v for k, v in c.config.items() if k not in ("name", "start_points")}
        assert same == {k: v for k, v in twin.config.items() if k != "name"}
        if c.method == "pbt-anchored":
            assert c.row == "anchored"
            defaults = make_agent("ppo", c.config["env"]).default_hyperparameters()
            (point,) = c.config["start_points"]
            assert point == {k: pytest.approx(defaults[k]) for k in c.config["space"]}


def test_a_method_cannot_bring_its_own_budget_or_space():
    raw = json.loads(json.dumps(TOY_SUITE))
    raw["methods"][0]["total_steps"] = 10
    with pytest.raises(ConfigError, match="Budget, space and interval belong to the task"):
        build_suite(raw)


def test_grid_expands_tasks_and_unknown_keys_are_rejected():
    raw = json.loads(json.dumps(TOY_SUITE))
    raw["tasks"][0]["grid"] = {"population": [4, 8]}
    suite = build_suite(raw)
    assert suite.task_names() == ["quadratic@population=4", "quadratic@population=8",
                                  "moving-optimum"]  # fmt: skip
    pops = {c.task: c.config["population"] for c in suite.cells()}
    assert pops["quadratic@population=4"] == 4 and pops["quadratic@population=8"] == 8
    with pytest.raises(ConfigError, match="unknown key"):
        load_suite_from_text("bogus = 1\n")
    with pytest.raises(ConfigError, match="unfair suite"):
        cells = build_suite(TOY_SUITE).cells()
        cells[1].config["population"] = 99  # what a broken suite builder would produce
        check_fairness(cells)


def load_suite_from_text(text):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:  # read at once: nothing left in /tmp
        path = Path(folder) / "s.toml"
        path.write_text(text)
        return load_suite(path)


# --------------------------------------------------------------------------- fairness
def test_two_methods_with_the_same_seed_start_from_identical_populations(tmp_path):
    """Same hyperparameters, same weights, same env states; a different seed differs."""
    import jax

    from gpbt.engines.vector import VectorRun

    suite = load_suite("smoke")
    cells = {(c.method, c.seed): c for c in suite.cells() if c.task == "CartPole-v1"}
    starts = {}
    agent = None
    for method, seed in (("gpbt-pl", 0), ("pb2", 0), ("random", 0), ("gpbt-pl", 1)):
        run = VectorRun(cells[(method, seed)].config, tmp_path / f"{method}-{seed}")
        # one compiled agent for all, as the bench runner shares it (init compiles once)
        agent = run.agent = agent or run.agent
        assert run.start(resume=False) == 0
        starts[(method, seed)] = (run.configs, jax.tree_util.tree_leaves(run.state))
        run.store.close()

    def same(a, b):
        configs_a, leaves_a = starts[a]
        configs_b, leaves_b = starts[b]
        if configs_a != configs_b:
            return False
        for x, y in zip(leaves_a, leaves_b, strict=True):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                x, y = jax.random.key_data(x), jax.random.key_data(y)
            if not np.array_equal(np.asarray(x), np.asarray(y)):
                return False
        return True

    assert same(("gpbt-pl", 0), ("pb2", 0))
    assert same(("gpbt-pl", 0), ("random", 0))
    assert not same(("gpbt-pl", 0), ("gpbt-pl", 1))


# --------------------------------------------------------------------------- resume
def _stable(folder) -> pd.DataFrame:
    return load_bench(folder).results[STABLE].reset_index(drop=True)


def test_a_resumed_bench_gives_the_same_table_as_an_uninterrupted_one(tmp_path):
    suite = build_suite(TOY_SUITE)
    whole = run_suite(suite, tmp_path / "whole", supervise=False, progress=False)
    expected = _stable(whole)
    assert len(expected) == 16 and expected["final_best"].notna().all()

    # Interrupt in the middle of the 6th cell, after some of its reports are written.
    started = []

    def interrupt(event):
        if event["type"] == "generation":
            started.append(event["cell"]) if event["cell"] not in started else None
            if len(started) == 6 and event["generation"] == 3:
                raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, cut, supervise=False, progress=False, on_event=interrupt)
    status = load_bench(cut).cells.set_index(["task", "method", "seed"])["status"]
    assert (status == "done").sum() == 5 and (status == "interrupted").sum() == 1

    ran = []
    run_suite(suite, cut, supervise=False, progress=False,
              on_event=lambda e: ran.append(e["cell"]))  # fmt: skip
    assert len(set(ran)) == 11  # the 5 finished cells were skipped
    pd.testing.assert_frame_equal(_stable(cut), expected)

    # a finished bench runs nothing at all
    ran.clear()
    run_suite(suite, cut, supervise=False, progress=False, on_event=lambda e: ran.append(e))
    assert ran == []


@pytest.mark.slow
def test_an_interrupted_vector_cell_resumes_to_the_uninterrupted_result(tmp_path):
    """A real PPO cell killed after generation 2 (checkpointed) and resumed: same result."""
    suite = load_suite("smoke")

    def one(c):
        return c.task == "CartPole-v1" and c.method == "gpbt-pl" and c.seed == 0

    whole = run_suite(suite, tmp_path / "whole", supervise=False, progress=False, only=one)

    def interrupt(event):
        if event["type"] == "generation" and event["generation"] == 2:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, cut, supervise=False, progress=False, only=one, on_event=interrupt)
    resumed = []
    run_suite(suite, cut, supervise=False, progress=False, only=one, on_event=resumed.append)
    assert any(e["type"] == "resumed" and e["generation"] == 2 for e in resumed)
    pd.testing.assert_frame_equal(_stable(cut), _stable(whole))
    a, b = load_bench(whole).curves, load_bench(cut).curves
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_smoke_suite_end_to_end_through_the_cli(tmp_path):
    from gpbt.cli import main

    out = tmp_path / "smoke"
    assert main(["bench", "smoke", "--out", str(out)]) == 0
    bench = load_bench(out)
    assert (bench.cells["status"] == "done").all() and len(bench.cells) == 16
    res = bench.results
    assert set(res["method"]) == {"gpbt-pl", "pbt", "pb2", "random"}
    assert set(res["task"]) == {"CartPole-v1", "quadratic"}
    cart = res[res["task"] == "CartPole-v1"]
    assert cart["final_best"].between(0, 500).all()
    # fairness, audited from what the runs recorded: one start per (task, seed)
    assert (res.groupby(["task", "seed"])["initial_state_hash"].nunique() == 1).all()
    assert (res.groupby(["task", "seed"])["initial_configs_hash"].nunique() == 1).all()
    assert (cart.query("method != 'random'")["exploits"] > 0).all()
    assert len(bench.curves) and len(bench.diversity) and len(bench.schedules)
    assert (bench.timings["train_s"] > 0).all()

    assert main(["report", str(out)]) == 0
    report = out / "report"
    md = (report / "report.md").read_text()
    headings = ("Headline", "Probability of improvement", "win / tie / loss", "Learning curves",
                "diversity", "schedules", "Overhead", "Fairness")  # fmt: skip
    for heading in headings:
        assert heading in md, heading
    assert "4/4 (task, seed) groups" in md
    for png in ("headline.png", "curves.png", "diversity.png", "profiles.png", "overhead.png"):
        assert (report / png).stat().st_size > 5000
    page = (report / "report.html").read_text()
    assert "data:image/png;base64," in page and "http://" not in page.replace(
        "http://www.w3.org", ""
    )
