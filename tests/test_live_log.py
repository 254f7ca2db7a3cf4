"""Live TensorBoard and W&B logging from all three engines, read back from the files the real
writers wrote (TensorBoard's own EventAccumulator; the W&B offline run's .wandb records) and
compared with the experiment store: every member's score, hyperparameters and metrics at its
report times, every exploit, and the population summary. W&B runs offline: no network."""

from __future__ import annotations

import copy
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpbt.config import ConfigError, validate_config
from gpbt.store import load

ROOT = Path(__file__).resolve().parents[1]
WANDB = {"project": "gpbt-tests", "mode": "offline"}


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch):
    folder = tmp_path / "wandb-dir"
    folder.mkdir()
    monkeypatch.setenv("WANDB_DIR", str(folder))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return folder


# ---------------------------------------------------------------------- reading back
def tensorboard_scalars(logdir: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{run: {tag: [(step, value), ...]}} as TensorBoard itself loads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for run in sorted(p for p in logdir.iterdir() if p.is_dir()):
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        out[run.name] = {
            t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]
        }
        for tag in acc.Tags()["tensors"]:
            out[run.name][tag] = [
                (e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(tag)
            ]
    return out


def wandb_records(wandb_dir: Path) -> tuple[list[dict], dict]:
    """(history rows, config) of the one offline run under `wandb_dir`, from its .wandb file:
    a LevelDB-style log of 32 KiB blocks holding W&B's protobuf Records. A logged table's
    row gets its content, read from the run's files, under "<key>/data"."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = wandb_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending, rows, config = 32768, 7, b"", [], {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left in a block for a header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += block - pos % block
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})  # fmt: skip
            elif record.WhichOneof("record_type") == "run":
                config = {i.key: json.loads(i.value_json) for i in record.run.config.update}
    for row in rows:
        for key in [k[: -len("/_type")] for k in row if k.endswith("/_type")]:
            if row[f"{key}/_type"] == "table-file":
                table = json.loads((path.parent / "files" / row[f"{key}/path"]).read_text())
                row[f"{key}/data"] = [
                    dict(zip(table["columns"], r, strict=True)) for r in table["data"]
                ]
    return rows, config


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6)


def check_against_store(folder: Path, tb: dict, rows: list[dict], hps: list[str]) -> None:
    """Each member's curves and exploits in TensorBoard and W&B are the store's rows."""
    exp = load(folder)
    reports = exp.reports.sort_values(["member", "time"])
    for member, mine in reports.groupby("member"):
        run = f"member_{member:02d}"
        wb_scores = [(r["time"], r[f"score/{run}"]) for r in rows if f"score/{run}" in r]
        for got in (tb[run]["score"], wb_scores):
            assert [t for t, _ in got] == mine["time"].tolist()
            assert all(same(v, s) for (_, v), s in zip(got, mine["score"], strict=True)), got
        for hp in hps:
            assert [v for _, v in tb[run][f"hp/{hp}"]] == pytest.approx(
                mine[f"config.{hp}"].tolist()
            )
            wb = [r[f"hp/{hp}/{run}"] for r in rows if f"hp/{hp}/{run}" in r]
            assert wb == pytest.approx(mine[f"config.{hp}"].tolist())
    exploits = exp.decisions[exp.decisions["kind"] == "exploit"]
    assert len(exploits) > 0
    for member, mine in exploits.groupby("member"):
        run = f"member_{member:02d}"
        expected = list(
            zip(mine["time"].tolist(), mine["donor"].astype(float).tolist(), strict=True)
        )
        assert tb[run]["exploit/donor"] == expected
        wb = [(r["time"], r[f"exploit/donor/{run}"]) for r in rows if f"exploit/donor/{run}" in r]
        assert wb == expected
    texts = [line for _, line in tb["population"]["exploits/text_summary"]]
    assert len(texts) == len(exploits)
    for (_, d), line in zip(exploits.sort_values(["seq"]).iterrows(), texts, strict=True):
        assert line.startswith(f"t={d['time']:g}: member {d['member']} copied member {d['donor']}")
    assert tb["population"]["population/exploits"][-1][1] == len(exploits)
    (table,) = [r["exploits/data"] for r in rows if "exploits/data" in r]  # logged at close
    assert [(t["time"], t["member"], t["donor"]) for t in table] == [
        (d["time"], d["member"], d["donor"]) for _, d in exploits.sort_values("seq").iterrows()
    ]


# ---------------------------------------------------------------------- config
BASE = {
    "env": "CartPole-v1",
    "method": "pbt",
    "population": 2,
    "total_steps": 100,
    "perturbation_interval": 50,
    "space": {"lr": {"type": "float", "low": 0.1, "high": 0.2}},
}


@pytest.mark.parametrize(
    "logging, needle",
    [
        (
            {"tensorbord": True},
            "[logging] 'tensorbord' is not a logging option; use tensorboard = ",
        ),
        ({"tensorboard": 1}, "[logging] tensorboard = 1: use true (into <experiment>/tensorboard)"),
        ({"wandb": "yes"}, "[logging] wandb = 'yes': use true or a table of run settings"),
        ({"wandb": {"projekt": "x"}}, "[logging.wandb] 'projekt' is not a W&B run setting; use"),
        ({"wandb": {"mode": "cloud"}}, "[logging.wandb] mode = 'cloud': use one of ['online',"),
        ({"wandb": {"tags": "a"}}, "[logging.wandb] tags = 'a': must be a list of strings"),
        ("tb", "key 'logging' = 'tb' has the wrong type; expected dict"),
    ],
)
def test_bad_logging_tables_are_one_clear_error(logging, needle):
    with pytest.raises(ConfigError) as err:
        validate_config({**BASE, "logging": logging})
    assert needle in str(err.value)


def test_a_valid_logging_table_passes_and_no_table_stays_absent():
    cfg = validate_config(
        {**BASE, "logging": {"tensorboard": "tb", "wandb": {**WANDB, "tags": ["a"]}}}
    )
    assert cfg["logging"]["wandb"]["tags"] == ["a"]
    assert "logging" not in validate_config(BASE)  # a stored config without it resumes as is


# ---------------------------------------------------------------------- the engines
@pytest.mark.slow
def test_vector_engine_logs_live_from_the_supervisors_events(tmp_path, wandb_dir, monkeypatch):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_custom_agent import TINY

    from gpbt.engines.vector import run_vector

    monkeypatch.chdir(ROOT)  # the example agent and env import from the repository root
    cfg = copy.deepcopy(TINY)
    cfg.update(total_steps=1200, logging={"tensorboard": True, "wandb": dict(WANDB)})
    cfg = validate_config(cfg)
    run_vector(cfg, tmp_path / "run")  # the supervised child process
    tb = tensorboard_scalars(tmp_path / "run" / "tensorboard")
    rows, config = wandb_records(wandb_dir)
    check_against_store(tmp_path / "run", tb, rows, ["lr", "target_update_period"])
    assert config["agent"] == "examples.dqn_minatar:DQN"
    reports = load(tmp_path / "run").reports
    assert [t for t, _ in tb["member_00"]["metric/loss"]] == [400, 800, 1200]
    # lockstep: the population summary at each interval's end is over that interval's scores
    for key, reduce in (("best_score", max), ("mean_score", lambda s: sum(s) / len(s))):
        expected = [reduce(g["score"].tolist()) for _, g in reports.groupby("time")]
        assert [v for _, v in tb["population"][f"population/{key}"]] == pytest.approx(expected)
        wb = [(r["time"], r[f"population/{key}"]) for r in rows if f"population/{key}" in r]
        assert [t for t, _ in wb] == [400, 800, 1200]
        assert [v for _, v in wb] == pytest.approx(expected)
    # the final greedy evaluation, the score the run prints, is a series of its own at the end
    final = load(tmp_path / "run").state("final_evaluation")
    scores = final.get("test_returns") or final["returns"]
    chosen = final.get("selected", max(range(len(scores)), key=scores.__getitem__))
    for member, score in enumerate(scores):
        assert tb[f"member_{member:02d}"]["final/score"] == [(1200, pytest.approx(score))]
    assert tb["population"]["final/best_score"] == [(1200, pytest.approx(scores[chosen]))]
    assert tb["population"]["final/best_member"] == [(1200, chosen)]
    (wb_final,) = [r for r in rows if "final/best_score" in r]
    assert (wb_final["time"], wb_final["final/best_score"]) == (1200, pytest.approx(scores[chosen]))
    assert wb_final["final/mean_score"] == pytest.approx(sum(scores) / len(scores))


def test_a_run_the_training_process_refuses_leaves_no_live_log_and_no_folder(
    tmp_path, wandb_dir, monkeypatch
):
    # The supervised child is where the agent is built and the space checked against it, so
    # this refusal comes after the parent made the folder, locked it and set up the live log.
    sys.path.insert(0, str(ROOT / "tests"))
    from test_custom_agent import TINY

    from gpbt.engines.vector import run_vector

    monkeypatch.chdir(ROOT)
    cfg = copy.deepcopy(TINY)
    cfg.update(logging={"tensorboard": True, "wandb": dict(WANDB)})
    cfg["space"] = {**cfg["space"], "eps": {"type": "float", "low": 0.1, "high": 0.2}}
    with pytest.raises(ConfigError, match="'eps' is not a hyperparameter of this agent"):
        run_vector(validate_config(cfg), tmp_path / "run")
    assert list(wandb_dir.rglob("*run-*")) == []  # no W&B run, not even an empty one
    assert not (tmp_path / "run").exists()  # nor the folder made for it


def test_a_live_log_opens_its_sinks_at_the_first_row(tmp_path, wandb_dir):
    from gpbt.live_log import open_live_log

    logging = {"tensorboard": True, "wandb": dict(WANDB)}
    unused = open_live_log(logging, tmp_path / "unused")
    unused.log_reports([])
    unused.log_decisions([{"kind": "explore", "member": 0, "donor": None, "time": 1}])
    unused.close()
    assert not (tmp_path / "unused").exists()  # no store (the W&B id), no TensorBoard folder
    assert list(wandb_dir.rglob("*run-*")) == []
    used = open_live_log(logging, tmp_path / "used")
    used.log_reports([{"member": 1, "time": 4, "score": 0.5, "config": {"lr": 0.1}}])
    used.close()
    assert tensorboard_scalars(tmp_path / "used" / "tensorboard")["member_01"]["score"] == [
        (4, 0.5)
    ]
    # one W&B run, started by the row (the engine tests check its rows against the store;
    # they log them well after the run starts, as the engines do: see `open`)
    assert len(list(wandb_dir.glob("wandb/offline-run-*/run-*.wandb"))) == 1
    opened = open_live_log(logging, tmp_path / "opened").open()
    assert len(list(wandb_dir.glob("wandb/offline-run-*/run-*.wandb"))) == 2  # no row yet
    opened.close()


LOCAL_TRAINABLE = """
import json
from pathlib import Path
from gpbt.engines.trainable import Trainable

class Climb(Trainable):
    def setup(self, config):
        self.lr, self.x, self.t = config["lr"], 0.0, 0

    def step(self):
        self.t += 10
        self.x += self.lr
        return {"loss": -self.x, "timesteps_total": self.t, "lr_seen": self.lr}

    def save(self, d):
        Path(d, "s.json").write_text(json.dumps([self.x, self.t]))

    def restore(self, d):
        self.x, self.t = json.loads(Path(d, "s.json").read_text())

    def reset_config(self, config):
        self.lr = config["lr"]
        return True
"""


@pytest.mark.slow
def test_local_engine_logs_every_report_and_exploit_via_the_cli_flags(tmp_path, wandb_dir):
    (tmp_path / "climb.py").write_text(LOCAL_TRAINABLE)
    (tmp_path / "local.toml").write_text(
        textwrap.dedent(
            """
            engine = "local"
            trainable = "climb:Climb"
            deterministic = true
            method = "gpbt-pl"
            population = 4
            total_steps = 60
            perturbation_interval = 20
            metric = "loss"
            mode = "min"
            seed = 1
            [space]
            lr = { type = "float", low = 0.1, high = 1.0 }
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "gpbt.cli", "run", "local.toml", "--out", "run", "--no-report",
         "--tensorboard", "--wandb", "gpbt-tests"],  # fmt: skip
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "run"
    assert load(folder).config["logging"] == {
        "tensorboard": True,
        "wandb": {"project": "gpbt-tests"},
    }
    tb = tensorboard_scalars(folder / "tensorboard")
    rows, _ = wandb_records(wandb_dir)
    check_against_store(folder, tb, rows, ["lr"])
    assert [v for _, v in tb["member_00"]["metric/lr_seen"]] == pytest.approx(
        load(folder).reports.query("member == 0")["config.lr"].tolist()
    )
    # asynchronous: a summary after every report, over each member's latest score, whose step
    # never goes back; mode = "min": the best is the lowest loss
    best = tb["population"]["population/best_score"]
    steps = [s for s, _ in best]
    assert len(best) == len(load(folder).reports) and steps == sorted(steps)
    last = load(folder).reports.sort_values("time").groupby("member")["score"].last()
    assert best[-1][1] == pytest.approx(last.min())


TUNE_TRAINABLE = """
import json
from pathlib import Path
from ray import tune

class Climb(tune.Trainable):
    def setup(self, config):
        self.lr, self.x = config["lr"], 0.0

    def step(self):
        self.x += self.lr
        return {"score": self.x}

    def save_checkpoint(self, d):
        Path(d, "s.json").write_text(json.dumps(self.x))

    def load_checkpoint(self, d):
        self.x = json.loads(Path(d, "s.json").read_text())

    def reset_config(self, config):
        self.lr = config["lr"]
        return True
"""
RAY_RUN = {
    "engine": "ray", "trainable": "climb_tune:Climb", "method": "gpbt-pl", "population": 4,
    "total_steps": 12, "perturbation_interval": 4, "time_attr": "training_iteration",
    "metric": "score", "seed": 3, "num_cpus": 2,
    "space": {"lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True}},
}  # fmt: skip


@pytest.fixture
def tune_trainable(tmp_path, monkeypatch):
    """`climb_tune:Climb` importable from the working directory; Ray started by the run."""
    pytest.importorskip("ray")
    (tmp_path / "climb_tune.py").write_text(TUNE_TRAINABLE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_raylet_start_wait_time_s", "180")


@pytest.mark.slow
def test_ray_engine_logs_what_the_tune_scheduler_writes_to_the_store(
    tmp_path, wandb_dir, tune_trainable
):
    from gpbt.engines import run_engine

    config = {**RAY_RUN, "logging": {"tensorboard": True, "wandb": dict(WANDB)}}
    summary = run_engine(config, tmp_path / "exp")  # run_engine's live log, as every engine's
    assert summary["exploits"] > 0
    tb = tensorboard_scalars(tmp_path / "exp" / "tensorboard")
    # one writer per member and one for the population: the live log was opened once
    assert sorted(tb) == ["member_00", "member_01", "member_02", "member_03", "population"]
    for run in tb:
        assert len(list((tmp_path / "exp" / "tensorboard" / run).glob("events.*"))) == 1, run
    rows, config_seen = wandb_records(wandb_dir)  # one W&B run (it unpacks one .wandb file)
    check_against_store(tmp_path / "exp", tb, rows, ["lr"])
    assert config_seen["trainable"] == "climb_tune:Climb"
    reports = load(tmp_path / "exp").reports
    assert len(tb["population"]["population/best_score"]) > 0
    assert tb["population"]["population/best_score"][-1][1] == pytest.approx(
        reports.sort_values("time").groupby("member")["score"].last().max()
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "bad, error",
    [
        # a trial that needs more than the Ray gpbt starts: refused once Ray is up
        ({"resources_per_trial": {"cpu": 3}}, "one trial needs 3 CPU but the Ray cluster has 2"),
        ({"trainable": "climb_tune:Clmb"}, "module 'climb_tune' has no attribute 'Clmb'"),
    ],
)
def test_a_refused_ray_run_leaves_no_live_log_behind(
    tmp_path, wandb_dir, tune_trainable, bad, error
):
    from gpbt.engines import run_engine

    config = {**RAY_RUN, **bad, "logging": {"tensorboard": True, "wandb": dict(WANDB)}}
    with pytest.raises(Exception, match=error):
        run_engine(config, tmp_path / "exp")
    assert list(wandb_dir.rglob("*run-*")) == []  # no W&B run, not even an empty one
    assert not (tmp_path / "exp" / "tensorboard").exists()
