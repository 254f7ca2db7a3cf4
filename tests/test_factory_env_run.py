"""A run on a user's env factory from the command line, as the README shows it
(`gpbt run examples/dqn_minatar.toml env=examples.custom_env:corridor`): it finishes with its
report, the episode drawn from the built env; a report whose animation cannot be drawn is
still written; retrain and load_member work on it. The output goes to a pipe, as into a log
file: one log line stays one line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from PIL import Image

from gpbt.analysis.export import export, load_member
from gpbt.cli import main
from gpbt.store import ExperimentStore, load

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CORRIDOR = "examples.custom_env:corridor?length=5"
SMALL = [
    f"env={CORRIDOR}", "population=2", "total_steps=800", "perturbation_interval=400",
    "final_eval_episodes=2", "hyperparameters.epsilon_decay_steps=400",
    "agent_options.num_envs=4", "agent_options.buffer_size=512", "agent_options.batch_size=32",
    "agent_options.learning_starts=64", "agent_options.hidden_sizes=[32]",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # "examples.*" import from the repository root, as in the README


@pytest.fixture(scope="module")
def corridor_run(tmp_path_factory):
    """`gpbt run` with the report at the end and TensorBoard on; (folder, finished process)."""
    out = tmp_path_factory.mktemp("corridor") / "run"
    done = run_cli("run", "examples/dqn_minatar.toml", *SMALL, "--tensorboard", "--out", out,
                   cwd=ROOT)  # fmt: skip
    return out, done


def test_a_finished_run_on_a_factory_env_exits_0_with_its_report(corridor_run):
    folder, done = corridor_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "gpbt: warning" not in done.stderr
    gif = Image.open(folder / "report" / "episode.gif")
    assert gif.width >= 400 and gif.n_frames > 1  # the corridor's observation, drawn as bars
    summary = (folder / "report" / "summary.md").read_text()
    assert f"playing one greedy episode of {CORRIDOR}" in summary
    assert "the stars at their ends are the final score the summary gives" in summary
    # a pipe, not a terminal: each line whole, the score beside its name
    lines = done.stdout.splitlines()
    (best,) = [line for line in lines if "best member:" in line]
    assert "population mean" in best
    (config,) = [line for line in lines if "best config:" in line]
    assert config.rstrip().endswith("}")
    assert any(line.startswith("report: ") for line in lines)


def test_a_report_whose_animation_fails_is_written_with_one_warning(corridor_run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(corridor_run[0], folder)
    shutil.rmtree(folder / "checkpoints")  # the final checkpoint is gone: nothing to play
    assert main(["report", str(folder)]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith("gpbt: warning: report: the episode animation not drawn (")
    assert warnings[0].endswith("the rest of the report is written")
    page = (folder / "report" / "report.html").read_text()
    assert "No animation: drawing the episode failed" in page
    assert page.count('src="data:image/png;base64,') == 3  # every plot is there
    assert not (folder / "report" / "episode.gif").exists()


def test_retrain_starts_in_a_folder_a_crashed_retrain_left_and_logs_nothing_unasked(
    corridor_run, capsys
):
    folder = corridor_run[0]
    half = folder / "retrain-seed0"
    # what a retrain that crashed opening W&B leaves: a store holding only the W&B run id
    with ExperimentStore(half) as store:
        store.set_state("wandb_run_id", "0123abcd")
    assert main(["resume", str(half)]) == 2
    assert f"{half} holds no run to resume" in capsys.readouterr().err
    done = run_cli("retrain", folder, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "retrained 1 fresh member on member" in done.stdout
    new = load(half)
    assert new.config["population"] == 1 and "logging" not in new.config
    assert not (half / "tensorboard").exists()  # the run's --tensorboard is not inherited
    assert (folder / "tensorboard").is_dir()


def test_retrain_seeds_trains_several_members_and_prints_their_mean_and_interval(corridor_run):
    from scipy import stats

    folder = corridor_run[0]
    done = run_cli("retrain", folder, "--seeds", "3", "--logging", cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = folder / "retrain-seed0-x3"
    result = load(out).state("retrain")
    scores = result["scores"]
    assert result["seeds"] == 3 and len(scores) == 3 and load(out).config["population"] == 3
    mean = sum(scores) / 3
    assert result["retrained"] == pytest.approx(mean)
    spread = stats.tstd(scores)
    expected = (
        stats.t.interval(0.95, 2, loc=mean, scale=spread / math.sqrt(3)) if spread else (mean,) * 2
    )
    assert result["interval"] == pytest.approx(list(expected))
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("retrained")]
    assert line.startswith("retrained 3 fresh members on member")
    assert "95% interval [" in line and "over 3 members vs the population's best" in line
    assert (out / "tensorboard").is_dir()  # --logging: the run's [logging] is kept


def test_load_member_config_lists_the_fixed_hyperparameters_too(corridor_run, tmp_path):
    folder = corridor_run[0]
    manifest = export(folder, tmp_path / "export")
    member = load_member(tmp_path / "export")
    tuned = {"lr", "gamma", "epsilon_end", "target_update_period"}  # the toml's [space]
    assert set(member.tuned) == tuned and member.tuned == manifest["config"]
    assert set(member.config) == tuned | {"epsilon_decay_steps"}
    assert member.config["epsilon_decay_steps"] == 400  # fixed by the run, not tuned
    assert {k: member.config[k] for k in tuned} == pytest.approx(member.tuned)
    assert isinstance(member.config["target_update_period"], int)
    written = json.loads((tmp_path / "export" / "export.json").read_text())
    assert written["hyperparameters"] == pytest.approx(member.config)
