"""An engine is one object, registered once: a toy engine (tests/toy_engine.py, one module)
plus one registration line runs through `run_engine` (validation, the folder lock, the refusal
of a second fresh run) and through the `gpbt replay` and `gpbt report` paths its `Engine`
declares, with no other file edited."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpbt.cli import main
from gpbt.engines import ENGINES, engine_named, register, run_engine
from gpbt.errors import ConfigError, FolderError

CONFIG = {
    "engine": "toy",
    "method": "pbt",
    "population": 4,
    "total_steps": 40,
    "perturbation_interval": 4,
    "seed": 3,
    "space": {
        "h0": {"type": "float", "low": 0.0, "high": 1.0},
        "h1": {"type": "float", "low": 0.0, "high": 1.0},
    },
}


@pytest.fixture
def toy_engine(monkeypatch):
    monkeypatch.setitem(ENGINES, "toy", ENGINES.get("toy", ""))
    register("toy", "toy_engine")  # the one registration line
    return engine_named("toy")


def test_a_registered_toy_engine_runs_replays_and_reports(toy_engine, tmp_path, capsys):
    folder = tmp_path / "run"
    events = []
    summary = run_engine(CONFIG, folder, on_event=events.append)
    assert summary.engine == "toy" and summary.finished
    assert [e["generation"] for e in events] == list(range(1, 11))
    assert 0 < summary.best_score <= 1.2  # Q(theta) = 1.2 - theta0^2 - theta1^2
    # run_engine refuses a second fresh run into the folder, for this engine too
    with pytest.raises(FolderError, match="already holds an experiment"):
        run_engine(CONFIG, folder)

    assert main(["replay", str(folder)]) == 0
    replayed = capsys.readouterr().out
    assert "replay OK: 36 decisions re-derived identically from 40 reports" in replayed

    assert main(["report", str(folder)]) == 0
    text = (folder / "report" / "summary.md").read_text()
    # the animation is a part the toy engine does not declare: said, not attempted
    assert "No animation: the 'toy' engine" in text

    # export: only the schedule, since it declares no weights
    assert main(["export", str(folder)]) == 0
    assert (folder / "export" / "schedule.json").is_file()


def test_a_toy_engines_options_are_validated_from_its_object(toy_engine, tmp_path):
    from gpbt.config import validate_config

    spec = validate_config(CONFIG)
    assert spec["lr"] == 0.02 and spec.metric == "q" and spec.time_attr == "steps"
    with pytest.raises(ConfigError, match="unknown key 'agent' in the config for engine 'toy'"):
        validate_config({**CONFIG, "agent": "ppo"})
    with pytest.raises(ConfigError, match="key 'lr' = -1.0"):
        validate_config({**CONFIG, "lr": -1.0})
    with pytest.raises(ConfigError, match="keeps no checkpoint"):
        run_engine(CONFIG, tmp_path, resume=True)


def test_what_a_run_supports_is_asked_of_its_engine(toy_engine):
    assert engine_named("vector").supports("animate")
    assert not engine_named("local").supports("animate")
    assert engine_named("local").driver == "asynchronous"
    assert toy_engine.supports("replay") and not toy_engine.supports("retrain")
    with pytest.raises(ValueError, match="unknown feature 'sing'"):
        toy_engine.supports("sing")
    with pytest.raises(ConfigError, match="engine = 'dask' is not known"):
        engine_named("dask")


def test_the_add_an_engine_example_in_the_docs_runs(monkeypatch, tmp_path, capsys):
    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (code,) = [c for c in blocks if 'register("toy"' in c]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(ENGINES, "toy", "")  # removed again after the test
    exec(code, {})
    member, score = capsys.readouterr().out.split()
    assert 0 <= int(member) < 4 and 0 < float(score) <= 1.2
    assert (tmp_path / "runs" / "toy-engine" / "experiment.sqlite").is_file()
