"""The experiment store against real SQLite files (no mocks)."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from gpbt.store import DB_NAME, ExperimentStore, SchemaVersionError, load

CONFIG = {
    "method": "gpbt-pl",
    "population": 4,
    "space": {"lr": {"type": "float", "lo": 1e-5, "hi": 1e-2, "log": True}},
    "seed": 0,
}


def report(member, t, score, **metrics):
    return {
        "member": member,
        "time": t,
        "score": score,
        "metrics": metrics,
        "config": {"lr": 1e-3 * (member + 1), "opt": {"eps": 1e-5}, "act": "tanh"},
    }


def exploit(t, member, donor, **extra):
    return {
        "time": t,
        "member": member,
        "kind": "exploit",
        "method": "pl",
        "partner": donor,
        "donor": donor,
        "member_score": 1.0,
        "partner_score": 2.0,
        "old_config": {"lr": 0.1},
        "new_config": {"lr": 0.2},
        "velocity": {"lr": 0.05},
        **extra,
    }


def cont(t, member):
    return {"time": t, "member": member, "kind": "continue", "method": "pl"}


@pytest.fixture
def store(tmp_path):
    with ExperimentStore(tmp_path / "exp") as s:
        yield s


def test_creates_folder_with_wal_database(tmp_path):
    folder = tmp_path / "a" / "b"
    with ExperimentStore(folder):
        pass
    conn = sqlite3.connect(folder / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    conn.close()


def test_config_round_trip_and_reopen(tmp_path):
    with ExperimentStore(tmp_path) as s:
        assert s.read_config() is None
        s.write_config({**CONFIG, "seed": np.int64(0), "shape": (1, 2)})
        assert s.read_config() == {**CONFIG, "shape": [1, 2]}
    with ExperimentStore(tmp_path) as s:
        # Same config again (other key order, numpy scalar): a resume, not a change.
        s.write_config({"shape": [1, 2], **dict(reversed(list(CONFIG.items())))})
        assert s.read_config()["space"]["lr"]["log"] is True


def test_differing_config_on_reopen_names_the_keys(tmp_path):
    with ExperimentStore(tmp_path) as s:
        s.write_config(CONFIG)
    changed = {**CONFIG, "population": 8, "space": {"lr": {**CONFIG["space"]["lr"], "hi": 0.1}}}
    changed["new_key"] = 1
    with ExperimentStore(tmp_path) as s:
        with pytest.raises(ValueError) as err:
            s.write_config(changed)
        assert s.read_config() == CONFIG  # nothing overwritten
    msg = str(err.value)
    assert "population (stored 4, given 8)" in msg
    assert "space/lr/hi" in msg
    assert "new_key (stored <absent>" in msg
    assert "seed" not in msg and "method" not in msg


def test_reports_round_trip_with_flat_columns(store):
    rows = [
        report(m, t, float(10 * t + m), ret=float(m), loss={"pi": 0.5, "v": 0.25})
        for t in (100, 200)
        for m in range(3)
    ]
    assert store.add_reports(reversed(rows)) == 6
    df = store.reports()
    assert list(df.columns) == [
        "member",
        "time",
        "score",
        "score_invalid",
        "wall_time",
        "metric.ret",
        "metric.loss/pi",
        "metric.loss/v",
        "config.lr",
        "config.opt/eps",
        "config.act",
    ]
    assert df["member"].tolist() == [0, 1, 2, 0, 1, 2]  # ordered by (time, member)
    assert df["time"].tolist() == [100, 100, 100, 200, 200, 200]
    assert df["time"].dtype == np.int64
    assert df["score"].tolist() == [1000.0, 1001.0, 1002.0, 2000.0, 2001.0, 2002.0]
    assert not df["score_invalid"].any()
    assert df["metric.loss/pi"].eq(0.5).all()
    assert df["config.lr"].tolist() == pytest.approx([1e-3, 2e-3, 3e-3] * 2)
    assert df["config.act"].eq("tanh").all()


def test_empty_store_frames_have_the_fixed_columns(store):
    assert list(store.reports().columns[:4]) == ["member", "time", "score", "score_invalid"]
    assert len(store.reports()) == 0
    assert list(store.decisions().columns[:4]) == ["seq", "time", "member", "kind"]
    assert store.latest_checkpoint() is None
    assert store.checkpoints() == []


def test_nan_and_inf_scores_round_trip_and_are_flagged(store):
    store.add_reports(
        [
            report(0, 1, float("nan"), loss=float("nan")),
            report(1, 1, np.float32("inf")),
            report(2, 1, -math.inf),
            report(3, 1, None),
            report(4, 1, np.float64(2.5)),
        ]
    )
    df = store.reports().set_index("member")
    assert math.isnan(df.loc[0, "score"])
    assert math.isnan(df.loc[0, "metric.loss"])
    assert df.loc[1, "score"] == math.inf
    assert df.loc[2, "score"] == -math.inf
    assert math.isnan(df.loc[3, "score"])
    assert df.loc[4, "score"] == 2.5
    assert df["score_invalid"].tolist() == [True, True, True, True, False]
    raw = sqlite3.connect(store.path).execute("SELECT score FROM reports WHERE member = 0")
    assert raw.fetchone()[0] is None


def test_reports_idempotent_on_member_and_time(store):
    store.add_reports([report(0, 100, 1.0), report(1, 100, 2.0)])
    store.add_reports([report(0, 100, 5.0), report(0, 100.0, 6.0)])  # 100 == 100.0
    df = store.reports()
    assert len(df) == 2
    assert df.set_index("member").loc[0, "score"] == 6.0


def test_bad_report_rejects_the_whole_batch(store):
    with pytest.raises(ValueError, match="report #1: missing \\['score'\\]"):
        store.add_reports([report(0, 1, 1.0), {"member": 1, "time": 1}])
    with pytest.raises(ValueError, match="unknown keys \\['step'\\]"):
        store.add_reports([{**report(0, 1, 1.0), "step": 3}])
    with pytest.raises(ValueError, match="time must not be NaN"):
        store.add_reports([report(0, float("nan"), 1.0)])
    with pytest.raises(TypeError, match="report #0 metrics/obj"):
        store.add_reports([report(0, 1, 1.0, obj=object())])
    assert len(store.reports()) == 0


def test_decisions_round_trip(store):
    seqs = store.add_decisions(
        [
            cont(100, 0),
            exploit(100, 1, donor=0, reason="bottom quantile", pair=[1, 0]),
            {
                "time": 100,
                "member": 2,
                "kind": "stop",
                "method": "pl",
                "partner": None,
                "donor": None,
                "member_score": float("nan"),
                "partner_score": np.nan,
                "old_config": {"lr": np.float32(0.5)},
                "new_config": None,
                "velocity": None,
            },
        ]
    )
    assert seqs == [1, 2, 3]
    assert store.add_decisions([cont(200, 0)]) == [4]
    df = store.decisions()
    assert df["seq"].tolist() == [1, 2, 3, 4]
    assert df["kind"].tolist() == ["continue", "exploit", "stop", "continue"]
    assert df["donor"].isna().tolist() == [True, False, True, True]
    assert df.loc[1, "donor"] == 0 and df.loc[1, "partner"] == 0
    assert df.loc[1, "member_score"] == 1.0 and df.loc[1, "partner_score"] == 2.0
    assert math.isnan(df.loc[2, "member_score"]) and math.isnan(df.loc[2, "partner_score"])
    assert df.loc[1, "old_config.lr"] == 0.1 and df.loc[1, "new_config.lr"] == 0.2
    assert df.loc[1, "velocity.lr"] == 0.05 and df.loc[2, "old_config.lr"] == 0.5
    assert df.loc[1, "extra.reason"] == "bottom quantile"
    assert df.loc[1, "extra.pair"] == [1, 0]

    records = store.decision_records()
    assert records[1]["reason"] == "bottom quantile" and records[1]["new_config"] == {"lr": 0.2}
    assert records[2]["new_config"] is None and math.isnan(records[2]["member_score"])
    # A record read back can be written again: same (time, member) -> same row, same seq.
    assert store.add_decisions([records[1]]) == [2]
    assert store.decision_records()[1] == {**records[1], "wall_time": pytest.approx(time.time())}


def test_decisions_idempotent_and_bad_kind_rejects_batch(store):
    store.add_decisions([cont(100, 0), cont(100, 1)])
    assert store.add_decisions([exploit(100, 0, donor=1)]) == [1]
    df = store.decisions()
    assert len(df) == 2 and df.loc[0, "kind"] == "exploit"
    with pytest.raises(ValueError, match="kind must be one of"):
        store.add_decisions([cont(200, 0), {**cont(200, 1), "kind": "explore"}])
    assert len(store.decisions()) == 2


def test_truncate_after_for_resume(store):
    store.add_reports([report(m, t, 1.0) for t in (100, 200, 300) for m in range(2)])
    store.add_decisions([cont(t, m) for t in (100, 200, 300) for m in range(2)])
    store.add_checkpoint(100, "ckpt/100")
    store.add_checkpoint(200, "ckpt/200")
    store.add_checkpoint(300, "ckpt/300")

    assert store.truncate_after(200) == {"reports": 2, "decisions": 2, "checkpoints": 1}
    assert store.reports()["time"].max() == 200
    assert store.decisions()["seq"].tolist() == [1, 2, 3, 4]
    assert store.latest_checkpoint()["path"] == "ckpt/200"

    # The replay re-issues time 300 and numbers it as the abandoned run did.
    assert store.add_decisions([cont(300, 0), cont(300, 1)]) == [5, 6]
    store.add_reports([report(m, 300, 2.0) for m in range(2)])
    assert len(store.reports()) == 6


def test_checkpoints_index(store):
    store.add_checkpoint(100, "ckpt/100", members=[0, np.int64(1)], meta={"rng": [1, 2]})
    store.add_checkpoint(200, "ckpt/200")
    store.add_checkpoint(200, "ckpt/200", members=[0, 1], meta={"note": "again"})  # upsert
    cps = store.checkpoints()
    assert [c["time"] for c in cps] == [100, 200]
    assert cps[0]["members"] == [0, 1] and cps[0]["meta"] == {"rng": [1, 2]}
    latest = store.latest_checkpoint()
    assert latest["path"] == "ckpt/200" and latest["meta"] == {"note": "again"}
    assert set(latest) == {"time", "path", "members", "meta", "created"}


def test_state_last_write_wins(store):
    assert store.get_state("scheduler") is None
    store.set_state("scheduler", {"step": 1, "rng": np.arange(3)})
    store.set_state("scheduler", {"step": 2, "rng": np.arange(3), "big": 2**100})
    assert store.get_state("scheduler") == {"step": 2, "rng": [0, 1, 2], "big": 2**100}


def test_lineage_through_chain_of_exploits(tmp_path):
    with ExperimentStore(tmp_path) as s:
        s.add_reports([report(m, t, 0.0) for t in (100, 200, 300, 400) for m in range(4)])
        s.add_decisions([exploit(100, 1, donor=0), cont(100, 0), cont(100, 2)])
        s.add_decisions([exploit(200, 2, donor=1), exploit(200, 3, donor=0)])
        s.add_decisions([exploit(300, 0, donor=3), cont(300, 1)])
        s.add_decisions([exploit(400, 3, donor=2)])

        # 3 <- 2 (t=400) <- 1 (t=200) <- 0 (t=100); 0's own exploit at 300 came later.
        assert s.lineage(3) == [(400, 3), (400, 2), (200, 1), (100, 0)]
        # 0 took 3's weights at 300, which 3 had taken from 0 at 200.
        assert s.lineage(0) == [(400, 0), (300, 3), (200, 0)]
        assert s.lineage(3, time=399) == [(399, 3), (200, 0)]
        assert s.lineage(2, time=100) == [(100, 2)]
        assert s.lineage(7) == [(None, 7)]
    exp = load(tmp_path)
    for m in range(4):
        assert exp.lineage(m) == ExperimentStore(tmp_path).lineage(m)
    assert exp.lineage(3, time=399) == [(399, 3), (200, 0)]


def test_lineage_ignores_a_member_copying_itself(tmp_path):
    # a fixed schedule changes a member's config as an exploit of its own weights
    with ExperimentStore(tmp_path) as s:
        s.add_reports([report(m, t, 0.0) for t in (100, 200, 300) for m in range(2)])
        s.add_decisions([exploit(100, 0, donor=0), exploit(200, 1, donor=0)])
        s.add_decisions([exploit(300, 1, donor=1)])
        assert s.lineage(1) == [(300, 1), (200, 0)]
        assert s.lineage(0) == [(300, 0)]
    assert load(tmp_path).lineage(1) == [(300, 1), (200, 0)]


def test_load_snapshot_matches_store(tmp_path):
    with ExperimentStore(tmp_path) as s:
        s.write_config(CONFIG)
        s.add_reports([report(m, t, float(m)) for t in (1, 2) for m in range(3)])
        s.add_decisions([exploit(2, 0, donor=2)])
        s.add_checkpoint(2, "ckpt/2", members=[0, 1, 2])
        s.set_state("engine", {"time": 2})
        # Read while the writer is still open, as a dashboard would.
        exp = load(tmp_path)
        pd.testing.assert_frame_equal(exp.reports, s.reports())
        pd.testing.assert_frame_equal(exp.decisions, s.decisions())
    assert exp.config == CONFIG
    assert exp.checkpoints[0]["members"] == [0, 1, 2]
    assert exp.latest_checkpoint["path"] == "ckpt/2"
    assert exp.state("engine") == {"time": 2}
    assert "6 reports from 3 members" in repr(exp)


def test_load_missing_folder_explains_what_is_expected(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as err:
        load(missing)
    assert str(missing) in str(err.value) and DB_NAME in str(err.value)
    with pytest.raises(FileNotFoundError, match=f"has no {DB_NAME}"):
        load(tmp_path)
    assert not (tmp_path / DB_NAME).exists()  # load never creates one


def test_newer_schema_and_foreign_files_give_clear_errors(tmp_path):
    with ExperimentStore(tmp_path / "new"):
        pass
    conn = sqlite3.connect(tmp_path / "new" / DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaVersionError, match="schema version 99.*upgrade gpbt"):
        ExperimentStore(tmp_path / "new")
    with pytest.raises(SchemaVersionError):
        load(tmp_path / "new")

    (tmp_path / "other").mkdir()
    conn = sqlite3.connect(tmp_path / "other" / DB_NAME)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(ValueError, match="not a gpbt experiment store"):
        ExperimentStore(tmp_path / "other")

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / DB_NAME).write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ValueError, match="not an SQLite file"):
        ExperimentStore(tmp_path / "junk")
    with pytest.raises(ValueError, match="not an SQLite file"):
        load(tmp_path / "junk")


def test_closed_store_says_so(tmp_path):
    s = ExperimentStore(tmp_path)
    s.close()
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.reports()


def _filled(tmp_path):
    s = ExperimentStore(tmp_path / "exp")
    s.write_config(CONFIG)
    s.add_reports(
        [report(m, t, float(m) if m else math.nan, ret=m / 3) for t in (1, 2) for m in range(3)]
    )
    s.add_decisions([exploit(2, 0, donor=2, reason="r"), cont(2, 1)])
    s.add_checkpoint(2, "ckpt/2", members=[0, 1, 2], meta={"n": 3})
    return s


def test_export_csv_reads_back_equal(tmp_path):
    with _filled(tmp_path) as s:
        paths = s.export(tmp_path / "out", format="csv")
        reports, decisions = s.reports(), s.decisions()
    assert {p.name for p in paths.values()} == {
        "reports.csv",
        "decisions.csv",
        "checkpoints.csv",
        "config.json",
    }
    pd.testing.assert_frame_equal(pd.read_csv(paths["reports"]), reports)
    back = pd.read_csv(paths["decisions"])
    assert list(back.columns) == list(decisions.columns)
    # CSV has no nullable ints and no lists: compare values, not dtypes.
    decisions["extra.reason"] = decisions["extra.reason"].astype(object)
    pd.testing.assert_frame_equal(back, decisions, check_dtype=False)
    cps = pd.read_csv(paths["checkpoints"])
    assert cps.loc[0, "path"] == "ckpt/2" and cps.loc[0, "meta.n"] == 3


def test_export_parquet_reads_back_equal(tmp_path):
    with _filled(tmp_path) as s:
        paths = s.export(tmp_path / "out", format="parquet")
        reports, decisions = s.reports(), s.decisions()
    pd.testing.assert_frame_equal(pd.read_parquet(paths["reports"]), reports)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["decisions"]), decisions)
    assert pd.read_parquet(paths["checkpoints"]).loc[0, "members"] == "[0, 1, 2]"


def test_export_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    with _filled(tmp_path) as s:
        with pytest.raises(ImportError, match="gpbt\\[parquet\\]"):
            s.export(tmp_path / "out", format="parquet")
        with pytest.raises(ValueError, match="'csv' or 'parquet'"):
            s.export(tmp_path / "out", format="xlsx")


def test_ten_thousand_reports_in_one_batch_read_back_exactly(store):
    # (how fast: benchmarks/bench_store.py; a timed assertion fails on a loaded CI machine)
    rows = [
        report(i % 16, i // 16, float(i), ret=np.float32(i), loss={"pi": 0.1, "v": 0.2})
        for i in range(10_000)
    ]
    store.add_reports(rows)
    df = store.reports()
    assert len(df) == 10_000
    assert df["score"].sum() == sum(range(10_000))
    assert (df["metric.ret"] == df["score"]).all() and (df["metric.loss/v"] == 0.2).all()


WRITE_ONLY = textwrap.dedent(
    """
    import sys
    import gpbt.store
    from gpbt.store import ExperimentStore

    with ExperimentStore(sys.argv[1]) as store:
        store.write_config({"seed": 0})
        store.add_reports(
            [{"member": 0, "time": 1, "score": 1.0, "metrics": {"loss": 0.5}, "config": {"lr": 1}}]
        )
        store.add_decisions(
            [{"time": 1, "member": 0, "kind": "exploit", "donor": 1, "new_config": {"lr": 2}}]
        )
        store.add_checkpoint(1, "ckpt/1", members=[0])
        store.set_state("engine", {"time": 1})
        store.lineage(0)
        store.exploit_count()
    print(sorted(m for m in sys.modules if m.split(".")[0] == "pandas"))
    """
)


def test_writing_does_not_import_pandas(tmp_path):
    # Engines and local-engine worker processes import the store only to write; pandas would
    # add a few hundred milliseconds to each start. A fresh interpreter, since this one has
    # pandas loaded already.
    out = subprocess.run(
        [sys.executable, "-c", WRITE_ONLY, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"the writer imported pandas: {out.stdout}"
    exp = load(tmp_path)  # and what it wrote reads back
    assert len(exp.reports) == 1 and exp.decisions["kind"].tolist() == ["exploit"]


WRITER = textwrap.dedent(
    """
    import sys
    from gpbt.store import ExperimentStore

    store = ExperimentStore(sys.argv[1])
    batch = 0
    while True:
        store.add_reports(
            {"member": m, "time": batch, "score": float(m), "metrics": {"pad": "x" * 100}}
            for m in range(int(sys.argv[2]))
        )
        store.add_decisions(
            {"time": batch, "member": m, "kind": "continue"} for m in range(int(sys.argv[2]))
        )
        if batch == 2:
            print("ready", flush=True)
        batch += 1
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_sigkill_mid_stream_leaves_only_whole_batches(tmp_path, delay):
    batch_size = 3000
    folder = tmp_path / "exp"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), str(batch_size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    with ExperimentStore(folder) as s:
        conn = sqlite3.connect(s.path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        reports, decisions = s.reports(), s.decisions()
        s.add_reports([report(0, 10**9, 1.0)])  # and it is writable again
    assert len(reports) >= 3 * batch_size
    for df in (reports, decisions):
        sizes = df.groupby("time").size()
        assert (sizes == batch_size).all(), sizes[sizes != batch_size]
        assert sizes.index.tolist() == list(range(len(sizes)))  # no gap either
    # Decisions of a batch are committed after its reports, never before.
    assert len(decisions) in (len(reports), len(reports) - batch_size)


def test_exploit_count_counts_copies_of_another_member_only(tmp_path):
    with ExperimentStore(tmp_path) as store:
        assert store.exploit_count() == 0
        store.add_decisions([
            {"time": 1, "member": 0, "kind": "exploit", "donor": 1},
            # a fixed schedule's config change: the member "copies" itself
            {"time": 1, "member": 1, "kind": "exploit", "donor": 1},
            {"time": 1, "member": 2, "kind": "continue"},
            {"time": 2, "member": 2, "kind": "exploit"},  # no donor recorded: a copy
        ])  # fmt: skip
        assert store.exploit_count() == 2
    # the same rule as the report's exploit markers
    from gpbt.analysis.report import _exploits

    assert len(_exploits(load(tmp_path).decisions)) == 2
