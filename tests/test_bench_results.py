"""Results that survive a new machine, and the reference rows (`default`, paper protocol).

A tiny suite runs into a bench folder with --results; the bench folder is deleted; the report
is rebuilt from the results alone and must carry the same tables. A later run recognises the
committed results as done, a malformed or mismatched record is one clear error, and the audit
leaves out groups whose cells ran different code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gpbt.bench.record import record_rows
from gpbt.bench.report import write_bench_report
from gpbt.bench.results import ResultsFolder, load_results
from gpbt.bench.runner import run_suite
from gpbt.bench.store import BenchStore, load_bench
from gpbt.bench.suite import build_suite
from gpbt.config import ConfigError, validate_config
from gpbt.core.methods import make_scheduler
from gpbt.core.space import Float, Space

SUITE = {
    "name": "tiny",
    "seeds": 2,
    "config": {"population": 4},
    "tasks": [{"toy": "quadratic"}, {"toy": "moving-optimum"}],
    "methods": [
        {"name": "gpbt-pl", "method": "gpbt-pl"},
        {"name": "pbt", "method": "pbt"},
        {"name": "default", "method": "default"},
    ],
}
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def suite(**changes):
    raw = json.loads(json.dumps(SUITE))
    raw.update(changes)
    return build_suite(raw)


def sections(md: str) -> dict[str, str]:
    """report.md by '## ' section; the summary says when and from where, so it differs."""
    out = {}
    for part in md.split("\n## ")[1:]:
        title, _, body = part.partition("\n")
        out[title] = body
    return out


def run(s, tmp_path: Path, name: str = "bench", results: Path | None = None, **options):
    ran = []
    out = run_suite(
        s,
        tmp_path / name,
        supervise=False,
        progress=False,
        results=results if results is not None else tmp_path / "results",
        on_event=lambda e: ran.append(tuple(e["cell"])) if e["type"] == "initialised" else None,
        **options,
    )
    return out, ran


# --------------------------------------------------------------------------- the core method
def test_default_method_trains_every_member_untuned_and_never_exploits():
    space = Space({"lr": Float(1e-4, 1e-2, log=True), "clip": Float(0.1, 0.3)})
    sched = make_scheduler("default", space, perturbation_interval=10, seed=3)
    assert sched.initial_population(3) == [{}, {}, {}]  # every value: the agent's default
    decisions = sched.on_generation(10, {0: 1.0, 1: 5.0, 2: -2.0})
    assert {d.kind for d in decisions.values()} == {"continue"}
    assert decisions[2].record.reason == "no exploit"
    # pinned values need not lie in the searched range (a default often does not)
    pinned = make_scheduler(
        "default", space, perturbation_interval=10, options={"values": {"lr": 0.5}}
    )
    assert pinned.initial_population(2) == [{"lr": 0.5}, {"lr": 0.5}]
    restored = make_scheduler(
        "default", space, perturbation_interval=10, options={"values": {"lr": 0.5}}
    )
    restored.load_state_dict(pinned.state_dict())
    assert restored.configs() == {0: {"lr": 0.5}, 1: {"lr": 0.5}}
    with pytest.raises(ValueError, match=r"values\.gamma: not in the search space.*\[hyper"):
        make_scheduler("default", space, perturbation_interval=10, options={"values": {"gamma": 1}})
    with pytest.raises(ValueError, match="method 'default' has no option 'pairing'"):
        make_scheduler("default", space, perturbation_interval=10, options={"pairing": "sync"})


def test_default_method_in_a_config_and_refused_by_ray():
    base = {
        "method": "default", "population": 2, "total_steps": 100, "perturbation_interval": 10,
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}},
    }  # fmt: skip
    assert validate_config({**base, "env": "CartPole-v1"})["method"] == "default"
    with pytest.raises(ConfigError, match="method = 'default' runs with the vector and local"):
        validate_config({**base, "engine": "ray", "trainable": "x:y"})


# --------------------------------------------------------------------------- suite rules
def test_tune_rows_search_a_part_of_the_space_with_the_same_ranges():
    s = suite(
        methods=[
            {"name": "pbt", "method": "pbt"},
            {"name": "pbt-h0", "method": "pbt", "tune": ["h0"], "note": "paper protocol"},
            {"name": "default", "method": "default"},
        ],
        tasks=[{"toy": "quadratic"}],
    )
    cells = {c.method: c for c in s.cells() if c.seed == 0}
    assert [cells[m].row for m in ("pbt", "pbt-h0", "default")] == ["equal", "subset", "default"]
    assert list(cells["pbt-h0"].config["space"]) == ["h0"]
    assert cells["pbt-h0"].note == "paper protocol"

    def bad(method, match):
        with pytest.raises(ConfigError, match=match):
            suite(methods=[{"name": "pbt", "method": "pbt"}, method], tasks=[{"toy": "quadratic"}])

    bad({"name": "x", "method": "pbt", "tune": ["gamma"]}, "tune lists 'gamma', which is not in")
    bad({"name": "x", "method": "pbt", "tune": ["h0", "h1"]}, "tune lists every hyperparameter")
    bad({"name": "x", "method": "default", "tune": ["h0"]}, "searches nothing; remove its tune")
    bad({"name": "x", "method": "pbt", "tune": "h0"}, "give a list of distinct")
    bad(
        {"name": "x", "method": "pbt", "space": {}},
        r"only name, method, options \(.*\), tune, start_points and note",
    )
    bad({"name": "x", "method": "nope"}, r"method = 'nope'; use one of .*'default'")


def test_an_anchored_row_starts_its_first_members_at_given_values_and_the_rest_as_drawn(
    tmp_path,
):
    methods = [
        {"name": "pbt", "method": "pbt"},
        {"name": "pbt-anchored", "method": "pbt", "start_points": [{"h0": 0.25, "h1": 0.75}],
         "note": "member 0 at the defaults"},
    ]  # fmt: skip
    s = suite(methods=methods, tasks=[{"toy": "quadratic"}])
    cells = {c.method: c for c in s.cells() if c.seed == 0}
    assert [cells[m].row for m in ("pbt", "pbt-anchored")] == ["equal", "anchored"]
    assert cells["pbt-anchored"].config["start_points"] == [{"h0": 0.25, "h1": 0.75}]
    assert "start_points" not in cells["pbt"].config

    run(s, tmp_path)
    res = tmp_path / "results" / "quadratic"
    start = {
        m: json.loads((res / m / "seed1.json").read_text())["initial"]["configs"]
        for m in ("pbt", "pbt-anchored")
    }
    assert start["pbt-anchored"][0] == {"h0": 0.25, "h1": 0.75}
    assert start["pbt"][0] != start["pbt-anchored"][0]
    assert start["pbt-anchored"][1:] == start["pbt"][1:]  # the same draws past the anchor
    md = (write_bench_report(tmp_path / "results", reps=100) / "report.md").read_text()
    assert "UNFAIR" not in md
    assert "| pbt-anchored | quadratic | searches all, anchored start | h0, h1 |" in md
    assert "member 0 starts at h0=0.25, h1=0.75 | member 0 at the defaults |" in md
    _, ran = run(s, tmp_path, name="fresh-clone")  # the records match the suite's cells
    assert ran == []

    def bad(method, match):
        with pytest.raises(ConfigError, match=match):
            suite(methods=[{"name": "pbt", "method": "pbt"}, method], tasks=[{"toy": "quadratic"}])

    bad(
        {"name": "x", "method": "default", "start_points": [{"h0": 0.5}]},
        "'x' has start_points and is method default",
    )
    bad(
        {"name": "x", "method": "pbt", "tune": ["h0"], "start_points": [{"h0": 0.5}]},
        "'x' has start_points and a tune list",
    )
    bad({"name": "x", "method": "pbt", "start_points": {"h0": 0.5}}, "give a list of tables")
    bad({"name": "x", "method": "pbt", "start_points": [{"h0": 2.0}]},
        r"method 'x'.*start_points\[0\].*h0")  # fmt: skip


# --------------------------------------------------------------------------- results
def test_report_rebuilds_from_the_results_alone_with_the_same_tables(tmp_path):
    s = suite()
    bench, ran = run(s, tmp_path)
    assert len(ran) == 12
    res = tmp_path / "results"
    records = sorted(res.rglob("seed*.json"))
    assert len(records) == 12 and (res / "suite.json").is_file()
    rec = json.loads((res / "quadratic" / "default" / "seed1.json").read_text())
    assert rec["format"] == "gpbt-bench-cell" and rec["row"] == "default"
    assert len(rec["final"]["returns"]) == 4 and rec["exploits"] == 0
    assert rec["initial"]["effective"] == [{"h0": 0.5, "h1": 0.5}] * 4  # the toy's defaults
    assert set(rec["generations"]["diversity"]) == {0.0}
    assert len(rec["generations"]["time"]) == 10 and rec["decisions"] == 36
    assert rec["provenance"]["code_hash"] and "wall_s" in rec["provenance"]
    pbt = json.loads((res / "quadratic" / "pbt" / "seed1.json").read_text())
    assert pbt["exploits"] > 0 and pbt["initial"]["state_hash"] == rec["initial"]["state_hash"]
    assert pbt["initial"]["configs_hash"] != rec["initial"]["configs_hash"]

    from_bench = (write_bench_report(bench, reps=200) / "report.md").read_text()
    csv_bench = (bench / "report" / "results.csv").read_text()
    shutil.rmtree(bench)
    out = write_bench_report(res, reps=200, out=tmp_path / "rebuilt")
    from_results = (out / "report.md").read_text()
    assert "Rebuilt from the results folder" in from_results
    a, b = sections(from_bench), sections(from_results)
    assert list(a) == list(b) and len(a) >= 10
    for title in a:
        if title != "Summary":
            assert a[title] == b[title], title
    assert (out / "results.csv").read_text() == csv_bench
    for png in ("headline.png", "curves.png", "diversity.png", "schedules_0.png"):
        assert (out / png).stat().st_size > 5000
    # the default row is in every table, labelled, and audited as differing on purpose
    assert (
        "| default | quadratic | untuned (agent defaults) | nothing | h0=0.5, h1=0.5"
        in b["Fairness audit"]
    )
    assert "4/4 (task, seed) groups" in b["Fairness audit"]
    assert "| quadratic | 0 | 3 | True | default | True | True | True |" in b["Fairness audit"]
    assert "| default | 4 |" in b["Headline: aggregate scores"]
    # the range-edges table: every searching row, none for the default row (nothing searched)
    edges = b["Hyperparameter schedules found"]
    assert "Range edges: in how many runs" in edges
    assert "| task | method | runs | h0 | h1 |" in edges
    assert edges.count("| quadratic |") == 2 and "| quadratic | default |" not in edges


def test_a_bench_cut_short_leaves_results_that_report_what_is_done(tmp_path):
    # A long suite is committed cell by cell and may stop any time (a session ends): the
    # results folder must be reportable before its last cell, with the finished cells only.
    done = []

    def stop_after_five(event):
        if event["type"] == "initialised":
            done.append(tuple(event["cell"]))
            if len(done) == 6:  # five cells finished, the sixth starting
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(
            suite(),
            tmp_path / "bench",
            supervise=False,
            progress=False,
            results=tmp_path / "results",
            on_event=stop_after_five,
        )
    res = tmp_path / "results"
    assert len(list(res.rglob("seed*.json"))) == 5 and (res / "suite.json").is_file()
    bench = load_results(res)
    assert len(bench.results) == 5
    report = (write_bench_report(res, reps=50, out=tmp_path / "report") / "report.md").read_text()
    assert "Rebuilt from the results folder" in report


def test_a_later_run_skips_what_the_results_hold_and_adds_seeds_and_methods(tmp_path):
    run(suite(), tmp_path)
    first = {p.name: p.read_text() for p in (tmp_path / "results").rglob("seed*.json")}
    more = suite(seeds=3, methods=[*SUITE["methods"], {"name": "random", "method": "random"}])
    # a fresh clone: no bench folder, only the committed results
    _, ran = run(more, tmp_path, name="elsewhere")
    assert len(ran) == 3 * 2 * 4 - 12
    assert all(m == "random" or seed == 2 for _, m, seed in ran)
    assert {p.name: p.read_text() for p in (tmp_path / "results").rglob("seed[01].json")
            if p.parent.name != "random"} == first  # fmt: skip
    bench = load_results(tmp_path / "results")
    assert len(bench.results) == 24 and (bench.cells["status"] == "done").all()
    assert len(bench.meta["invocations"]) == 2
    # and nothing at all when everything is there
    _, ran = run(more, tmp_path, name="third")
    assert ran == []


def test_tasks_runs_part_of_a_suite_and_a_later_run_on_another_machine_the_rest(tmp_path):
    s = suite()
    bench, ran = run(s, tmp_path, tasks=["quad*"])
    assert len(ran) == 6 and {task for task, _, _ in ran} == {"quadratic"}
    cells = load_bench(bench).cells.set_index("task")["status"]
    assert set(cells["quadratic"]) == {"done"} and set(cells["moving-optimum"]) == {"pending"}
    assert {p.parent.parent.name for p in (tmp_path / "results").rglob("seed*.json")} == {
        "quadratic"
    }
    # elsewhere, from the results alone: the rest runs, the finished task is skipped
    _, ran = run(s, tmp_path, name="elsewhere", tasks=["moving-*"])
    assert len(ran) == 6 and {task for task, _, _ in ran} == {"moving-optimum"}
    assert len(load_results(tmp_path / "results").results) == 12
    # the other task's cells, done in the results, count as done there too
    assert (load_bench(tmp_path / "elsewhere").cells["status"] == "done").all()
    # a pattern that names no task is one clear error listing the suite's tasks
    with pytest.raises(ConfigError) as err:
        run(s, tmp_path, name="third", tasks=["Quad*"])
    assert str(err.value) == (
        "--tasks 'Quad*' matches no task of suite tiny; its tasks: quadratic, moving-optimum"
    )


def test_methods_runs_some_rows_and_a_later_run_the_others(tmp_path):
    s = suite()
    bench, ran = run(s, tmp_path, methods=["default", "pbt*"])
    assert len(ran) == 8 and {method for _, method, _ in ran} == {"default", "pbt"}
    cells = load_bench(bench).cells.set_index("method")["status"]
    assert set(cells["pbt"]) == set(cells["default"]) == {"done"}
    assert set(cells["gpbt-pl"]) == {"pending"}
    # the report reads the rows that ran; the row not run (the reference here) is not done
    md = (write_bench_report(tmp_path / "results", reps=100) / "report.md").read_text()
    assert "done 8, NOT done 4 (not run 4)" in md
    headline = sections(md)["Headline: aggregate scores"]
    assert "| pbt | 4 |" in headline and "| default | 4 |" in headline
    assert "gpbt-pl" not in headline
    # with --tasks: only the cells of both the matching tasks and the matching rows
    _, ran = run(s, tmp_path, name="elsewhere", tasks=["quad*"], methods=["gpbt-*"])
    assert sorted(ran) == [("quadratic", "gpbt-pl", 0), ("quadratic", "gpbt-pl", 1)]
    # the rest, from the results alone: nothing done is run again
    _, ran = run(s, tmp_path, name="third", methods=["gpbt-pl"])
    assert sorted(ran) == [("moving-optimum", "gpbt-pl", 0), ("moving-optimum", "gpbt-pl", 1)]
    assert len(load_results(tmp_path / "results").results) == 12
    # a pattern that names no row is one clear error listing the suite's rows, before any run
    with pytest.raises(ConfigError) as err:
        run(s, tmp_path, name="fourth", methods=["pbt", "PB2"])
    assert str(err.value) == (
        "--methods 'PB2' matches no method of suite tiny; its methods: gpbt-pl, pbt, default"
    )
    assert not (tmp_path / "fourth").exists()


def test_bad_results_are_one_clear_error(tmp_path):
    s = suite(seeds=1, tasks=[{"toy": "quadratic"}])
    run(s, tmp_path)
    res = tmp_path / "results"
    path = res / "quadratic" / "pbt" / "seed0.json"
    good = json.loads(path.read_text())

    def expect(record, match, text=None):
        path.write_text(text if text is not None else json.dumps(record))
        with pytest.raises(ConfigError, match=match):
            run(s, tmp_path, name="again")

    expect(None, r"seed0.json: not valid JSON .*restore it from git or delete it", "{oops")
    expect({**good, "exploits": "many"}, r"field 'exploits' is \"many\", expected a JSON integer")
    expect({k: v for k, v in good.items() if k != "final"}, r"field 'final' is missing")
    expect({**good, "version": 99}, r"field 'version' is 99; this gpbt reads version 1")
    expect({**good, "config": {**good["config"], "total_steps": 80}},
           r"ran another config .* total_steps = 80 there, 40 in the suite")  # fmt: skip
    path.write_text(json.dumps(good))
    with pytest.raises(ConfigError, match="holds the results of suite 'tiny', not 'other'"):
        ResultsFolder(res, build_suite({**SUITE, "name": "other"}))
    with pytest.raises(ConfigError, match="results is a results folder inside .*give that"):
        ResultsFolder(tmp_path)  # the parent of every suite's folder, given by mistake


def test_the_audit_leaves_out_groups_whose_cells_ran_different_code(tmp_path):
    s = suite(tasks=[{"toy": "quadratic"}])
    run(s, tmp_path)
    res = tmp_path / "results"
    path = res / "quadratic" / "pbt" / "seed1.json"
    rec = json.loads(path.read_text())
    rec["provenance"]["code_hash"] = "0123456789ab"
    path.write_text(json.dumps(rec))
    md = (write_bench_report(res, reps=100) / "report.md").read_text()
    assert "UNFAIR GROUPS FOUND: 1 (task, seed) groups are left out of every comparison" in md
    assert "| quadratic | 1 | 3 | True | default | True | True | False |" in md
    headline = sections(md)["Headline: aggregate scores"]
    assert "| gpbt-pl | 1 |" in headline and "| pbt | 1 |" in headline  # seed 1 is out


# --------------------------------------------------------------------------- estimate
def test_estimate_times_one_cell_per_task_and_runs_nothing_else(tmp_path):
    from gpbt.bench.estimate import estimate_suite

    table = estimate_suite(suite(), generations=2).set_index("task")
    assert list(table.index) == ["quadratic", "moving-optimum", "all tasks"]
    q = table.loc["quadratic"]
    assert q["cells"] == 6 and q["generations_per_cell"] == 10 and q["s_per_generation"] >= 0
    assert q["hours"] == pytest.approx((6 * q["cell_hours"] * 3600 + q["compile_s"]) / 3600)
    total = table.loc["all tasks"]
    assert total["cells"] == 12
    assert total["hours"] == pytest.approx(table["hours"].iloc[:-1].sum())
    assert not (tmp_path / "bench").exists()
    # --tasks: only the matching tasks are measured and counted
    part = estimate_suite(suite(), generations=2, tasks=["moving-*"]).set_index("task")
    assert list(part.index) == ["moving-optimum", "all tasks"]
    assert part.loc["all tasks", "cells"] == 6
    # --methods: only the matching rows' cells are counted, and the first of them is timed
    said: list[str] = []
    rows = estimate_suite(suite(), generations=2, say=said.append, methods=["default", "pbt"])
    rows = rows.set_index("task")
    assert list(rows["cells"]) == [4, 4, 8]
    assert said[0] == "quadratic: 10 generations of pbt seed 0 ..."
    with pytest.raises(ConfigError, match="--methods 'pbt-x' matches no method of suite tiny"):
        estimate_suite(suite(), generations=2, methods=["pbt-x"])


# --------------------------------------------------------------------------- a real agent
@pytest.mark.slow
def test_default_and_paper_protocol_rows_on_cartpole(tmp_path):
    """PPO on CartPole for a few thousand steps: the default row trains the agent's defaults,
    the subset row searches four of the space's names, every row starts from the same weights."""
    from gpbt.rl.agents import make_agent

    raw = {
        "name": "tiny-ppo",
        "seeds": 1,
        "config": {
            "agent": "ppo", "population": 2, "final_eval_episodes": 2,
            "space": {
                "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                "clip": {"type": "float", "low": 0.1, "high": 0.3},
                "gae_lambda": {"type": "float", "low": 0.9, "high": 1.0},
                "gamma": {"type": "float", "low": 0.95, "high": 1.0},
            },
        },
        "tasks": [{"name": "CartPole-v1", "env": "CartPole-v1", "total_steps": 2048,
                   "perturbation_interval": 1024}],
        "methods": [
            {"name": "pbt", "method": "pbt"},
            {"name": "pbt-paper-protocol", "method": "pbt", "tune": ["lr", "clip", "gae_lambda"],
             "note": "the released scripts' space"},
            {"name": "default", "method": "default"},
        ],
    }  # fmt: skip
    bench, _ = run(build_suite(raw), tmp_path)
    res = load_results(tmp_path / "results")
    r = res.results.set_index("method")
    assert r["initial_state_hash"].nunique() == 1  # the same weights and env states
    assert set(r.loc["pbt-paper-protocol", "tuned"].split(",")) == {"lr", "clip", "gae_lambda"}
    defaults = make_agent("ppo", "CartPole-v1").default_hyperparameters()
    rec = json.loads((tmp_path / "results" / "CartPole-v1" / "default" / "seed0.json").read_text())
    assert rec["initial"]["configs"] == [{}, {}]
    for member in rec["initial"]["effective"]:
        assert member == pytest.approx(defaults)
    paper = json.loads(
        (tmp_path / "results" / "CartPole-v1" / "pbt-paper-protocol" / "seed0.json").read_text()
    )
    assert [set(c) for c in paper["initial"]["configs"]] == [{"lr", "clip", "gae_lambda"}] * 2
    assert {e["gamma"] for e in paper["initial"]["effective"]} == {defaults["gamma"]}
    assert np.isfinite(r["final_best"]).all()
    # the headline: the member picked on the selection episodes, scored on the test episodes
    final = rec["final"]
    picked = int(np.argmax(final["returns"]))
    assert final["selected"] == picked and final["test_episodes"] == 2
    assert r.loc["default", "final_test"] == final["test_returns"][picked]
    assert r.loc["default", "final_best"] == final["returns"][picked]
    assert r.loc["default", "final_test_mean"] == pytest.approx(np.mean(final["test_returns"]))
    md = (write_bench_report(tmp_path / "results", reps=100) / "report.md").read_text()
    assert "Score of a run: `final_test` (the member picked on a greedy selection" in md
    assert f"gamma={defaults['gamma']:.4g}" in md and "the released scripts' space" in md
    # a vector cell's stored config matches the suite's: a fresh run recognises every record
    _, ran = run(build_suite(raw), tmp_path, name="fresh-clone")
    assert ran == []


@pytest.mark.slow
def test_gpbt_run_accepts_method_default(tmp_path):
    """`gpbt run` with method = "default": trains the agent's defaults, reports, replays."""
    from gpbt.analysis.replay import replay
    from gpbt.cli import main
    from gpbt.store import load

    cfg = tmp_path / "default.toml"
    cfg.write_text(
        'env = "CartPole-v1"\nmethod = "default"\npopulation = 2\ntotal_steps = 2048\n'
        "perturbation_interval = 1024\nfinal_eval_episodes = 2\n[space]\n"
        'lr = { type = "float", low = 1e-4, high = 1e-2, log = true }\n'
    )
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    exp = load(out)
    assert exp.state("summary")["exploits"] == 0 and exp.state("summary")["best_config"] == {}
    assert not [c for c in exp.reports.columns if c.startswith("config.")]
    assert (out / "report" / "report.html").stat().st_size > 1000
    ok, message = replay(out)
    assert ok, message


def test_the_audit_compares_hyperparameters_among_rows_that_search_the_same_names():
    import pandas as pd

    from gpbt.bench.report import fairness_audit

    n = 5
    rows = pd.DataFrame(
        {
            "task": ["t"] * n, "seed": [0] * n,
            "method": ["gpbt-pl", "pbt", "pbt-paper", "pb2-paper", "default"],
            "row": ["equal", "equal", "subset", "subset", "default"],
            "tuned": ["lr,clip", "lr,clip", "lr", "lr", ""],
            "initial_configs_hash": ["h7", "h7", "h4", "h4", "h0"],
            "initial_state_hash": ["s"] * n, "total_steps": [1e6] * n,
            "perturbation_interval": [5e4] * n, "population": [4] * n,
            "code_hash": ["c"] * n, "commit": ["abc"] * n,
        }
    )  # fmt: skip
    table, _, unfair = fairness_audit(rows)
    assert unfair == set() and table.iloc[0]["differ on purpose"] == "pbt-paper, pb2-paper, default"
    rows.loc[3, "initial_configs_hash"] = "h5"  # the two paper-protocol rows drew apart
    table, text, unfair = fairness_audit(rows)
    assert unfair == {("t", 0)} and not table.iloc[0]["same hyperparameters"]
    rows.loc[3, "initial_configs_hash"] = "h4"
    rows.loc[4, "initial_state_hash"] = "other"  # the default row started from other weights
    assert fairness_audit(rows)[2] == {("t", 0)}


def test_a_one_task_figure_keeps_its_title_inside_the_image():
    """A one-task suite (long-brax) draws one panel, narrower than the report's titles."""
    from gpbt.bench.report import _grid, _plt, _suptitle

    title = "best member's training return over time (mean over seeds, 95% band)"
    fig, _ = _grid(1)
    _suptitle(fig, title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    text = fig._suptitle
    extent = text.get_window_extent(fig.canvas.get_renderer())
    assert 0 <= extent.x0 and extent.x1 <= fig.bbox.width
    assert text.get_text().replace("\n", " ") == title  # wrapped, every word kept
    _plt().close(fig)


# --------------------------------------------------------------------------- suite mistakes
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"seeds": [0, 0]}, r"seeds = \[0, 0\]; give a count .* a repeated seed would count"),
        ({"seeds": [-1]}, r"seeds = \[-1\]; give a count \(seeds = 5\) or a list of distinct"),
        ({"methods": ["pbt"]}, r"methods = \['pbt'\]; give one table per entry, written"),
        ({"tasks": {"toy": "quadratic"}}, r"tasks = \{'toy': 'quadratic'\}; give one table"),
        (
            {"methods": [{"name": "p", "method": "pbt", "options": "x"}]},
            r"method #0 options = 'x'; give a table of the scheduler's options",
        ),
        (
            {"methods": [{"name": "a/b", "method": "pbt"}, {"name": "a_b", "method": "pbt"}]},
            r"method name 'a_b' and 'a/b' give the same folder 'a_b'; rename the method",
        ),
        ({"methods": [{"name": "..", "method": "pbt"}]}, r"method name '..' cannot name a"),
        (
            {"tasks": [{"toy": "quadratic", "name": "a b"}, {"toy": "quadratic", "name": "a_b"}]},
            r"task name 'a_b' and 'a b' give the same folder",
        ),
        (
            {"tasks": [{"toy": "quadratic", "env": "CartPole-v1"}]},
            r"task #0 has both env and toy; give one of them",
        ),
        (
            {"tasks": [{"toy": "quadratic", "score_range": [1, 1]}]},
            r"task #0: score_range = \[1, 1\]; give \[low, high\] with low < high",
        ),
        (
            {"tasks": [{"toy": "quadratic", "population": "four"}]},
            r"population = 'four'; give a whole number >= 1",
        ),
        ({"tasks": [{"toy": "quadratic", "population": -3}]}, r"population = -3; give a whole"),
        (
            {"tasks": [{"toy": "quadratic", "total_steps": 999}]},
            r"key 'total_steps' does nothing in a toy task",
        ),
        (
            {"tasks": [{"toy": "quadratic", "grid": {"nosuchkey": [1, 2]}}]},
            r"key 'nosuchkey' does nothing in a toy task",
        ),
        (
            {"tasks": [{"toy": "quadratic", "toy_options": {"steps": -5}}]},
            r"toy_options give steps = -5 and interval = 4; need whole numbers with 0 < interval",
        ),
        ({"tasks": [{"toy": "quadratic", "toy_options": "x"}]}, r"toy_options = 'x'; give a"),
        (
            {
                "config": {"population": 2},
                "methods": [{"name": "a", "method": "pbt", "start_points": [{"h0": 0.5}] * 3}],
            },
            r"start_points has 3 entries for a population of 2",
        ),
    ],
)
def test_suite_mistakes_are_one_clear_error_before_any_cell_runs(changes, message):
    with pytest.raises(ConfigError, match=message):
        suite(**changes)


def test_a_changed_suite_is_refused_where_its_old_runs_are_and_nothing_is_rewritten(tmp_path):
    s = suite(seeds=1, tasks=[{"toy": "quadratic"}])
    run(s, tmp_path)
    changed = suite(seeds=1, tasks=[{"toy": "quadratic", "toy_options": {"steps": 80}}])
    # the bench folder's finished cells ran 40 steps: not the changed suite's cells
    with pytest.raises(ConfigError, match=r"seed0 ran another config .* total_steps = 40 there, "
                       r"80 in the suite.* or delete that cell folder"):  # fmt: skip
        run(changed, tmp_path, results=tmp_path / "other-results")
    # the results folder refuses it too, and keeps describing the suite that ran
    meta = (tmp_path / "results" / "suite.json").read_text()
    with pytest.raises(ConfigError, match=r"seed0.json ran another config .* move the record"):
        run(changed, tmp_path, name="fresh")
    assert (tmp_path / "results" / "suite.json").read_text() == meta


def test_a_bench_where_no_cell_finished_or_with_one_method_still_reports(tmp_path):
    single = suite(seeds=1, tasks=[{"toy": "quadratic"}],
                   methods=[{"name": "pbt", "method": "pbt"}])  # fmt: skip
    out, _ = run(single, tmp_path)
    md = (write_bench_report(out, reps=50) / "report.md").read_text()
    assert "done 1" in md
    nothing = suite(seeds=1, tasks=[{"toy": "quadratic"}])
    out = run_suite(nothing, tmp_path / "none", supervise=False, progress=False,
                    only=lambda c: False)  # fmt: skip
    md = (write_bench_report(out, reps=50) / "report.md").read_text()
    assert "done 0, NOT done 3 (pending 3)" in md


def test_the_report_counts_cells_finished_after_the_bench_last_recorded_them(tmp_path):
    # Stopped by Ctrl-C or a kill, the worker may have finished cells the parent never marked
    # done; the report's count must agree with its tables, which read the cell folders.
    s = suite(seeds=1, tasks=[{"toy": "quadratic"}])
    out = run_suite(s, tmp_path / "bench", supervise=False, progress=False)
    with BenchStore(out) as store:
        store.set_status(("quadratic", "pbt", 0), "pending")
    md = (write_bench_report(out, reps=50) / "report.md").read_text()
    assert "done 3" in md and "NOT done" not in md
    assert (load_bench(out).cells["status"] == "done").all()


def test_one_seed_shows_no_interval_and_several_do():
    import pandas as pd

    from gpbt.bench.report import per_task_table

    def runs(method, scores):
        return [{"task": "quadratic", "method": method, "seed": s, "final_best": x,
                 "final_mean": x, "auc": x, "exploits": 1}
                for s, x in enumerate(scores)]  # fmt: skip

    table = per_task_table(pd.DataFrame(runs("pbt", [0.709]) + runs("pb2", [0.5, 0.7, 0.6])),
                           "final_best").set_index("method")  # fmt: skip
    column = "final_best (mean [95% CI])"
    assert table.loc["pbt", column] == "0.709 (one seed: no interval)"
    mean, interval = table.loc["pb2", column].split(" [")
    low, high = (float(x) for x in interval.rstrip("]").split(", "))
    assert float(mean) == pytest.approx(0.6) and 0.5 <= low < 0.6 < high <= 0.7


def test_the_table_scores_the_member_the_run_selected_and_stored():
    path = RESULTS / "tuning-dev/Pendulum-v1@population=4/random/seed100.json"
    record = json.loads(path.read_text())
    final = record["final"]
    (row,) = record_rows(record)["results"]
    assert final["selected"] == 3 and final["selected_by_training"] == 2
    assert row["final_test"] == final["test_returns"][3] == pytest.approx(-169.959, abs=1e-3)
    assert row["final_test_by_training"] == final["test_returns"][2]
    # the stored choice is read, not derived again from the selection scores
    final["selected"] = 1
    assert record_rows(record)["results"][0]["final_test"] == final["test_returns"][1]
    # a record from before runs stored their choice: selected again by the same rule
    del final["selected"]
    assert record_rows(record)["results"][0]["final_test"] == row["final_test"]
