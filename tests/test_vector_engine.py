"""The vector engine end to end on a real gymnax environment, sized for CI."""

import copy
import os
import shutil
import signal
import sqlite3
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    check_summary,
    run_cli,
    start_run_held_at,
    tiny_vector,
    tmpfs,
    write_toml_file,
)

from gpbt.analysis.lineage import last_configs
from gpbt.analysis.ranges import edge_hits, experiment_edge_hits, stored_limits, summary_edge_hits
from gpbt.analysis.replay import replay
from gpbt.analysis.report import ReportError, write_report
from gpbt.config import ConfigError, load_config, validate_config
from gpbt.core.space import Space
from gpbt.engines.vector import run_vector
from gpbt.store import load

pytestmark = pytest.mark.slow

TINY = tiny_vector()


def tiny(**changes):
    cfg = copy.deepcopy(TINY)
    cfg.update(changes)
    return validate_config(cfg)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref")
    events = []
    summary = run_vector(tiny(), folder, supervise=False, on_event=events.append)
    return folder, summary, events


def report_table(folder):
    df = load(folder).reports
    return df[["member", "time", "score", "config.lr", "config.clip"]].reset_index(drop=True)


def test_a_run_records_every_report_decision_and_checkpoint(reference):
    folder, summary, _ = reference
    check_summary(summary, "vector", 4)
    assert summary.score_basis == (
        "selected on a greedy evaluation (4 episodes per member), tested on 4 fresh episodes"
    )
    exp = load(folder)
    assert len(exp.reports) == 4 * 5
    assert sorted(exp.reports["time"].unique()) == [4096 * g for g in range(1, 6)]
    assert len(exp.decisions) == 4 * 4  # every member decided at every boundary but the last
    assert summary["exploits"] == int((exp.decisions["kind"] == "exploit").sum()) > 0
    # hyperparameter changes and exploits never recompiled the training program
    assert summary["compilations_during_run"] == 1
    assert exp.latest_checkpoint["time"] == 4096 * 5
    assert (Path(folder) / exp.latest_checkpoint["path"]).exists()
    final = exp.state("final_evaluation")
    assert len(final["returns"]) == 4 and len(final["test_returns"]) == 4
    # select, then test: picked on the selection episodes, scored on the fresh test episodes
    assert final["selected"] == summary.best_member == int(np.argmax(final["returns"]))
    assert summary.best_score == final["test_returns"][summary.best_member]
    assert summary.population_mean == pytest.approx(np.mean(final["test_returns"]))
    assert summary["final_best"] == max(final["returns"])  # the winner's-curse figure, kept
    assert final["selected_by_training"] in range(4)
    # what the range-edge notes need, in the summary: the notes `gpbt run` prints from it are
    # the report's, read from the store, to the letter
    last = exp.reports[exp.reports["time"] == 4096 * 5].sort_values("member")
    assert summary.final_configs == [
        {k[len("config.") :]: row[k] for k in row.index if k.startswith("config.")}
        for _, row in last.iterrows()
    ]
    assert summary.final_configs[summary.best_member] == summary.best_config
    assert summary.hyperparameter_bounds["gamma"] == (0.0, 1.0)
    assert exp.state("summary")["hyperparameter_bounds"]["gamma"] == [0.0, 1.0]
    assert [h.sentence() for h in summary_edge_hits(tiny().space, summary)] == [
        h.sentence() for h in experiment_edge_hits(exp)
    ]
    # and where there are notes: a space whose clip range ends at the best member's value
    clip = {**TINY["space"]["clip"], "high": summary.best_config["clip"]}
    narrow = Space.from_dict({**TINY["space"], "clip": clip})
    stored = last_configs(exp)
    from_store = edge_hits(
        narrow, stored[summary.best_member], list(stored.values()), stored_limits(exp)
    )
    notes = [h.sentence() for h in summary_edge_hits(narrow, summary)]
    assert notes == [h.sentence() for h in from_store]
    assert any(n.startswith("`clip` ended at the top") for n in notes)
    assert "the agent accepts values up to 1, so widen" in " ".join(notes)  # PPO's clip limit


def test_a_fresh_run_into_a_folder_holding_a_run_is_refused_and_changes_nothing(reference):
    """The Python API used to start over in a finished run's folder, truncating its reports
    while its summary stayed; every engine entry point now refuses, naming the fix."""
    from gpbt.engines import run_engine
    from gpbt.errors import FolderError

    folder, *_ = reference
    before = load(folder)
    for start in (run_engine, partial(run_vector, supervise=False)):
        with pytest.raises(FolderError) as err:
            start(tiny(), folder, resume=False)
        assert str(err.value) == (
            f"{folder} already holds an experiment; use `gpbt resume {folder}` to continue it "
            "(resume=True from Python) or pick another folder (--out)"
        )
    after = load(folder)
    assert len(after.reports) == 4 * 5 and after.reports.equals(before.reports)
    assert after.decisions.equals(before.decisions)
    assert after.state("summary") == before.state("summary")


def test_exploit_gives_the_loser_the_new_config_from_then_on(reference):
    folder, *_ = reference
    exp = load(folder)
    ex = exp.decisions[exp.decisions["kind"] == "exploit"].iloc[0]
    nxt = exp.reports[
        (exp.reports["member"] == ex["member"]) & (exp.reports["time"] == ex["time"] + 4096)
    ].iloc[0]
    assert nxt["config.lr"] == pytest.approx(ex["new_config.lr"])
    assert nxt["config.clip"] == pytest.approx(ex["new_config.clip"])


def test_every_member_trains_the_nominal_budget_within_one_batch(tmp_path):
    # Batch sizes that do not divide the interval: a member's whole updates overshoot each
    # interval's end, and the overshoot is carried into the next one instead of repeated.
    batches = [128, 384, 512]
    cfg = tiny(
        method="pbt",
        total_steps=5000,
        perturbation_interval=1000,
        hyperparameters={"num_epochs": 1, "minibatch_size": 64},
        space={
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "train_batch_size": {"type": "choice", "values": batches},
        },
    )
    run_vector(cfg, tmp_path, supervise=False)
    reports = load(tmp_path).reports
    assert sorted(reports["time"].unique()) == [1000, 2000, 3000, 4000, 5000]
    assert reports["config.train_batch_size"].nunique() > 1
    ahead = reports["metric.env_steps_total"] - reports["time"]
    # every member, at every boundary, is at most one (largest) batch past the clock;
    # repeating ceil(1000 / 384) * 384 = 1152 per interval would put it 760 ahead at 5000
    assert ahead.min() >= 0 and ahead.max() < max(batches), ahead.describe()
    final = reports[reports["time"] == 5000]
    assert (final["metric.env_steps_total"] - 5000 < final["config.train_batch_size"]).all()


def test_a_copy_that_finishes_no_episode_reports_its_donors_score(tmp_path):
    # Pendulum's episodes last 200 steps; 800 env steps per interval over 8 envs is 100 steps
    # per env, so episodes end in every second interval only. At the intervals in between a
    # member has no new episode and keeps its last score; a member that copied a donor must
    # keep the donor's, the score of the weights it now carries.
    cfg = tiny(
        env="Pendulum-v1",
        method="pbt",
        total_steps=800 * 4,
        perturbation_interval=800,
        agent_options={
            "num_envs": 8, "rollout_chunk": 20, "max_rollout_len": 20, "minibatch_unit": 32,
            "max_epochs": 2,
        },
        hyperparameters={"train_batch_size": 160, "num_epochs": 1, "minibatch_size": 32},
    )  # fmt: skip
    run_vector(cfg, tmp_path, supervise=False)
    exp = load(tmp_path)
    reports = exp.reports.set_index(["time", "member"])
    assert reports.loc[1600, "metric.episodes"].gt(0).all()  # episodes end at 200 steps
    assert reports.loc[2400, "metric.episodes"].eq(0).all()  # and not in the next interval
    exploits = exp.decisions[(exp.decisions["kind"] == "exploit") & (exp.decisions["time"] == 1600)]
    assert len(exploits) > 0
    for _, d in exploits.iterrows():
        m, donor = int(d["member"]), int(d["donor"])
        assert reports.loc[(2400, m), "score"] == reports.loc[(1600, donor), "score"]
        assert reports.loc[(2400, m), "score"] != reports.loc[(1600, m), "score"]


def test_same_seed_same_run(reference, tmp_path):
    run_vector(tiny(), tmp_path, supervise=False)
    a, b = report_table(reference[0]), report_table(tmp_path)
    assert a.equals(b)


def test_same_seed_same_start_for_every_method(reference, tmp_path):
    run_vector(
        tiny(method="random", total_steps=4096, perturbation_interval=4096),
        tmp_path,
        supervise=False,
    )
    a = report_table(reference[0])
    b = report_table(tmp_path)
    first = a[a["time"] == 4096].reset_index(drop=True)
    # same hyperparameters and same weights/envs: identical first-interval scores
    assert first.equals(b)


def test_replay_reproduces_the_log_and_catches_tampering(reference, tmp_path):
    ok, message = replay(reference[0])
    assert ok, message
    assert "16 decisions re-derived identically" in message
    shutil.copytree(reference[0], tmp_path / "copy")
    db = sqlite3.connect(tmp_path / "copy" / "experiment.sqlite")
    (seq,) = db.execute("SELECT seq FROM decisions WHERE kind='exploit' ORDER BY seq").fetchone()
    db.execute("UPDATE decisions SET donor = (donor + 1) % 4 WHERE seq = ?", (seq,))
    db.commit()
    db.close()
    ok, message = replay(tmp_path / "copy")
    assert not ok and "the log says" in message


def test_replay_checks_an_interrupted_run_up_to_where_it_stopped(tmp_path):
    """A run stopped after generation 3 of 5 decided after it too; replay used to take that
    generation for the run's last and report its 4 decisions as never made by the replay."""
    import shutil

    def interrupt(event):
        if event["type"] == "generation" and event["generation"] == 3:
            raise KeyboardInterrupt  # a Ctrl-C after the generation was recorded

    folder = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_vector(tiny(), folder, supervise=False, on_event=interrupt)
    exp = load(folder)
    assert sorted(exp.reports["time"].unique()) == [4096, 8192, 12288]
    assert len(exp.decisions) == 4 * 3 and exp.state("summary") is None
    ok, message = replay(folder)
    assert ok, message
    assert message.startswith("replay OK: 12 decisions re-derived identically from 12 reports")
    assert "(the run stopped after t=12288 of 20480)" in message

    # Killed between the generation's reports and its decisions (two transactions): the
    # decisions at t=12288 were never recorded, and that is no mismatch either.
    shutil.copytree(folder, tmp_path / "between")
    db = sqlite3.connect(tmp_path / "between" / "experiment.sqlite")
    db.execute("DELETE FROM decisions WHERE time = 12288")
    db.commit()
    db.close()
    ok, message = replay(tmp_path / "between")
    assert ok and "8 decisions re-derived identically from 12 reports" in message, message

    # A changed decision at the last stored generation is still caught.
    shutil.copytree(folder, tmp_path / "tampered")
    db = sqlite3.connect(tmp_path / "tampered" / "experiment.sqlite")
    db.execute("UPDATE decisions SET kind = 'stop' WHERE time = 12288 AND member = 0")
    db.commit()
    db.close()
    ok, message = replay(tmp_path / "tampered")
    assert not ok and message.startswith("t=12288 member 0: replay says"), message


def test_report_writes_plots_and_summary(reference):
    out = write_report(reference[0])
    for name in ("returns.png", "hyperparameters.png", "lineage.png", "report.html"):
        assert (out / name).stat().st_size > 1000
    text = (out / "summary.md").read_text()
    assert "gpbt-pl on CartPole-v1" in text and "final best member" in text
    with pytest.raises(
        ReportError,
        match="metric 'reward' is not in this experiment's reports; available: \\['score',",
    ):
        write_report(reference[0], metric="reward")


def test_killed_run_resumes_with_nothing_lost(reference, tmp_path):
    cfg_path = write_toml_file(tmp_path / "tiny.toml", {k: v for k, v in TINY.items()})
    folder = tmp_path / "run"
    proc = start_run_held_at(["run", cfg_path, "--out", folder], folder, generation=3)
    os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and its training child, no warning
    proc.wait()
    before = load(folder).reports
    assert len(before) == 8  # two generations of four
    result = run_cli("resume", str(folder), "--no-report")
    assert result.returncode == 0, result.stderr
    after = report_table(folder)
    assert not after.duplicated(["member", "time"]).any()
    assert after.equals(report_table(reference[0]))  # the same run as one never killed
    # every report written before the kill is still there, unchanged
    merged = before.merge(load(folder).reports, on=["member", "time"], suffixes=("", "_new"))
    assert len(merged) == len(before)
    assert np.allclose(merged["score"], merged["score_new"])
    ok, message = replay(folder)
    assert ok, message


def test_watchdog_restarts_a_hung_generation(reference, tmp_path):
    env = {**os.environ, "GPBT_TEST_HANG_AT": "3"}
    cfg_path = write_toml_file(tmp_path / "tiny.toml", {**TINY, "watchdog_seconds": 20})
    folder = tmp_path / "run"
    result = run_cli("run", str(cfg_path), "--out", str(folder), "--no-report", env=env)
    assert result.returncode == 0, result.stderr
    restarts = load(folder).state("restarts")
    assert [e["reason"] for e in restarts["events"]] == ["no progress for 20 s"]
    assert report_table(folder).equals(report_table(reference[0]))
    # the wall time is the whole run's, the 20 s lost to the hang included, not the last try's
    assert load(folder).state("summary")["wall_seconds"] > 20


def test_the_final_evaluation_sets_its_own_watchdog_limit(reference):
    """After the last generation the final evaluation runs with no event; under the last
    generation's limit a long one (many episodes, a short watchdog) was taken for a hang."""
    from gpbt.engines.supervisor import STARTUP_ALLOWANCE_S, Watchdog

    *_, events = reference
    kinds = [e["type"] for e in events]
    # select, then test: the selection and the test evaluation each announce themselves
    assert kinds[-3:] == ["generation", "evaluating", "evaluating"]
    announced = events[-1]
    # 4 episodes of at most 500 CartPole steps: one interval (4096 env steps) of time, at the
    # run's watchdog_seconds (600), plus the time to compile the evaluation program
    assert announced["episodes"] == 4
    assert announced["watchdog_s"] == 600 * 1 + STARTUP_ALLOWANCE_S
    dog = Watchdog(600)
    for event in events:
        dog.observe(event)
        if event["type"] == "generation":
            assert dog.limit == 600
    assert dog.limit == announced["watchdog_s"]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(reference, tmp_path, damage):
    folder = tmp_path / "copy"
    shutil.copytree(reference[0], folder)
    latest = folder / load(folder).latest_checkpoint["path"]
    assert latest.name == "gen000005.npz" and (latest.parent / "gen000004.npz").exists()
    if damage == "missing":
        latest.unlink()
    else:
        latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    result = run_cli("resume", folder, "--no-report")
    assert result.returncode == 0, result.stderr
    notice = [line for line in result.stderr.splitlines() if line.startswith("gpbt: ")]
    assert len(notice) == 1 and notice[0].startswith(
        "gpbt: checkpoint checkpoints/gen000005.npz ("
    ), result.stderr
    assert notice[0].endswith(
        "cannot be read; resuming from checkpoints/gen000004.npz (generation 4) instead"
    )
    # generation 5 trained again, to the same reports and final evaluation
    assert report_table(folder).equals(report_table(reference[0]))
    assert load(folder).state("final_evaluation") == load(reference[0]).state("final_evaluation")
    assert load(folder).latest_checkpoint["path"] == "checkpoints/gen000005.npz"


def test_a_full_disk_stops_the_run_at_once_with_one_line_and_loses_nothing(reference, tmp_path):
    """ENOSPC is not retried (it used to be, three times, then a traceback): the checkpoints
    live on a real tmpfs with room for about one and a half checkpoints, so the second one
    cannot be written."""
    cfg_path = write_toml_file(tmp_path / "tiny.toml", TINY)
    folder = tmp_path / "run"
    one = (Path(reference[0]) / "checkpoints" / "gen000005.npz").stat().st_size
    with tmpfs(folder / "checkpoints", f"{one * 3 // 2 // 1024}k"):
        result = run_cli("run", cfg_path, "--out", folder, "--no-report")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"gpbt: error: the disk holding {folder} is full"), lines[0]
        assert f"`gpbt resume {folder}`" in lines[0]
        exp = load(folder)
        assert exp.state("restarts") is None  # not retried
        assert exp.latest_checkpoint["time"] == 4096  # generation 1's checkpoint is kept
        kept = {p.name: p.read_bytes() for p in (folder / "checkpoints").glob("*.npz")}
    for name, data in kept.items():  # the user frees space: the same files on a roomy disk
        (folder / "checkpoints" / name).write_bytes(data)
    result = run_cli("resume", folder, "--no-report")
    assert result.returncode == 0, result.stderr
    assert report_table(folder).equals(report_table(reference[0]))


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"env": "CartPole-v9"}, "CartPole-v9"),
        (
            {"space": {"learning_rate": {"type": "float", "low": 0.1, "high": 0.2}}},
            "[space] 'learning_rate' is not a hyperparameter of this agent",
        ),
        (
            {"space": {"num_epochs": {"type": "int", "low": 1, "high": 40}}},
            "[space] 'num_epochs': 40 is outside what the agent accepts",
        ),
        ({"hyperparameters": {"lr": 1e-3}}, "[hyperparameters] 'lr' is also in [space]"),
        ({"agent": "dqn"}, "agent = 'dqn' is not known"),
        ({"agent_options": {"num_env": 4}}, "'num_env' is not an option of agent 'ppo'"),
        (
            {"perturbation_interval": 128, "total_steps": 1024},
            "perturbation_interval = 128 env steps is shorter than one update of this agent "
            "(up to 256 env steps per update)",
        ),
        ({"devices": 100_000}, "devices = 100000, but this machine has"),
        # refused from the state's shapes, before a byte of it is allocated
        ({"population": 10_000_000}, "population = 10000000 needs at least"),
    ],
)
def test_config_errors_stop_before_training(tmp_path, change, needle):
    cfg_path = write_toml_file(tmp_path / "bad.toml", {**TINY, **change})
    result = run_cli("run", str(cfg_path), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert needle in result.stderr
    assert result.stderr.count("\n") <= 2  # one clear message, no traceback
    assert not (tmp_path / "run" / "experiment.sqlite").exists()


def test_cli_overrides_reach_the_config(tmp_path):
    cfg_path = write_toml_file(tmp_path / "c.toml", TINY)
    cfg = load_config(
        cfg_path,
        [
            "population=6",
            "gpbt-pl.pairing=sync",
            "method=pbt",
            "pbt.perturbation_factors=[1.5, 0.5]",
        ],
    )
    assert cfg["population"] == 6 and cfg["gpbt-pl"] == {"pairing": "sync"}
    assert cfg["pbt"]["perturbation_factors"] == [1.5, 0.5]
    with pytest.raises(ConfigError, match="override 'population' is not key=value"):
        load_config(cfg_path, ["population"])


def test_the_engine_reads_each_of_its_options_from_the_spec_once_with_its_default():
    from dataclasses import fields

    from gpbt.engines.vector import OPTIONS, VectorSettings

    # one field per option of the engine: an option added to OPTIONS must be read here too
    assert {f.name for f in fields(VectorSettings)} == set(OPTIONS)
    settings = VectorSettings.of(tiny(hyperparameters={"gae_lambda": 0.9}))
    assert settings.test_episodes is None  # absent: as many as final_eval_episodes
    assert settings.hyperparameters == {"gae_lambda": 0.9}
    assert (settings.devices, settings.execution, settings.watchdog_seconds) == (0, "auto", 600)
    assert VectorSettings.of(tiny(test_episodes=5)).test_episodes == 5
