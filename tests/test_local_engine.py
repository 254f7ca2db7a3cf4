"""The local engine: asynchronous semantics (deterministic mode), faults in real worker
processes, SIGKILL + resume, and the lineage-aware checkpoint clean-up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import TOY_TRAINABLE, check_summary, wait_for_reports, write_toml_file

from gpbt.analysis.replay import replay
from gpbt.core.methods import make_scheduler
from gpbt.core.space import Space
from gpbt.engines.local import CHECKPOINTS, LocalEngine, run_local
from gpbt.engines.trainable import Trainable, TrainableError
from gpbt.store import ExperimentStore, load

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

SPACE = {"lr": {"type": "float", "low": 0.0, "high": 1.0}}


class Counter(Trainable):
    """Weights are one number that grows by `lr` per step, so who copied whom is arithmetic."""

    def setup(self, config):
        self.w, self.t = 0.0, 0

    def step(self):
        time.sleep(self.config.get("sleep", 0.0))
        self.w += self.config["lr"]
        self.t += 1
        return {"timesteps_total": self.t, "episode_reward_mean": self.w, "w": self.w}

    def save(self, d):
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"w": self.w, "t": self.t}, f)

    def restore(self, d):
        with open(os.path.join(d, "state.json")) as f:
            s = json.load(f)
        self.w, self.t = s["w"], s["t"]

    def reset_config(self, config):
        return True


class NoMetric(Counter):
    def step(self):
        out = super().step()
        del out["episode_reward_mean"]
        return out


class NoTime(Counter):
    def step(self):
        out = super().step()
        del out["timesteps_total"]
        return out


class ForgetsCounter(Counter):
    def restore(self, d):
        super().restore(d)
        self.t = 0  # a trainable that does not restore its time counter


def engine(
    folder,
    *,
    population=3,
    workers=3,
    total=6,
    interval=2,
    method="gpbt-pl",
    options=None,
    trainable=Counter,
    seed=0,
    **kw,
):
    sched = make_scheduler(
        method,
        Space(SPACE),
        perturbation_interval=interval,
        seed=seed,
        max_time=total,
        options=options,
    )
    kw.setdefault("deterministic", True)
    return LocalEngine(
        trainable,
        sched,
        folder,
        population=population,
        total_steps=total,
        workers=workers,
        **kw,
    )


def collect(eng):
    events = []
    eng.progress = events.append
    return events


# ------------------------------------------------------------------ deterministic semantics

DURATION = {0: 1.0, 1: 1.7, 2: 2.9}


def run_async(folder):
    eng = engine(folder, sim_duration=lambda m, metrics: DURATION[m])
    events = collect(eng)
    summary = eng.run()
    return eng, events, summary


def test_event_order_follows_the_simulated_clock(tmp_path):
    _, events, summary = run_async(tmp_path / "a")
    assert summary["finished"]
    reports = [(e["member"], e["time"]) for e in events if e["type"] == "report"]
    # Each member's k-th step finishes at k * its duration; no two finish together.
    expected = sorted(
        ((m, k) for m in DURATION for k in range(1, 7)), key=lambda mk: mk[1] * DURATION[mk[0]]
    )
    assert reports == expected
    clocks = [e["clock"] for e in events]
    assert clocks == sorted(clocks)


def test_same_seed_same_run(tmp_path):
    _, first, _ = run_async(tmp_path / "a")
    _, second, _ = run_async(tmp_path / "b")
    assert first == second
    a, b = load(tmp_path / "a"), load(tmp_path / "b")
    cols = ["seq", "time", "member", "kind", "partner", "donor"]
    assert a.decisions[cols].equals(b.decisions[cols])
    assert a.reports[["member", "time", "score"]].equals(b.reports[["member", "time", "score"]])


def test_decisions_are_the_cores_asynchronous_decisions(tmp_path):
    """Replaying the reports, in the engine's event order, through a fresh scheduler gives
    exactly the engine's decisions: who was ready, who was paired, who copied whom."""
    eng, events, _ = run_async(tmp_path / "a")
    replay = make_scheduler("gpbt-pl", Space(SPACE), perturbation_interval=2, seed=0, max_time=6)
    replay.initial_population(3)
    with ExperimentStore(tmp_path / "a") as store:
        logged = store.decision_records()
    produced = []
    for e in events:
        if e["type"] != "report":
            continue
        before = replay.configs()
        d = replay.on_report(e["member"], e["time"], e["score"])
        after = replay.configs()
        # Only the reporting member's hyperparameters may change.
        assert {m: c for m, c in after.items() if m != e["member"]} == {
            m: c for m, c in before.items() if m != e["member"]
        }
        if d.record is not None:
            produced.append(d.record.to_dict())
    assert len(produced) == len(logged) > 0
    assert any(r["kind"] == "exploit" for r in logged)
    for mine, theirs in zip(produced, logged, strict=True):
        for key in ("time", "member", "kind", "partner", "donor", "new_config"):
            assert mine[key] == theirs[key], key


def check_lineage(events):
    """Replay the weights: a report must show the state its member was left in plus one step of
    its current lr. An exploit hands the loser the donor's current state: the donor's latest
    weights, or, if the donor was itself just exploited and has not trained since, the weights
    it was given (the core's view: a loser carries its winner's weights from the decision on).
    Returns how many exploits were checked."""
    state: dict[int, float] = {}
    config: dict[int, dict] = {}
    checked = 0
    for e in events:
        m = e["member"]
        if e["type"] == "report":
            if m in config:
                assert e["config"] == config[m]
                assert e["metrics"]["w"] == pytest.approx(state.get(m, 0.0) + config[m]["lr"])
            state[m] = e["metrics"]["w"]
            config[m] = e["config"]
        elif e["type"] == "exploit":
            state[m] = state[e["donor"]]
            config[m] = e["config"]
            checked += 1
    return checked


def test_loser_trains_on_the_donors_weights_with_its_new_config(tmp_path):
    _, events, _ = run_async(tmp_path / "a")
    assert check_lineage(events) > 0


def test_more_members_than_workers_are_multiplexed_fairly(tmp_path):
    eng = engine(tmp_path, population=5, workers=2, total=8, interval=2)
    events = collect(eng)
    times = {m: 0 for m in range(5)}
    running_max = 0
    summary = eng.run()
    assert summary["finished"]
    for e in events:
        if e["type"] == "report":
            times[e["member"]] = e["time"]
            running_max = max(running_max, max(times.values()) - min(times.values()))
    # The member furthest behind always runs next: nobody gets more than a step or two ahead.
    assert running_max <= 2
    assert all(m["time"] == 8 for m in summary["members"].values())


def test_checkpoint_cleanup_keeps_what_exploits_need(tmp_path):
    """One worker, four members: losers wait in the queue while their donors train on, so a
    donor's old checkpoint must outlive the donor's newer ones until the loser restored it."""
    eng = engine(tmp_path, population=4, workers=1, total=12, interval=1)
    root = tmp_path / CHECKPOINTS
    seen = []

    def check(e):
        seen.append(e)
        on_disk = {p.name for p in root.iterdir()}
        referenced = {Path(st.ckpt).name for st in eng.members.values() if st.ckpt}
        assert referenced <= on_disk  # never deleted while a member's state points at it
        assert len(on_disk) <= 4 + 1  # and nothing else piles up (+1: the step in flight)

    eng.progress = check
    summary = eng.run()
    assert summary["finished"] and summary["exploits"] >= 5
    assert not summary["failed_members"]
    assert all(m["faults"] == 0 for m in summary["members"].values())
    # Every exploit's loser continued from exactly the donor's state at decision time.
    assert check_lineage(seen) == summary["exploits"]
    on_disk = {p.name for p in root.iterdir()}
    assert on_disk == {Path(m["checkpoint"]).name for m in summary["members"].values()}


@pytest.mark.parametrize(
    "method,options",
    [
        ("gpbt-pl", {"pairing": "random"}),
        ("gpbt-pl", {"pairing": "truncation"}),
        ("gpbt-pl", {"pairing": "sync"}),
        ("pbt", {}),
        ("pbt", {"synch": True}),
        ("pb2", {}),
        ("random", {}),
    ],
)
def test_every_method_and_pairing_runs(tmp_path, method, options):
    eng = engine(
        tmp_path,
        population=4,
        workers=2,
        total=8,
        interval=2,
        method=method,
        options=options,
        sim_duration=lambda m, metrics: 1.0 + 0.3 * m,
    )
    summary = eng.run()
    assert summary["finished"]
    exp = load(tmp_path)
    d = exp.decisions
    assert list(d["seq"]) == list(range(1, len(d) + 1))
    assert (d["kind"] == "stop").sum() == 4
    if method == "random":
        assert summary["exploits"] == 0
    synchronous = options.get("pairing") == "sync" or options.get("synch")
    if synchronous:
        # Lockstep: every member decides at each boundary, at one common time.
        boundaries = d[d["kind"] != "stop"].groupby("time")["member"].apply(sorted)
        assert all(members == [0, 1, 2, 3] for members in boundaries)
        assert len(boundaries) == 3
    assert exp.reports.groupby("member")["time"].max().tolist() == [8, 8, 8, 8]


def test_missing_metric_or_time_attr_names_member_and_key(tmp_path):
    with pytest.raises(
        TrainableError, match=r"member 0: step\(\) returned no 'episode_reward_mean'"
    ):
        engine(tmp_path / "a", trainable=NoMetric).run()
    with pytest.raises(TrainableError, match=r"member 0: .*'timesteps_total' \(the time_attr\)"):
        engine(tmp_path / "b", trainable=NoTime).run()


def test_time_attr_must_grow_after_restore(tmp_path):
    with pytest.raises(TrainableError, match="must grow with every step"):
        engine(tmp_path, trainable=ForgetsCounter, total=6, interval=1).run()


def test_deterministic_faults_and_timeouts(tmp_path):
    """In deterministic mode a step longer than step_timeout is a hang, exactly reproducible."""
    durations = {0: 1.0, 1: 1.0, 2: 5.0}
    eng = engine(
        tmp_path,
        sim_duration=lambda m, metrics: durations[m],
        step_timeout=3.0,
        max_failures=1,
    )
    events = collect(eng)
    summary = eng.run()
    assert summary["failed_members"] == [2]
    kinds = [(e["type"], e.get("cause")) for e in events if e["member"] == 2]
    assert kinds == [("restart", "timeout"), ("failed", "timeout")]
    assert summary["members"][0]["time"] == summary["members"][1]["time"] == 6


def test_the_live_view_shows_a_local_runs_members_through_faults_and_exploits(tmp_path):
    """`gpbt run`'s table, fed the local engine's events (report, decisions, restart, failed)."""
    from gpbt.live_view import LiveView

    durations = {0: 1.0, 1: 1.3, 2: 5.0, 3: 1.1}
    eng = engine(
        tmp_path, population=4, workers=4, total=12, interval=2, method="pbt",
        sim_duration=lambda m, metrics: durations[m], step_timeout=3.0, max_failures=1,
    )  # fmt: skip
    events = collect(eng)
    view = LiveView({"method": "pbt", "env": None, "total_steps": 12})
    eng.progress = lambda e: (events.append(e), view.update(e))
    eng.run()
    assert {e["type"] for e in events} >= {"report", "exploit", "restart", "failed"}
    rows = {r["member"]: r for r in view.member_rows()}
    assert sorted(rows) == [0, 1, 3]  # member 2 timed out before its first report
    for m, row in rows.items():
        last = [e for e in events if e["member"] == m and e["type"] == "report"][-1]
        assert (row["time"], row["score"]) == (last["time"], last["score"])
        exploits = [e for e in events if e["member"] == m and e["type"] == "exploit"]
        assert row["event"] == (f"copied {exploits[-1]['donor']}" if exploits else "")


def test_a_local_run_in_a_log_file_prints_a_line_per_interval(tmp_path, capsys):
    """`gpbt run` with output to a file: an asynchronous run says how far every member has come,
    once per perturbation interval, with the best member (mode-aware) and the exploits."""
    from gpbt.live_view import LiveView

    durations = {0: 1.0, 1: 1.3, 2: 5.0, 3: 1.1}
    eng = engine(
        tmp_path, population=4, workers=4, total=12, interval=2, method="pbt",
        sim_duration=lambda m, metrics: durations[m], step_timeout=3.0, max_failures=1,
    )  # fmt: skip
    events = []
    view = LiveView({"population": 4, "perturbation_interval": 2, "total_steps": 12, "mode": "max"})
    view.plain = True  # as when the output is not a terminal
    eng.progress = lambda e: (events.append(e), view.update(e))
    eng.run()
    lines = capsys.readouterr().out.splitlines()
    # Member 2 never reports: it holds the population at 0 until it is given up (two 3 s
    # timeouts), when the others have passed t=4; from then on they carry the count alone.
    assert [line.split()[0] for line in lines] == [f"t={t}/12" for t in (4, 6, 8, 10, 12)]
    assert all(line.endswith("failed [2]") for line in lines)
    final = {e["member"]: e["score"] for e in events if e["type"] == "report"}
    best = max(final, key=final.get)
    exploits = sum(e["type"] == "exploit" for e in events)
    assert f"best member {best} score {final[best]:.4g}  exploits {exploits}" in lines[-1]


def test_resume_after_a_crash_between_commit_and_rows(tmp_path):
    """The worst instant to die: state committed, report/decision rows not yet written."""
    eng = engine(tmp_path, population=4, workers=2, total=10, interval=2)
    commits = [0]

    def die():
        commits[0] += 1
        if commits[0] == 25:
            raise KeyboardInterrupt

    eng._after_commit = die
    with pytest.raises(KeyboardInterrupt):
        eng.run()
    before = load(tmp_path)
    with pytest.raises(FileExistsError, match="gpbt resume"):
        engine(tmp_path, population=4, workers=2, total=10, interval=2).run()
    summary = engine(tmp_path, population=4, workers=2, total=10, interval=2).run(resume=True)
    assert summary["finished"]
    after = load(tmp_path)
    assert len(after.reports) == 40 > len(before.reports)
    check_continuous(after, interval=2, total=10)


def test_resume_needs_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        engine(tmp_path).run(resume=True)


def check_continuous(exp, *, interval, total):
    """Every ready report has exactly one decision, in order, and seq has no gap."""
    d, r = exp.decisions, exp.reports
    assert list(d["seq"]) == list(range(1, len(d) + 1))
    assert not r.duplicated(["member", "time"]).any()
    for m, rows in r.groupby("member"):
        times = sorted(rows["time"])
        assert times == list(range(1, total + 1)), m
        expected, last = [], 0
        for t in times:
            if t >= total:
                expected.append((t, "stop"))
            elif t - last >= interval:
                expected.append((t, None))
                last = t
        got = d[d["member"] == m].sort_values("seq")
        assert list(got["time"]) == [t for t, _ in expected], m
        assert got["kind"].iloc[-1] == "stop"


# ------------------------------------------------------------------ real worker processes


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    markers = tmp_path_factory.mktemp("markers")
    code = tmp_path_factory.mktemp("code")
    (code / "worker_trainables.py").write_text(TRAINABLES)
    faults = {
        "1": "raise_once",
        "2": "raise_always",
        "3": "nan",
        "4": "hang_once",
        "5": "exit_once",
        "6": "hang_always",
    }
    sched = make_scheduler("gpbt-pl", Space(SPACE), perturbation_interval=2, seed=0, max_time=8)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(code))
        eng = LocalEngine(
            "worker_trainables:Faulty",
            sched,
            folder,
            population=7,
            total_steps=8,
            workers=2,
            step_timeout=4.0,
            max_failures=1,
            trainable_options={"faults": faults, "markers": str(markers), "sleep": 0.01},
        )
        events = collect(eng)
        summary = eng.run()
    return summary, events, load(folder)


def test_faulty_members_are_failed_and_the_rest_finish(fault_run):
    summary, _, exp = fault_run
    assert summary["failed_members"] == [2, 6]
    assert "always broken" in summary["failures"][2]
    assert "timeout" in summary["failures"][6]
    for m in (0, 1, 3, 4, 5):
        assert summary["members"][m]["status"] == "done"
        times = sorted(exp.reports.loc[exp.reports["member"] == m, "time"])
        assert times == list(range(1, 9)), m  # restarted from its checkpoint: no gap, no repeat
    assert not (exp.reports["member"].isin([2, 6])).any()


def test_a_raise_a_hang_and_a_dead_worker_each_cost_one_restart(fault_run):
    summary, events, _ = fault_run
    causes = {e["member"]: e["cause"] for e in events if e["type"] == "restart"}
    assert causes[1] == "error"
    assert causes[4] == "timeout"
    assert causes[5] == "died"
    for m in (1, 4, 5):
        assert summary["members"][m]["faults"] == 1


def test_nan_counts_as_the_worst_score(fault_run):
    _, _, exp = fault_run
    r = exp.reports[exp.reports["member"] == 3]
    assert r["score"].isna().all() and r["score_invalid"].all()
    d = exp.decisions
    mine = d[(d["member"] == 3) & (d["kind"] != "stop")]
    assert len(mine) > 0 and (mine["kind"] == "exploit").all()
    against = d[(d["partner"] == 3) & (d["member"] != 3)]
    # While member 3's own last report is NaN, whoever is paired with it wins. Right after it
    # copied a donor it ranks with that donor's (finite) score until it reports again, since
    # it carries the donor's weights: only then can a partner lose to it.
    assert (against[against["partner_score"].isna()]["kind"] == "continue").all()
    assert against[against["kind"] == "exploit"]["partner_score"].notna().all()


# Trainables that run in worker processes live in a small module written at test time: a
# worker then imports only it and gpbt.engines, not this test file with pytest and pandas.
TRAINABLES = (
    TOY_TRAINABLE
    + '''
class Faulty(Toy):
    """Misbehaves by member id, as trainable_options["faults"] says; "once" faults leave a
    marker file so the restarted member (possibly in a new process) behaves."""
    def _once(self, tag):
        marker = Path(self.config["markers"]) / f"{tag}-{self.member}"
        if marker.exists():
            return False
        marker.touch()
        return True
    def step(self):
        kind = self.config["faults"].get(str(self.member))
        nxt = self.t + 1
        if kind == "raise_once" and nxt == 3 and self._once("raise"):
            raise RuntimeError("boom once")
        if kind == "raise_always":
            raise RuntimeError("always broken")
        if kind == "hang_once" and nxt == 2 and self._once("hang"):
            time.sleep(120)
        if kind == "hang_always":
            time.sleep(120)
        if kind == "exit_once" and nxt == 2 and self._once("exit"):
            os._exit(3)
        out = super().step()
        if kind == "nan":
            out["episode_reward_mean"] = math.nan
        return out
'''
)


def kill_config():
    return {
        "engine": "local",
        "trainable": "worker_trainables:Toy",
        "workers": 2,
        "method": "gpbt-pl",
        "population": 4,
        "total_steps": 30,
        "perturbation_interval": 3,
        "time_attr": "steps",
        "metric": "score",
        "mode": "max",
        "seed": 3,
        "space": SPACE,
        "gpbt-pl": {"pairing": "random"},
        "trainable_options": {"sleep": 0.04},
    }


def test_sigkill_then_resume_loses_nothing(tmp_path, monkeypatch):
    (tmp_path / "worker_trainables.py").write_text(TRAINABLES)
    folder = tmp_path / "exp"
    script = textwrap.dedent(
        f"""
        import json, sys
        from gpbt.engines.local import run_local
        run_local(json.loads(sys.argv[1]), {str(folder)!r})
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(kill_config())],
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            assert proc.poll() is None, "the run ended before it could be killed"
            try:
                n = len(load(folder).reports)
            except (FileNotFoundError, ValueError):
                continue
            if n >= 30:
                break
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers, as a power cut would
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = load(folder)
    assert 30 <= len(before.reports) < 120
    monkeypatch.chdir(tmp_path)
    summary = run_local(kill_config(), folder, resume=True)
    assert summary["finished"]
    after = load(folder)
    # Every report written before the kill is still there, once, unchanged.
    key = ["member", "time", "score"]
    merged = before.reports[key].merge(after.reports[key], on=["member", "time"], how="left")
    assert merged["score_x"].equals(merged["score_y"])
    assert not after.reports.duplicated(["member", "time"]).any()
    # Decisions recorded before the kill are unchanged, and the log continues without a gap.
    cols = ["seq", "time", "member", "kind", "donor"]
    assert after.decisions[cols].head(len(before.decisions)).equals(before.decisions[cols])
    check_continuous(after, interval=3, total=30)
    live = {p.name for p in (folder / CHECKPOINTS).iterdir()}
    assert len(live) <= 4
    # The scheduler's view survived the kill: the whole log, before and after it, is
    # re-derived from the reports in the order the engine committed them.
    ok, message = replay(folder)
    assert ok, message


def test_replay_rederives_an_asynchronous_run_and_catches_tampering(tmp_path, monkeypatch):
    (tmp_path / "worker_trainables.py").write_text(TRAINABLES)
    monkeypatch.chdir(tmp_path)
    config = {**kill_config(), "deterministic": True, "population": 6, "total_steps": 24}
    check_summary(run_local(config, tmp_path / "exp"), "local", 6)
    exp = load(tmp_path / "exp")
    ok, message = replay(tmp_path / "exp")
    assert ok, message
    assert f"{len(exp.decisions)} decisions re-derived identically from 144 reports" in message
    assert (exp.decisions["kind"] == "exploit").sum() > 0

    shutil.copytree(tmp_path / "exp", tmp_path / "copy")
    db = sqlite3.connect(tmp_path / "copy" / "experiment.sqlite")
    (seq, member, t) = db.execute(
        "SELECT seq, member, time FROM decisions WHERE kind='exploit' ORDER BY seq"
    ).fetchone()
    db.execute("UPDATE decisions SET donor = (donor + 1) % 6 WHERE seq = ?", (seq,))
    db.commit()
    db.close()
    ok, message = replay(tmp_path / "copy")
    assert not ok and message.startswith(f"t={t:g} member {member}: replay copies member")

    run_local({**config, "gpbt-pl": {"pairing": "sync"}}, tmp_path / "sync")
    ok, message = replay(tmp_path / "sync")
    assert not ok and "barriers the store does not record" in message

    faulty = {
        **config,
        "trainable": "worker_trainables:Faulty",
        "max_failures": 0,
        "trainable_options": {"faults": {"2": "raise_always"}, "markers": str(tmp_path)},
    }
    run_local(faulty, tmp_path / "faulty")
    ok, message = replay(tmp_path / "faulty")
    assert not ok and message.startswith("member(s) [2] failed during this run")


@pytest.mark.parametrize("kill_at", [5, 23, 41])
def test_a_deterministic_run_killed_and_resumed_is_the_uninterrupted_run(
    tmp_path, monkeypatch, kill_at
):
    """docs/local-engine.md: with `deterministic = true` a run killed at any commit and resumed
    gives the uninterrupted run's reports, in its order, and its decisions: the simulated
    clock and the steps in flight are part of each commit, and a resume runs those steps again
    from the same checkpoints to finish at the same simulated times."""
    (tmp_path / "worker_trainables.py").write_text(TRAINABLES)
    monkeypatch.chdir(tmp_path)
    config = {**kill_config(), "deterministic": True, "trainable_options": {}, "total_steps": 12}
    run_local(config, tmp_path / "whole")
    whole = load(tmp_path / "whole")

    commits, real_commit = [0], LocalEngine._commit

    def commit_then_die(self, reports, decisions):
        real_commit(self, reports, decisions)
        commits[0] += 1
        if commits[0] == kill_at:
            raise KeyboardInterrupt  # as a kill -9 right after this commit

    monkeypatch.setattr(LocalEngine, "_commit", commit_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_local(config, tmp_path / "cut")
    monkeypatch.setattr(LocalEngine, "_commit", real_commit)
    before = load(tmp_path / "cut")
    assert 0 < len(before.report_order()) < 4 * 12
    run_local(config, tmp_path / "cut", resume=True)
    after = load(tmp_path / "cut")
    assert after.report_order() == whole.report_order()
    assert _same_decisions(after, whole)
    check_continuous(after, interval=3, total=12)
    ok, message = replay(tmp_path / "cut")
    assert ok, message


def test_deterministic_runs_killed_with_sigkill_resume_into_the_uninterrupted_run(
    tmp_path, monkeypatch
):
    """The same promise against real kills: `gpbt run` (deterministic) killed with SIGKILL at
    three moments, each time resumed, ends as the run never killed (reports in the same order,
    the same exploits)."""
    (tmp_path / "worker_trainables.py").write_text(TRAINABLES)
    config = {**kill_config(), "deterministic": True, "total_steps": 12}  # steps sleep 0.04 s
    cfg = write_toml_file(tmp_path / "det.toml", config)
    whole = subprocess.run(
        [sys.executable, "-m", "gpbt.cli", "run", cfg, "--out", "whole", "--no-report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert whole.returncode == 0, whole.stderr[-2000:]
    args = ["run", cfg, "--out", "cut"]
    for n in (7, 19, 33):
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpbt.cli", *args, "--no-report"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_reports(tmp_path / "cut", n, proc, timeout=120)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        args = ["resume", "cut"]
    done = subprocess.run(
        [sys.executable, "-m", "gpbt.cli", "resume", "cut", "--no-report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = load(tmp_path / "cut"), load(tmp_path / "whole")
    assert a.report_order() == b.report_order()
    assert _same_decisions(a, b)


def _same_decisions(a, b) -> bool:
    cols = ["seq", "time", "member", "kind", "partner", "donor", "new_config.lr"]
    return a.decisions[cols].equals(b.decisions[cols])


def test_replay_explains_why_a_run_started_from_python_cannot_be_rebuilt(fault_run):
    ok, message = replay(fault_run[2].folder)
    assert not ok and "started from Python with a scheduler object" in message
