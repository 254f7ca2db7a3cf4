"""Range edges: the report and the end of `gpbt run` name a hyperparameter the best member
ended against an edge of its range, with how much of the population is there too."""

from __future__ import annotations

from types import SimpleNamespace

from gpbt.analysis.lineage import best_member, last_configs
from gpbt.analysis.ranges import at_edge, edge_hits, experiment_edge_hits
from gpbt.analysis.report import write_report
from gpbt.cli import _finish
from gpbt.core.space import Choice, Float, Int, Space
from gpbt.engines import Summary
from gpbt.store import ExperimentStore, load

SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
    "clip": {"type": "float", "low": 0.1, "high": 0.5},
    "num_epochs": {"type": "int", "low": 2, "high": 8},
    "opt": {"type": "choice", "values": ["adam", "sgd"], "ordered": False},
}


def test_at_edge_in_each_params_own_terms():
    lr = Float(1e-5, 1e-3, log=True)
    assert at_edge(lr, 1e-3) == "high"
    assert at_edge(lr, 1.05e-5) == "low"  # 1% of the log range above the floor
    assert at_edge(lr, 1.2e-5) is None  # 4% above it
    assert at_edge(lr, 1e-4) is None
    clip = Float(0.1, 0.5)
    assert at_edge(clip, 0.495) == "high" and at_edge(clip, 0.48) is None
    epochs = Int(2, 8)
    assert at_edge(epochs, 8) == "high" and at_edge(epochs, 2) == "low"
    assert at_edge(epochs, 7) is None  # an integer is at an edge only on it
    assert at_edge(Choice(["adam", "sgd"], ordered=False), "sgd") is None
    assert at_edge(lr, float("nan")) is None


def test_edge_hits_count_the_population_at_the_same_edge():
    space = Space.from_dict(SPACE)
    best = {"lr": 1e-3, "clip": 0.3, "num_epochs": 2, "opt": "sgd"}
    population = [
        best,
        {"lr": 9.5e-4, "clip": 0.1, "num_epochs": 2, "opt": "adam"},  # lr 1% below the top
        {"lr": 1e-5, "clip": 0.5, "num_epochs": 8, "opt": "adam"},  # the other edges
        {"lr": 1e-4, "clip": 0.3, "num_epochs": 5, "opt": "adam"},
    ]
    hits = {h.name: h for h in edge_hits(space, best, population)}
    assert sorted(hits) == ["lr", "num_epochs"]  # clip is mid-range in the best member
    assert (hits["lr"].side, hits["lr"].bound, hits["lr"].members_at_edge) == ("high", 1e-3, 2)
    assert (hits["num_epochs"].side, hits["num_epochs"].members_at_edge) == ("low", 2)
    assert hits["lr"].sentence() == (
        "`lr` ended at the top of its range (0.001) in the best member and in 2 of 4 "
        "members: better values may lie above it; widen the range if the agent accepts such "
        "values"
    )
    assert edge_hits(space, population[3], population) == []


SPACE_OBJ = Space.from_dict(SPACE)


def _summary(exp) -> Summary:
    """The summary a local run of this stored experiment returns: its best member (the last
    scores rank them) with that member's config, and every member's last config."""
    configs = last_configs(exp)
    best = best_member(exp).member
    return Summary(
        engine="local", method="pbt", folder="", best_member=best, best_score=4.0,
        score_basis="last", population_mean=2.0, best_config=configs[best], exploits=0,
        finished=True, wall_seconds=1.0, final_configs=[configs[m] for m in sorted(configs)],
    )  # fmt: skip


def store(folder, lrs: list[float]) -> None:
    """A finished local-engine run: member m scores m at the end (the last is best)."""
    with ExperimentStore(folder) as s:
        s.write_config({"engine": "local", "method": "pbt", "trainable": "my:Toy", "space": SPACE})
        s.add_reports(
            [
                {
                    "member": m,
                    "time": t,
                    "score": float(m * t),
                    "config": {
                        "lr": lr if t == 2 else 1e-4,
                        "clip": 0.3,
                        "num_epochs": 4,
                        "opt": "adam",
                    },
                }
                for t in (1, 2)
                for m, lr in enumerate(lrs)
            ]  # fmt: skip
        )


def test_report_names_the_edge_the_best_member_ended_on(tmp_path):
    store(tmp_path, [1e-4, 1e-3, 1e-3])  # the best (member 2) and member 1 end at the top
    hits = experiment_edge_hits(load(tmp_path))
    assert [(h.name, h.side, h.members_at_edge, h.population) for h in hits] == [
        ("lr", "high", 2, 3)
    ]
    out = write_report(tmp_path, animate=False)
    summary = (out / "summary.md").read_text()
    line = "range edge: `lr` ended at the top of its range (0.001) in the best member and in 2 of 3"
    assert summary.count(line) == 2  # in the summary and under the hyperparameters' schedule
    assert "range edge" in (out / "report.html").read_text()


def test_no_edge_no_line(tmp_path, capsys):
    store(tmp_path, [1e-3, 1e-3, 1e-4])  # the best member ended mid-range
    assert experiment_edge_hits(load(tmp_path)) == []
    assert "range edge" not in (write_report(tmp_path, animate=False) / "summary.md").read_text()
    _finish(tmp_path, _summary(load(tmp_path)), SPACE_OBJ, SimpleNamespace(no_report=True))
    assert "range edge" not in capsys.readouterr().out


def test_run_end_prints_the_edge(tmp_path, capsys):
    store(tmp_path, [1e-4, 1e-4, 1.0e-5])
    _finish(tmp_path, _summary(load(tmp_path)), SPACE_OBJ, SimpleNamespace(no_report=True))
    out = " ".join(capsys.readouterr().out.split())
    assert "range edge: `lr` ended at the bottom of its range (1e-05) in the best member and" in out
    assert "in 1 of 3 members: better values may lie below it" in out


def test_bench_report_counts_the_runs_whose_best_ended_on_an_edge():
    import json

    import pandas as pd

    from gpbt.bench.report import range_edges
    from gpbt.bench.suite import load_suite

    suite = load_suite("long-ppo")  # lr in [1e-5, 1e-3] (log), num_epochs in [2, 8]
    task = "Breakout-MinAtar@population=4"
    mid = {"clip": 0.3, "gae_lambda": 0.95, "gamma": 0.97, "lr": 1e-4, "minibatch_size": 128,
           "num_epochs": 5, "train_batch_size": 700}  # fmt: skip
    seven = ",".join(sorted(mid))

    def run(method, tuned, **change):
        return {"task": task, "method": method, "tuned": tuned,
                "best_config": json.dumps({**mid, **change})}  # fmt: skip

    results = pd.DataFrame(
        [
            run("pbt", seven, lr=1e-3, num_epochs=2),
            run("pbt", seven, lr=9.8e-4),  # 0.4% of the log range below the top
            run("pbt", seven, num_epochs=8),
            run("pbt-paper-protocol", "clip,gae_lambda,lr,train_batch_size", gamma=0.95),
            run("default", "", lr=1e-3),  # nothing searched: no row
        ]
    )
    table = range_edges(results, suite).set_index("method")
    assert list(table.index) == ["pbt", "pbt-paper-protocol"]
    assert table.loc["pbt", "runs"] == 3
    assert table.loc["pbt", "lr"] == "high 2"
    assert table.loc["pbt", "num_epochs"] == "low 1 high 1"
    assert table.loc["pbt", "clip"] == "-"
    # a hyperparameter the row does not search is not blamed on it, even at an edge
    assert table.loc["pbt-paper-protocol", "gamma"] == "untuned"
    assert table.loc["pbt-paper-protocol", "lr"] == "-"


def test_an_edge_at_the_agents_own_limit_is_not_widened(tmp_path):
    """gamma's range ends at PPO's own bound (1): no "widen it"; clip's ends short of it."""
    space = {"gamma": {"type": "float", "low": 0.9, "high": 1.0},
             "clip": {"type": "float", "low": 0.1, "high": 0.5}}  # fmt: skip
    with ExperimentStore(tmp_path) as s:
        s.write_config({"engine": "vector", "method": "pbt", "agent": "ppo",
                        "env": "CartPole-v1", "space": space})  # fmt: skip
        s.add_reports([{"member": m, "time": 1, "score": float(m),
                        "config": {"gamma": 1.0, "clip": 0.5}} for m in (0, 1)])  # fmt: skip
    hits = {h.name: h.sentence() for h in experiment_edge_hits(load(tmp_path))}
    assert hits["gamma"] == (
        "`gamma` ended at the top of its range (1) in the best member and in 2 of 2 members: "
        "that is the agent's own limit (hyperparameter_bounds), so the range cannot be widened "
        "that way"
    )
    assert hits["clip"].endswith(
        "better values may lie above it; the agent accepts values up to 1, so widen the range "
        "toward that"
    )
    low = edge_hits(Space.from_dict(space), {"gamma": 0.9}, [{"gamma": 0.9}], {"gamma": (0, 1)})
    assert "the agent accepts values down to 0, so widen" in low[0].sentence()
