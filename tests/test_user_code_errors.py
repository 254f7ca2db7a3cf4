"""A user's own code that fails (an agent's constructor, an env factory, a trainable's `setup`
or `step`) ends a command in one `gpbt: error:` line that says whose code failed and how, not
in a traceback through gpbt, and a run in which every member failed does not exit 0."""

from __future__ import annotations

import pytest
from conftest import TOY_TRAINABLE, run_cli, tiny_vector, write_toml_file

from gpbt.store import load

pytestmark = pytest.mark.slow

BROKEN_AGENT = """
class Broken:
    def __init__(self, env, **options):
        raise RuntimeError("no accelerator named tpu9")
"""

BROKEN_ENV = """
def make(**options):
    raise RuntimeError("simulator licence expired")
"""

TRAINABLES = (
    TOY_TRAINABLE
    + """
class ListStep(Toy):
    def step(self):
        return [self.t]

class NoSetup(Toy):
    def setup(self, config):
        raise RuntimeError(f"cannot reach the data server from member {self.member}")
"""
)

LOCAL = {
    "engine": "local",
    "trainable": "trainables:Toy",
    "workers": 1,
    "max_failures": 1,
    "method": "pbt",
    "population": 2,
    "total_steps": 4,
    "perturbation_interval": 2,
    "time_attr": "steps",
    "metric": "score",
    "space": {"lr": {"type": "float", "low": 0.0, "high": 1.0}},
}


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("gpbt: error: "), result.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    "module, change, says",
    [
        (
            BROKEN_AGENT,
            {"agent": "user_code:Broken"},
            "agent = 'user_code:Broken': Broken(env, **agent_options) raised RuntimeError at ",
        ),
        (
            BROKEN_ENV,
            {"env": "user_code:make"},
            "env = 'user_code:make': its factory raised RuntimeError: simulator licence "
            "expired; fix the factory",
        ),
    ],
    ids=["agent", "env"],
)
def test_an_agent_or_env_factory_that_raises_is_one_line_before_anything_is_written(
    tmp_path, module, change, says
):
    (tmp_path / "user_code.py").write_text(module)
    cfg = write_toml_file(tmp_path / "run.toml", tiny_vector(**change))
    line = one_error_line(run_cli("run", cfg, "--out", "run", cwd=tmp_path))
    assert says in line
    # the agent's message and the fix, after where in its code it failed
    assert (
        change.get("agent") is None
        or "user_code.py:" in line
        and line.endswith(
            "no accelerator named tpu9; fix the agent's constructor (gpbt builds the agent once "
            "before anything is written, to check the config)"
        )
    )
    assert not (tmp_path / "run").exists()


def test_a_step_that_returns_no_dict_is_one_line_without_a_worker_traceback(tmp_path):
    (tmp_path / "trainables.py").write_text(TRAINABLES)
    cfg = write_toml_file(tmp_path / "run.toml", {**LOCAL, "trainable": "trainables:ListStep"})
    line = one_error_line(run_cli("run", cfg, "--out", "run", cwd=tmp_path))
    assert line == "gpbt: error: member 0: step() must return a dict of metrics, got list"


@pytest.mark.parametrize("deterministic", [True, False], ids=["simulated", "workers"])
def test_a_run_in_which_every_member_failed_exits_non_zero_in_one_line(tmp_path, deterministic):
    (tmp_path / "trainables.py").write_text(TRAINABLES)
    cfg = write_toml_file(
        tmp_path / "run.toml",
        {**LOCAL, "trainable": "trainables:NoSetup", "deterministic": deterministic},
    )
    result = run_cli("run", cfg, "--out", "run", "--no-report", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]  # after the log of each member's faults
    assert last.startswith(
        "gpbt: error: every member failed, so this run has no result: member 0: error in "
        "setup/restore: RuntimeError: cannot reach the data server from member 0 (and 1 more; "
    )
    assert "fix the trainable and start a new run in another folder" in last
    assert "finished" not in result.stdout
    # what it recorded stays: the config, and each member's faults in the engine's state
    state = load(tmp_path / "run").state("local_engine")
    assert sorted(state["failed"]) == ["0", "1"]
