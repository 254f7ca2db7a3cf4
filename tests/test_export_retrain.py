"""`gpbt export` and `gpbt retrain` on real runs: a tiny vector run (JAX PPO on CartPole), a
deterministic local-engine run of a toy trainable, and a store written the way the Ray adapter
writes one."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import TOY_TRAINABLE, tiny_vector

from gpbt.analysis.export import export, load_member
from gpbt.analysis.lineage import ExperimentError, best_schedule, lineage_schedule
from gpbt.analysis.replay import replay
from gpbt.analysis.retrain import retrain
from gpbt.cli import main
from gpbt.config import validate_config
from gpbt.engines.local import run_local
from gpbt.engines.vector import run_vector
from gpbt.errors import FolderError
from gpbt.store import ExperimentStore, load

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

INTERVAL = 4096
TINY = tiny_vector(total_steps=INTERVAL * 5, perturbation_interval=INTERVAL)


def configs_at(exp, member, time):
    row = exp.reports[(exp.reports["member"] == member) & (exp.reports["time"] == time)]
    assert len(row) == 1
    return {c.removeprefix("config."): row.iloc[0][c] for c in row.columns if "config." in c}


def walk_back_by_generation(exp, member):
    """The holder of `member`'s weights in each generation, derived the long way: going back
    one generation at a time, a holder that copied a donor at the start of the generation
    hands the earlier generations to that donor."""
    times = sorted(exp.reports["time"].unique())
    d = exp.decisions
    exploits = d[(d["kind"] == "exploit") & (d["donor"].fillna(-1) != d["member"])]
    holder, holders = member, {}
    for i in reversed(range(len(times))):
        holders[times[i]] = holder
        if i:
            hit = exploits[(exploits["member"] == holder) & (exploits["time"] == times[i - 1])]
            if len(hit):
                holder = int(hit.iloc[0]["donor"])
    return holders


# ---------------------------------------------------------------------------- vector engine


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vector")
    run_vector(validate_config(copy.deepcopy(TINY)), folder, supervise=False)
    return folder


@pytest.mark.slow
def test_schedule_follows_each_lineage_through_its_exploits(vector_run):
    exp = load(vector_run)
    d = exp.decisions
    copied = d[(d["kind"] == "exploit") & (d["donor"].fillna(-1) != d["member"])]
    assert len(copied) > 0, "the tiny run must exploit for this test to mean anything"
    # the member that copied someone last: its schedule must switch to the donor's history
    last = copied.iloc[-1]
    for member in sorted({int(last["member"]), *range(4)}):
        entries = lineage_schedule(exp, member)
        holders = walk_back_by_generation(exp, member)
        assert [e["end"] for e in entries] == sorted(holders)
        assert [e["time"] for e in entries] == [0] + sorted(holders)[:-1]
        for e in entries:
            assert e["member"] == holders[e["end"]]
            assert e["config"] == configs_at(exp, e["member"], e["end"])
    entries = lineage_schedule(exp, int(last["member"]))
    before = [e for e in entries if e["end"] <= last["time"]]
    assert before and before[-1]["member"] == int(last["donor"])
    assert all(e["member"] == int(last["member"]) for e in entries if e["end"] > last["time"])


@pytest.mark.slow
def test_export_writes_the_schedule_and_weights_that_load_and_act(vector_run, tmp_path):
    out = tmp_path / "export"
    manifest = export(vector_run, out)
    exp = load(vector_run)
    final = exp.state("final_evaluation")
    best = int(np.argmax(final["returns"]))  # picked on the selection episodes
    assert manifest["member"] == best and manifest["score"] == final["test_returns"][best]
    assert manifest["weights"] == "member.npz" and manifest["time"] == TINY["total_steps"]
    assert json.loads((out / "export.json").read_text()) == json.loads(json.dumps(manifest))
    schedule = json.loads((out / "schedule.json").read_text())
    assert schedule == json.loads(json.dumps(best_schedule(exp)))
    assert schedule["entries"][-1]["config"] == manifest["config"]
    assert schedule["lineage"][-1]["member"] == best and schedule["lineage"][0]["from"] == 0

    # plain numpy reads the file; the population axis is gone
    with np.load(out / "member.npz") as data:
        meta = json.loads(bytes(data["meta"]).decode())
        assert (meta["agent"], meta["env"], meta["member"]) == ("ppo", "CartPole-v1", best)
        assert len(meta["leaf_paths"]) == sum(1 for k in data.files if k.startswith("leaf"))

    member = load_member(out)
    assert member.tuned == manifest["config"]
    # every hyperparameter it trained with: tuned, fixed by the run, and PPO's defaults
    assert member.config == manifest["hyperparameters"]
    assert {k: member.config[k] for k in manifest["config"]} == pytest.approx(manifest["config"])
    assert member.config["train_batch_size"] == 256 and member.config["num_epochs"] == 2
    assert member.config["gamma"] == pytest.approx(member.agent.default_hyperparameters()["gamma"])
    action = member.act(np.array([0.0, 0.0, 0.05, 0.0]))
    assert action.shape == () and int(action) in (0, 1)
    actions = member.act(np.zeros((5, 4)))
    assert actions.shape == (5,)
    # the same weights: the engine's final greedy evaluation of that member, reproduced
    again = member.evaluate(episodes=final["episodes"], seed=99_991)
    assert again == pytest.approx(final["returns"][best], rel=1e-5)


@pytest.mark.slow
def test_retrain_follows_the_schedule_without_exploits(vector_run, tmp_path):
    schedule = best_schedule(load(vector_run))
    summary = retrain(vector_run, seed=11, out=tmp_path / "re", supervise=False)
    new = load(tmp_path / "re")
    assert new.config["method"] == "schedule" and new.config["population"] == 1
    assert new.config["seed"] == 11
    assert sorted(new.reports["member"].unique()) == [0]
    # every interval trained with the config the lineage had then
    for e in schedule["entries"]:
        assert configs_at(new, 0, e["end"]) == pytest.approx(e["config"])
    d = new.decisions
    assert (d.loc[d["kind"] == "exploit", "donor"] == 0).all()
    configs = [e["config"] for e in schedule["entries"]]
    changes = sum(1 for a, b in zip(configs, configs[1:], strict=False) if a != b)
    assert (d["kind"] == "exploit").sum() == changes and summary["exploits"] == 0
    result = summary["retrain"]
    assert result == new.state("retrain")
    assert result["population_best"] == schedule["best_score"]
    assert result["retrained"] == new.state("final_evaluation")["test_returns"][0]
    assert result["config_changes"] == changes
    assert new.lineage(0) == [(TINY["total_steps"], 0)]
    ok, message = replay(tmp_path / "re")  # a retrain is an ordinary, replayable run
    assert ok, message
    with pytest.raises(FolderError, match="already holds an experiment; use `gpbt resume"):
        retrain(vector_run, seed=11, out=tmp_path / "re", supervise=False)


# ----------------------------------------------------------------------------- local engine

TOY = TOY_TRAINABLE

LOCAL = {
    "engine": "local",
    "trainable": "export_toys:Toy",
    "workers": 2,
    "deterministic": True,
    "method": "gpbt-pl",
    "population": 4,
    "total_steps": 12,
    "perturbation_interval": 3,
    "time_attr": "steps",
    "metric": "score",
    "seed": 3,
    "space": {"lr": {"type": "float", "low": 0.0, "high": 1.0}},
}


@pytest.fixture
def local_run(tmp_path, monkeypatch):
    (tmp_path / "export_toys.py").write_text(TOY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    run_local(validate_config(copy.deepcopy(LOCAL)), tmp_path / "run")
    return tmp_path / "run"


def test_local_export_copies_the_best_checkpoint_and_restores_it(local_run, tmp_path):
    exp = load(local_run)
    assert (exp.decisions["kind"] == "exploit").sum() > 0
    manifest = export(local_run, tmp_path / "out")
    last = exp.reports.sort_values("time").groupby("member").last()
    best = int(last["score"].idxmax())
    assert manifest["member"] == best and manifest["score"] == last["score"].max()
    assert manifest["weights"] == "checkpoint" and (tmp_path / "out/checkpoint/s.json").is_file()
    toy = load_member(tmp_path / "out")
    assert type(toy).__name__ == "Toy"
    assert toy.w == pytest.approx(manifest["score"]) and toy.t == LOCAL["total_steps"]
    assert toy.config["lr"] == manifest["config"]["lr"] == last.loc[best, "config.lr"]
    schedule = json.loads((tmp_path / "out/schedule.json").read_text())
    # weights are lr summed over the steps, so the lineage's schedule adds up to the score
    total = sum(e["config"]["lr"] * (e["end"] - e["time"]) for e in schedule["entries"])
    assert total == pytest.approx(manifest["score"])


def test_local_retrain_reproduces_the_best_score_of_a_deterministic_trainable(local_run, tmp_path):
    schedule = best_schedule(load(local_run))
    summary = retrain(local_run, out=tmp_path / "re")
    new = load(tmp_path / "re")
    assert summary["exploits"] == 0 and summary["finished"]
    for e in schedule["entries"]:
        assert configs_at(new, 0, e["end"]) == pytest.approx(e["config"])
    result = summary["retrain"]
    assert result["seed"] == LOCAL["seed"] and result == new.state("retrain")
    assert result["retrained"] == pytest.approx(result["population_best"])


def test_a_retrain_stopped_part_way_records_its_comparison_when_resumed(
    local_run, tmp_path, capsys
):
    whole = retrain(local_run, out=tmp_path / "whole")["retrain"]
    capsys.readouterr()

    def ctrl_c(event):  # the user stops the retrain in its second interval
        if event["type"] == "report" and event["time"] > LOCAL["perturbation_interval"]:
            raise KeyboardInterrupt

    half = tmp_path / "half"
    with pytest.raises(KeyboardInterrupt):
        retrain(local_run, out=half, on_event=ctrl_c)
    stopped = load(half)
    assert stopped.state("retrain") is None
    assert stopped.reports["time"].max() < LOCAL["total_steps"]  # stopped part-way
    assert main(["resume", str(half), "--no-report"]) == 0
    out = capsys.readouterr().out
    # the comparison a whole retrain records, from the retrain's folder alone
    assert load(half).state("retrain") == {**whole, "folder": str(half)}
    (line,) = [x for x in out.splitlines() if x.startswith("retrained")]
    assert line.startswith(f"retrained 1 fresh member on member {whole['source_best_member']}'s")
    assert "vs the population's best" in line
    assert "range edge" not in out  # a retrain follows the run's schedule: no edge notes


def test_retrain_into_a_folder_holding_an_experiment_is_refused_like_any_fresh_run(
    local_run, tmp_path
):
    retrain(local_run, out=tmp_path / "re")
    held = len(load(tmp_path / "re").reports)
    with pytest.raises(FolderError) as err:
        retrain(local_run, out=tmp_path / "re")
    assert str(err.value) == (
        f"{tmp_path / 're'} already holds an experiment; use `gpbt resume {tmp_path / 're'}` "
        "to continue it (resume=True from Python) or pick another folder (--out)"
    )
    assert len(load(tmp_path / "re").reports) == held  # nothing recorded is lost
    # reports without a config are an experiment too (the rule fresh runs follow)
    with ExperimentStore(tmp_path / "orphan") as s:
        s.add_reports([{"member": 0, "time": 3, "score": 1.0, "config": {"lr": 0.5}}])
    with pytest.raises(FolderError, match="orphan already holds an experiment"):
        retrain(local_run, out=tmp_path / "orphan")


# ------------------------------------------------------------------------ Ray's store format


def ray_store(folder):
    """A store as `GPBTScheduler(store=...)` writes one, and the trial folders Tune keeps."""
    with ExperimentStore(folder) as s:
        s.write_config(
            {
                "engine": "ray",
                "method": "pbt",
                "metric": "score",
                "mode": "max",
                "time_attr": "training_iteration",
                "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
            }
        )
        lrs = {0: 1e-3, 1: 1e-2}
        rows = []
        for t in (2, 4, 6):
            if t == 4:
                lrs[0] = 2e-2  # member 0 copied member 1 at t=2 and explores from its lr
            rows += [{"member": m, "time": t, "score": t * lrs[m], "config": {"lr": lrs[m]}}
                     for m in (0, 1)]  # fmt: skip
        s.add_reports(rows)
        s.add_decisions(
            [
                {"time": 2, "member": 0, "kind": "exploit", "donor": 1, "partner": 1,
                 "old_config": {"lr": 1e-3}, "new_config": {"lr": 2e-2},
                 "trial_id": "abc_00000", "donor_trial_id": "abc_00001"},
                {"time": 2, "member": 1, "kind": "continue"},
            ]
        )  # fmt: skip
        s.set_state("ray_trials", {"0": "abc_00000", "1": "abc_00001"})
    for name in ("checkpoint_000001", "checkpoint_000004"):
        (folder / "tune" / "Toy_abc_00000_0_lr=0.001" / name).mkdir(parents=True)
    (folder / "tune" / "Toy_abc_00001_1_lr=0.01" / "checkpoint_000005").mkdir(parents=True)


def test_ray_export_names_the_best_trials_checkpoint_and_its_schedule(tmp_path):
    ray_store(tmp_path / "ray")
    manifest = export(tmp_path / "ray", tmp_path / "out")
    assert manifest["member"] == 0 and manifest["trial_id"] == "abc_00000"
    assert manifest["checkpoint_path"].endswith("Toy_abc_00000_0_lr=0.001/checkpoint_000004")
    schedule = json.loads((tmp_path / "out/schedule.json").read_text())
    assert [(e["time"], e["end"], e["member"], e["config"]["lr"]) for e in schedule["entries"]] == [
        (0, 2, 1, 1e-2),
        (2, 4, 0, 2e-2),
        (4, 6, 0, 2e-2),
    ]
    assert schedule["lineage"] == [
        {"member": 1, "from": 0, "to": 2},
        {"member": 0, "from": 2, "to": 6},
    ]
    with pytest.raises(ExperimentError, match="is a 'ray' run; gpbt retrain runs vector- and"):
        retrain(tmp_path / "ray")


# ------------------------------------------------------------------------------ bad input


def test_cli_bad_folders_get_one_error_line_with_the_fix(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpbt: error: ")
    assert "has no experiment.sqlite, so it is not a gpbt experiment folder" in err[0]

    with ExperimentStore(tmp_path / "empty") as s:
        s.write_config(validate_config(copy.deepcopy(TINY)))
    for command in ("export", "retrain"):
        assert main([command, str(tmp_path / "empty")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert "has no reports yet, so there is no best member" in err[0]
        assert f"gpbt resume {tmp_path / 'empty'} continues a stopped run" in err[0]
    assert main(["retrain", str(tmp_path / "empty"), "--seeds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gpbt: error: --seeds 0: give the number of fresh members, 1 or more"]
