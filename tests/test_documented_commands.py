"""Every command the README and docs/ show in a ```bash block runs, through the real CLI, at a
small size: a documented command cannot break unnoticed again.

Each command (comments stripped, continuation lines joined) is either in RUNS, run in the order
listed with the size overrides given there, or in SKIPPED with the reason it cannot run in CI (a
GPU, a cluster, hours of training, an install). A command in the docs that is in neither table
fails `test_every_documented_command_is_run_or_skipped_with_a_reason`, so a new command has to
be placed. The runs share one folder, so the report, export, retrain, replay and resume
commands read the small runs made by the commands before them. The ```python blocks are
checked to parse (running them is not done here: several train for minutes).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_FENCES = ("bash", "sh", "shell")


def documented_commands() -> dict[str, list[str]]:
    """{command: ["README.md:67", ...]} of every command in a ```bash block of the docs."""
    found: dict[str, list[str]] = {}
    for doc in DOCUMENTS:
        fence, pending, start = None, "", 0
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            marker = re.match(r"^\s*```(\w*)", line)
            if marker:
                fence = None if fence is not None else marker.group(1)
                continue
            if fence not in SHELL_FENCES:
                continue
            text = re.sub(r"\s+#.*$", "", line).strip()
            if not pending and (not text or text.startswith("#")):
                continue
            if not pending:
                start = number
            pending = f"{pending} {text.rstrip(chr(92)).strip()}".strip()
            if not text.endswith("\\"):
                where = f"{doc.relative_to(ROOT)}:{start}"
                found.setdefault(" ".join(pending.split()), []).append(where)
                pending = ""
    return found


# Size overrides per config: small populations and budgets, small static sizes; the space is
# narrowed where the small sizes bound it (PPO's batch must fit its rollout buffer).
PPO_SMALL = [
    "population=2", "total_steps=2048", "perturbation_interval=1024", "final_eval_episodes=1",
    "agent_options.num_envs=8", "agent_options.rollout_chunk=16",
    "agent_options.max_rollout_len=64", "agent_options.minibatch_unit=32",
    "agent_options.max_epochs=4", "space.train_batch_size.low=128",
    "space.train_batch_size.high=512", "space.num_epochs.high=4",
    "space.minibatch_size.values=[32, 64]",
]  # fmt: skip
DQN_SMALL = [
    "population=2", "total_steps=256", "perturbation_interval=128", "final_eval_episodes=1",
    "agent_options.num_envs=4", "agent_options.buffer_size=256", "agent_options.batch_size=16",
    "agent_options.learning_starts=32", "agent_options.hidden_sizes=[16]",
]  # fmt: skip
A2C_SMALL = [
    "population=2", "total_steps=64", "perturbation_interval=32", "final_eval_episodes=1",
    "agent_options.num_envs=2", "agent_options.num_steps=4", "agent_options.hidden_sizes=[16]",
]  # fmt: skip
IMPALA_SMALL = [
    "population=2", "total_steps=256", "perturbation_interval=128", "final_eval_episodes=1",
    "agent_options.num_envs=4", "agent_options.unroll_length=8",
]  # fmt: skip
SB3_SMALL = [
    "population=2", "total_steps=1024", "perturbation_interval=512", "workers=2",
    "space.train_batch_size.low=256", "space.train_batch_size.high=512",
    "space.batch_size.values=[32, 64]",
]  # fmt: skip
TORCH_SMALL = ["population=2", "total_steps=6400", "perturbation_interval=3200"]  # 3200 a step
SIZES = {
    "quickstart.toml": PPO_SMALL,
    "a2c.toml": A2C_SMALL,
    "dqn_minatar.toml": DQN_SMALL,
    "impala_minatar_breakout.toml": IMPALA_SMALL,
    "impala_minatar_freeway.toml": IMPALA_SMALL,
    "local_sb3_inverted_pendulum.toml": SB3_SMALL,
    "torch_trainable.toml": TORCH_SMALL,
}


@dataclass(frozen=True)
class Run:
    """How the test runs one documented command: `part` of it (the command itself when
    empty) with `extra` arguments after it, in `cwd` (the shared folder, or a subfolder)."""

    part: str = ""
    extra: tuple[str, ...] = ()
    # overrides after the size overrides (where a method needs more than the small population)
    after_sizes: tuple[str, ...] = ()
    cwd: str = "."
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


NO_REPORT = ("--no-report",)  # the report is run by its own documented command
# In the order they run: a run before the commands that read its folder. From SECOND_LANE on
# the commands share no folder with the ones before, so the two lanes run side by side.
RUNS: dict[str, Run] = {
    "gpbt run examples/quickstart.toml": Run(),
    "gpbt run examples/quickstart.toml method=pbt population=4 --out runs/bo-pbt": Run(
        extra=NO_REPORT
    ),
    "gpbt run examples/quickstart.toml gpbt-pl.pairing=sync": Run(extra=NO_REPORT),
    "gpbt run examples/quickstart.toml method=mf-pbt": Run(
        after_sizes=("population=4",),
        extra=NO_REPORT,
        note="MF-PBT splits the population into two sub-populations of at least two",
    ),
    "gpbt resume runs/bo-pbt": Run(),
    "gpbt resume runs/my-run": Run(
        part="gpbt resume runs/bo-pbt", note="runs/my-run stands for any run's folder"
    ),
    "gpbt report runs/bo-pbt": Run(),
    "gpbt export runs/bo-pbt": Run(),
    "gpbt retrain runs/bo-pbt --seed 1": Run(extra=NO_REPORT),
    "gpbt retrain runs/bo-pbt --seeds 5": Run(extra=NO_REPORT),
    "gpbt replay runs/bo-pbt": Run(),
    "gpbt run examples/quickstart.toml population=4 total_steps=200000 "
    "perturbation_interval=20000 --out runs/bo": Run(extra=NO_REPORT),
    "gpbt export runs/bo": Run(),
    "gpbt retrain runs/bo --seed 1": Run(extra=NO_REPORT),
    "gpbt retrain runs/bo --seeds 5": Run(extra=NO_REPORT),
    "gpbt report runs/bo": Run(),
    "gpbt run examples/quickstart.toml env=CartPole-v1 method=pbt population=4 "
    "total_steps=80000 perturbation_interval=10000 space.lr.low=1e-6 space.lr.high=1e-5 "
    "--out runs/narrow": Run(extra=NO_REPORT),
    "gpbt run examples/quickstart.toml --tensorboard --out runs/qs": Run(extra=NO_REPORT),
    "gpbt run examples/quickstart.toml --tensorboard --out runs/qs && tensorboard --logdir "
    "runs/qs/tensorboard": Run(
        part="gpbt run examples/quickstart.toml --tensorboard --out runs/qs2",
        extra=NO_REPORT,
        note="the TensorBoard server it starts runs until stopped; its logdir is checked",
    ),
    "gpbt run examples/quickstart.toml logging.wandb.project=gpbt logging.wandb.mode=offline": Run(
        extra=NO_REPORT
    ),
    "cd examples && WANDB_MODE=offline gpbt run torch_trainable.toml --wandb gpbt; cd ..": Run(
        part="gpbt run torch_trainable.toml --wandb gpbt --out ../runs/torch-wandb",
        cwd="examples",
        env={"WANDB_MODE": "offline"},
        extra=NO_REPORT,
    ),
    "gpbt run examples/a2c.toml": Run(),
    'python -c "from gpbt.rl.agents import make_agent; from gpbt.rl.protocol import '
    "check_agent_runs; check_agent_runs(make_agent('examples.a2c_gymnax:A2C', 'CartPole-v1', "
    "{'num_envs': 4}))\"": Run(),
    "gpbt run examples/dqn_minatar.toml": Run(extra=NO_REPORT),
    "gpbt run examples/dqn_minatar.toml env=examples.custom_env:corridor": Run(extra=NO_REPORT),
    "gpbt run examples/dqn_minatar.toml env=examples.custom_env:corridor total_steps=40000 "
    "perturbation_interval=8000 agent_options.buffer_size=4000 "
    "agent_options.learning_starts=500": Run(extra=NO_REPORT),
    "gpbt run examples/impala_minatar_breakout.toml": Run(extra=NO_REPORT),
    "gpbt run examples/impala_minatar_breakout.toml method=pbt": Run(extra=NO_REPORT),
    "gpbt run examples/impala_minatar_freeway.toml total_steps=1_000_000": Run(extra=NO_REPORT),
    "gpbt run examples/local_sb3_inverted_pendulum.toml --out runs/pendulum": Run(extra=NO_REPORT),
    "gpbt resume runs/pendulum": Run(),
    "gpbt resume runs/pendulum step_timeout=1200 workers=1": Run(),
    "gpbt report runs/pendulum": Run(),
    "gpbt resume runs/sb3 step_timeout=1200": Run(
        part="gpbt resume runs/pendulum step_timeout=1200",
        note="runs/sb3 is the README's name for a local-engine run: runs/pendulum is one",
    ),
    "gpbt run examples/local_sb3_inverted_pendulum.toml total_steps=20480 --out runs/ip": Run(
        extra=NO_REPORT
    ),
    "gpbt replay runs/ip": Run(),
    "gpbt envs": Run(),
    "gpbt demo": Run(),
    "gpbt bench smoke --estimate": Run(),
    "gpbt bench smoke --methods pbt 'gpbt-*' --tasks quadratic": Run(),
    "gpbt report benchmarks/results/long-ppo --out /tmp/long-ppo-report": Run(
        part="gpbt report benchmarks/results/long-ppo --out long-ppo-report"
    ),
}

SECOND_LANE = "gpbt run examples/a2c.toml"
GPU_HOURS = "a benchmark suite: hours of training on many cores (its cells are tested at toy size in tests/test_bench.py)"  # noqa: E501
SKIPPED: dict[str, str] = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && gpbt run "
    "examples/quickstart.toml": "makes a virtual environment and installs; its gpbt run is "
    "README's 'gpbt run examples/quickstart.toml', which runs",
    "sudo apt-get update -qq && sudo apt-get install -y -qq chromium && python3 -m venv .venv "
    '&& . .venv/bin/activate && pip install -e ".[dev]" && pip install --no-deps arch==8.0.0 '
    "&& pytest -q": "the test suite itself: .ci/run executes this line "
    "(test_ci_runs_the_readme_test_command)",
    'pip install -e ".[tensorboard]" tensorboard': "installs packages (the dev extra has them)",
    'pip install -e ".[tensorboard]"': "installs packages (the dev extra has them)",
    'pip install -e ".[wandb]"': "installs packages (the dev extra has them)",
    "pip install tensorboard": "installs packages (the dev extra has them)",
    "pip install 'gpbt[sb3]'": "installs packages (the dev extra has them)",
    "apt-get update && apt-get install -y chromium": "installs a system package as root (the "
    "README's test command does)",
    "tensorboard --logdir runs/qs/tensorboard": "starts a server that runs until stopped",
    "gpbt bench smoke": "minutes of training; 'gpbt bench smoke --estimate' runs here and "
    "tests/test_bench.py runs the suite's cells",
    "gpbt bench paper-ppo": GPU_HOURS,
    "gpbt bench paper-ppo:full": GPU_HOURS,
    "gpbt bench ablations --seeds 10": GPU_HOURS,
    "gpbt bench my-suite.toml --out runs/mine": "my-suite.toml is the user's own suite file",
    "gpbt report runs/bench-paper-ppo": "needs the paper-ppo bench's folder (hours to make)",
    "gpbt bench long-ppo --estimate": "trains three generations of every task: many minutes",
    "gpbt bench long-impala --estimate --estimate-generations 5": "trains five generations of "
    "every task: many minutes",
    "gpbt bench long-ppo --tasks 'Pendulum-*'": GPU_HOURS,
    "gpbt bench long-ppo --methods default 'pbt*'": GPU_HOURS,
    "gpbt bench long-ppo --estimate --methods default pbt": "trains three generations of "
    "every task: many minutes",
    "gpbt bench long-ppo --results benchmarks/results/long-ppo": GPU_HOURS,
    "gpbt bench long-ppo --seeds 5 --results benchmarks/results/long-ppo": GPU_HOURS,
    'git add benchmarks/results/long-ppo && git commit -m "long-ppo: seeds 0-4"': "commits to "
    "the user's git repository",
    "gpbt report benchmarks/results/long-ppo": "writes into the committed results folder; the "
    "same report with --out runs here",
    "gpbt bench pairwise-holdout-ppo --tasks 'Freeway-*' --results "
    "benchmarks/results/pairwise-holdout-ppo": GPU_HOURS,
    "gpbt bench pairwise-holdout-ppo --estimate --tasks 'Seaquest-*'": "trains generations of a "
    "research suite: many minutes",
    "python benchmarks/bench_local.py --quick --rounds 1": "a timing benchmark of the local "
    "engine (a minute of SB3 training, its numbers are what it checks)",
    "python benchmarks/bench_local.py --out local.json": "a timing measurement, about 7 minutes",
    "ray start --head --port=6379": "starts a Ray cluster's head node (tests/test_ray_cluster.py "
    "runs a head and two worker nodes on one machine)",
    "ray start --address=HEAD_IP:6379": "joins a Ray cluster on another machine",
    "gpbt run my_experiment.toml address=auto --out /shared/runs/exp1": "the user's own config "
    "on a running Ray cluster with a shared folder",
}
# docs/research: the research pipeline over committed research results (it rewrites the
# committed figures and tables) and its multi-hour benches.
RESEARCH = (
    "the pairwise research pipeline (docs/research): rewrites committed figures or runs hours"
)


def _skip_reason(command: str, places: list[str]) -> str | None:
    if command in SKIPPED:
        return SKIPPED[command]
    if all(p.startswith("docs/research/") for p in places):
        return RESEARCH
    return None


def test_every_documented_command_is_run_or_skipped_with_a_reason():
    commands = documented_commands()
    placed = [c for c in commands if c in RUNS or _skip_reason(c, commands[c])]
    unplaced = [f"{commands[c][0]}: {c}" for c in commands if c not in placed]
    assert not unplaced, (
        "documented commands that no test runs: add each to RUNS (with size overrides) or, if "
        "it cannot run in CI, to SKIPPED with the reason:\n" + "\n".join(unplaced)
    )
    stale = [c for c in [*RUNS, *SKIPPED] if c not in commands]
    assert not stale, "commands no longer in the docs (remove them): " + "; ".join(stale)
    assert len(RUNS) >= 30  # the README's and the guides' commands are found and run


def test_the_extractor_joins_continuations_and_drops_comments(tmp_path, monkeypatch):
    doc = tmp_path / "README.md"
    doc.write_text(
        "```bash\n# a comment\ngpbt run a.toml   # run it\ngpbt run b.toml x=1 \\\n"
        "    y=2\n```\n```python\ngpbt.load(x)\n```\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "DOCUMENTS", [doc])
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert documented_commands() == {
        "gpbt run a.toml": ["README.md:3"],
        "gpbt run b.toml x=1 y=2": ["README.md:4"],
    }


def documented_python_blocks() -> list[tuple[str, str]]:
    """(place, source) of every ```python block of the docs."""
    blocks, fence, lines, start = [], None, [], 0
    for doc in DOCUMENTS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            marker = re.match(r"^\s*```(\w*)", line)
            if marker and fence is None:
                fence, lines, start = marker.group(1), [], number
            elif marker:
                if fence == "python":
                    blocks.append((f"{doc.relative_to(ROOT)}:{start}", "\n".join(lines)))
                fence = None
            elif fence is not None:
                lines.append(line)
    return blocks


def test_every_documented_python_block_is_valid_python():
    # The Python blocks are not run here (several train for minutes); they must at least parse.
    blocks = documented_python_blocks()
    assert len(blocks) > 10
    for place, source in blocks:
        compile(textwrap.dedent(source), place, "exec")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert readme[2] == "```bash" and readme[5] == "```"  # exactly two commands on top
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print-test-command"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert printed == readme[4] + "\n"
    for needed in ("apt-get install -y -qq chromium", "pip install --no-deps arch==8.0.0",
                   'pip install -e ".[dev]"', "pytest -q"):  # fmt: skip
        assert needed in readme[4]


def _argv(command: str, run: Run) -> list[str]:
    words = shlex.split(run.part or command)
    assert words[0] in ("gpbt", "python"), command
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    # The size overrides go after the command's own (the last value of a key wins) and before
    # its first --option (argparse takes no positional arguments after those).
    first_option = next((i for i, w in enumerate(words) if w.startswith("--")), len(words))
    sizes = SIZES[Path(words[2]).name] if words[1] == "run" else []
    return [sys.executable, "-m", "gpbt.cli", *words[1:first_option], *sizes,
            *run.after_sizes, *words[first_option:], *run.extra]  # fmt: skip


@pytest.mark.slow
def test_every_documented_command_runs(tmp_path):
    commands = documented_commands()
    # Each lane works in a folder of its own (runs without --out are named by the second
    # they start in, so two lanes could pick the same name).
    lanes = [tmp_path / "first", tmp_path / "second"]
    for lane in lanes:
        shutil.copytree(ROOT / "examples", lane / "examples")
        results = Path("benchmarks/results/long-ppo")
        shutil.copytree(ROOT / results, lane / results)
    cache = tmp_path / "jax-cache"  # every run of the same program compiles it once
    base_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }
    failures: list[str] = []

    def run_lane(folder: Path, lane: list[str]) -> None:
        for command in lane:
            run = RUNS[command]
            started = time.monotonic()
            result = subprocess.run(
                _argv(command, run),
                cwd=folder / run.cwd,
                env={**base_env, **run.env},
                capture_output=True,
                text=True,
                timeout=600,
            )
            seconds = time.monotonic() - started
            print(f"rc={result.returncode} {seconds:.0f}s {commands[command][0]}: {command}")
            if result.returncode != 0:
                failures.append(f"{commands[command][0]}: {command}\n{result.stderr[-1500:]}")

    ordered = [c for c in RUNS if c in commands]  # a missing one fails the placement test
    split = ordered.index(SECOND_LANE)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(run_lane, lanes, [ordered[:split], ordered[split:]]))
    assert not failures, "\n\n".join(failures)
    # what the commands were for is there
    first, second = lanes
    assert (first / "runs/bo-pbt/report/report.html").is_file()
    assert (first / "runs/bo-pbt/export/member.npz").is_file()
    assert (first / "runs/bo/retrain-seed1").is_dir()
    assert any((first / "runs/qs2/tensorboard").iterdir())
    assert (second / "runs/pendulum/report/report.html").is_file()
    assert (second / "long-ppo-report").is_dir()
