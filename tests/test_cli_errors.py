"""Every error the CLI can foresee ends in one `gpbt: error:` line that names the fix, never a
traceback."""

import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import TOY_TRAINABLE, run_cli

ROOT = Path(__file__).parents[1]


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpbt: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("content", ["garbage", "foreign"])
def test_resume_of_a_corrupt_or_foreign_store_is_one_line(tmp_path, content):
    db = tmp_path / "experiment.sqlite"
    if content == "garbage":
        db.write_text("not a database at all")
    else:
        with sqlite3.connect(db) as c:
            c.execute("CREATE TABLE results (x)")
    before = db.read_bytes()
    line = _one_error_line(run_cli("resume", tmp_path))
    assert "not a gpbt experiment store" in line and "experiment.sqlite" in line
    assert db.read_bytes() == before  # nothing written into somebody else's file


@pytest.mark.slow
def test_a_trainable_that_cannot_be_imported_from_here_is_one_line(tmp_path):
    # examples/ray_quadratic.toml names examples.ray_function_trainable, importable only from
    # the repository root; started elsewhere the run must say so, not raise a traceback
    line = _one_error_line(
        run_cli(
            "run", ROOT / "examples" / "ray_quadratic.toml", "--out", tmp_path / "run", cwd=tmp_path
        )  # fmt: skip
    )
    assert "no module named 'examples.ray_function_trainable'" in line
    assert "run from the folder that holds examples/ray_function_trainable.py" in line
    assert not (tmp_path / "run" / "experiment.sqlite").exists()


def test_bench_tasks_that_name_no_task_is_one_line(tmp_path):
    line = _one_error_line(
        run_cli("bench", "smoke", "--tasks", "Breakout-*", "--out", tmp_path / "b", cwd=tmp_path)
    )
    assert line.startswith("gpbt: error: --tasks 'Breakout-*' matches no task of suite smoke")
    assert "its tasks: " in line
    assert not (tmp_path / "b").exists()  # refused before the bench folder is made


@pytest.mark.parametrize("estimate", [[], ["--estimate"]])
def test_bench_methods_that_name_no_row_is_one_line(tmp_path, estimate):
    args = ["bench", "smoke", *estimate, "--methods", "pbt", "default", "--out", tmp_path / "b"]
    line = _one_error_line(run_cli(*args, cwd=tmp_path))
    assert line == (
        "gpbt: error: --methods 'default' matches no method of suite smoke; "
        "its methods: gpbt-pl, pbt, pb2, random"
    )
    assert not (tmp_path / "b").exists()  # refused before the bench folder is made


def toy_local_run(tmp_path) -> None:
    """A finished local-engine run in tmp_path/run (deterministic: seconds, no workers)."""
    (tmp_path / "toys.py").write_text(TOY_TRAINABLE)
    (tmp_path / "local.toml").write_text(
        'engine = "local"\ntrainable = "toys:Toy"\ndeterministic = true\nmethod = "pbt"\n'
        'population = 3\ntotal_steps = 6\nperturbation_interval = 2\ntime_attr = "steps"\n'
        'metric = "score"\nstep_timeout = 60\n'
        '[space]\nlr = { type = "float", low = 0.0, high = 1.0 }\n'
    )
    ran = run_cli("run", "local.toml", "--out", "run", "--no-report", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]


@pytest.mark.slow
def test_the_wrong_folder_or_file_is_one_line_and_leaves_nothing_behind(tmp_path):
    from gpbt.store import ExperimentStore

    toy_local_run(tmp_path)
    db = tmp_path / "run" / "experiment.sqlite"
    before = db.read_bytes()
    line = _one_error_line(run_cli("run", "local.toml", "--out", "run", cwd=tmp_path))
    assert line.endswith("run already holds an experiment; use `gpbt resume run` to continue it "
                         "(resume=True from Python) or pick another folder (--out)")  # fmt: skip
    line = _one_error_line(run_cli("run", "local.toml", "--out", "toys.py", cwd=tmp_path))
    assert line == "gpbt: error: toys.py is a file; give a folder for the experiment"
    line = _one_error_line(run_cli("run", ".", cwd=tmp_path))
    assert line == "gpbt: error: config file '.' is a folder; pass the path of a TOML file"
    line = _one_error_line(run_cli("export", "run", "--out", "toys.py", cwd=tmp_path))
    assert line == "gpbt: error: --out toys.py is a file; give a folder to export into"
    assert db.read_bytes() == before
    # a store that holds no run (created, never started): say so, and do not suggest a resume
    ExperimentStore(tmp_path / "empty").close()
    line = _one_error_line(run_cli("resume", "empty", cwd=tmp_path))
    assert line == ("gpbt: error: empty holds no run to resume (no stored config); start one "
                    "with `gpbt run CONFIG --out empty`")  # fmt: skip
    line = _one_error_line(run_cli("replay", "empty", cwd=tmp_path))
    assert "empty holds no run to replay (no stored config)" in line
    line = _one_error_line(run_cli("export", "empty", cwd=tmp_path))
    assert line.endswith("it holds no run; start one with `gpbt run CONFIG --out empty`")
    # a run whose checkpoints are gone: refused, and no half-written export folder
    shutil.copytree(tmp_path / "run", tmp_path / "gone")
    shutil.rmtree(tmp_path / "gone" / "checkpoints")
    line = _one_error_line(run_cli("export", "gone", cwd=tmp_path))
    assert "has no checkpoint on disk" in line
    assert not (tmp_path / "gone" / "export").exists()
    line = _one_error_line(run_cli("report", "run", "--metric", "loss", cwd=tmp_path))
    # the score (here the metric 'score' itself) is listed once
    assert line.endswith(
        "available: ['score', 'episode_reward_mean', 'steps', 'timesteps_total'] "
        "(use --metric NAME)"
    )


@pytest.mark.slow
def test_resume_changes_a_local_runs_timeouts_and_refuses_another_experiment(tmp_path):
    toy_local_run(tmp_path)
    db = tmp_path / "run" / "experiment.sqlite"
    before = db.read_bytes()
    line = _one_error_line(run_cli("resume", "run", "population=8", cwd=tmp_path))
    assert "'population' cannot change when a run is resumed" in line
    assert "only workers, step_timeout, max_failures, threads_per_worker" in line
    assert db.read_bytes() == before  # refused before anything was opened for writing
    again = run_cli("resume", "run", "step_timeout=1200", "--no-report", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished" in again.stdout


@pytest.mark.slow
def test_a_trainable_that_breaks_the_contract_is_one_line_and_keeps_the_folder(tmp_path):
    toy_local_run(tmp_path)
    line = _one_error_line(
        run_cli("run", "local.toml", "metric=accuracy", "--out", "other", cwd=tmp_path)
    )
    assert line.startswith("gpbt: error: member 0: step() returned no 'accuracy'")
    assert (tmp_path / "other" / "experiment.sqlite").exists()  # what it recorded is kept


@pytest.mark.slow
def test_export_of_a_run_without_one_finite_score_says_so(tmp_path):
    toy_local_run(tmp_path)
    nan = TOY_TRAINABLE.replace('"score": self.w,', '"score": math.nan,')
    assert nan != TOY_TRAINABLE
    (tmp_path / "toys.py").write_text(nan)
    ran = run_cli("run", "local.toml", "--out", "nan", "--no-report", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    out = run_cli("export", "nan", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "(score n/a," in out.stdout
    note = (
        "no member has a finite score (every report was NaN or missing), so member 0 is "
        "exported as found, not as the best"
    )
    assert note in " ".join(out.stdout.split())  # rich may wrap the line
