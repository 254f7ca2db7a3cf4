"""A run's life as the operating system sees it: one live writer per folder, children that end
with their parent, and kills at any moment that lose nothing."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import count_reports, run_cli, tiny_vector, wait_for_reports, write_toml_file

from gpbt.engines.lock import FolderInUse, hold_folder
from gpbt.store import load

pytestmark = pytest.mark.slow

TINY = tiny_vector()


def _start(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "gpbt.cli", *map(str, args), "--no-report"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group, so the test can always clean up
    )


def _descendants(pid: int) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _table(folder):
    exp = load(folder)
    reports = exp.reports[["member", "time", "score", "config.lr", "config.clip"]]
    decisions = exp.decisions[["time", "member", "kind", "donor", "new_config.lr"]]
    return (
        reports.reset_index(drop=True),
        decisions.reset_index(drop=True),
        exp.state("final_evaluation"),
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whole")
    cfg = write_toml_file(tmp / "tiny.toml", TINY)
    result = run_cli("run", cfg, "--out", tmp / "run", "--no-report")
    assert result.returncode == 0, result.stderr
    return cfg, tmp / "run"


def test_killing_the_parent_ends_every_child_and_frees_the_folder(uninterrupted, tmp_path):
    cfg, whole = uninterrupted
    folder = tmp_path / "run"
    proc = _start("run", cfg, "--out", folder)
    try:
        wait_for_reports(folder, 4, proc)
        children = _descendants(proc.pid)
        assert children, "the vector engine trains in a child process"
        os.kill(proc.pid, signal.SIGKILL)  # the parent only: nobody tells the children
        proc.wait()
        deadline = time.time() + 5
        while any(_alive(c) for c in children) and time.time() < deadline:
            time.sleep(0.1)
        assert not [c for c in children if _alive(c)], "a child outlived its parent by 5 s"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # the OS released the lock with its holder: the run resumes at once, and nothing is lost
    result = run_cli("resume", folder, "--no-report")
    assert result.returncode == 0, result.stderr
    for got, want in zip(_table(folder), _table(whole), strict=True):
        assert got.equals(want) if hasattr(got, "equals") else got == want


def test_a_second_run_or_resume_on_a_live_folder_is_refused(uninterrupted, tmp_path):
    cfg, whole = uninterrupted
    db = whole / "experiment.sqlite"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with hold_folder(whole, "resume"):  # this test process is the live run
        with pytest.raises(FolderInUse):
            with hold_folder(whole):
                pass
        for args in (("resume", whole), ("run", cfg, "--out", tmp_path / "fresh")):
            folder = args[1] if args[0] == "resume" else tmp_path / "fresh"
            with hold_folder(folder, "run") if args[0] == "run" else _nothing():
                result = run_cli(*args, "--no-report")
            assert result.returncode == 2
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("gpbt: error: "), result.stderr
            assert f"is in use by process {os.getpid()}" in lines[0]
            assert "gpbt resume" in lines[0]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # the store is untouched
    assert not (tmp_path / "fresh" / "experiment.sqlite").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_kills_at_random_moments_then_resume_equal_an_uninterrupted_run(uninterrupted, tmp_path):
    cfg, whole = uninterrupted
    folder = tmp_path / "run"
    rng = random.Random(11)
    kills = 0
    args = ("run", cfg, "--out", folder)
    # Kill points: after a random number of reports (mid-generation store writes, a
    # checkpoint or decisions in flight), plus a random extra delay of up to half a second.
    for target in sorted(rng.sample(range(1, 19), 3)):
        proc = _start(*args)
        try:
            if target > count_reports(folder):
                wait_for_reports(folder, target, proc)
            time.sleep(rng.uniform(0.0, 0.5))
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        kills += 1
        args = ("resume", folder)
    result = run_cli("resume", folder, "--no-report")
    assert result.returncode == 0, result.stderr
    assert kills == 3
    for got, want in zip(_table(folder), _table(whole), strict=True):
        assert got.equals(want) if hasattr(got, "equals") else got == want


def test_ctrl_c_after_a_generation_resumes_from_that_generation(uninterrupted, tmp_path):
    """Ctrl-C used to SIGKILL the training process, and a checkpoint was recorded only when
    the next one began: a run stopped after generation g resumed from g - 1. Now every
    checkpoint file finished on disk is recorded, and the stopped run continues from it."""
    cfg, whole = uninterrupted
    folder = tmp_path / "run"
    proc = _start("run", cfg, "--out", folder)
    try:
        second = folder / "checkpoints" / "gen000002.npz"
        deadline = time.time() + 300
        while not second.exists():
            assert proc.poll() is None and time.time() < deadline, "no second checkpoint"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        assert proc.wait(timeout=120) == 130
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    on_disk = sorted((folder / "checkpoints").glob("gen[0-9]*[0-9].npz"))
    exp = load(folder)
    assert exp.latest_checkpoint["path"] == f"checkpoints/{on_disk[-1].name}"
    resumes_at = exp.latest_checkpoint["time"]
    assert resumes_at >= 2 * 4096
    kept = exp.reports[exp.reports["time"] <= resumes_at]
    result = run_cli("resume", folder, "--no-report")
    assert result.returncode == 0, result.stderr
    # nothing up to the checkpoint was trained again: its rows are the very rows written
    # before the interrupt (same wall times), and the whole run equals an uninterrupted one
    after = load(folder).reports
    assert after[after["time"] <= resumes_at]["wall_time"].tolist() == kept["wall_time"].tolist()
    for got, want in zip(_table(folder), _table(whole), strict=True):
        assert got.equals(want) if hasattr(got, "equals") else got == want


SCRIPT_VECTOR = """
from gpbt.config import validate_config
from gpbt.engines import run_engine
spec = validate_config({config!r})
print("best", run_engine(spec, {folder!r}).best_member)
"""
SCRIPT_LOCAL = """
import sys
sys.path.insert(0, {here!r})
from toy_trainable import Toy
from gpbt.core.methods import make_scheduler
from gpbt.engines.local import LocalEngine
sched = make_scheduler("pbt", {{"lr": {{"type": "float", "low": 0.0, "high": 1.0}}}},
                       perturbation_interval=2, seed=0, max_time=4)
print("best", LocalEngine(Toy, sched, {folder!r}, population=2, workers=2,
                          total_steps=4).run()["best_member"])
"""


@pytest.mark.parametrize("engine", ["vector", "local"])
def test_a_script_without_a_main_guard_fails_once_naming_the_fix(engine, tmp_path):
    """Spawned children import the calling script again; without `if __name__ == "__main__":`
    each child ran the script's gpbt call (and was restarted 4 times, then a bare 'died')."""
    from conftest import TOY_TRAINABLE

    folder = str(tmp_path / "run")
    if engine == "vector":
        body = SCRIPT_VECTOR.format(config=tiny_vector(), folder=folder)
    else:
        (tmp_path / "toy_trainable.py").write_text(TOY_TRAINABLE)
        body = SCRIPT_LOCAL.format(here=str(tmp_path), folder=folder)
    script = tmp_path / "train.py"
    script.write_text(body)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "best" not in done.stdout
    assert "MainGuardMissing" in out and "put the code that calls gpbt under `if __name__ ==" in out
    assert "training failed" not in out and "keep dying" not in out
    # the same code under the guard runs (into a new folder: the first one holds a run)
    guarded = "if __name__ == '__main__':\n" + "".join(
        f"    {line}\n" for line in body.replace(folder, folder + "2").strip().splitlines()
    )
    script.write_text(guarded)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("best ")
