"""Ranges that hold the defaults (issue 25): every shipped suite's space holds the agent's
default hyperparameters well inside each range, or the suite says why not
(`defaults_outside`); the corrected development suites; and the committed results of the old
suites still count as done after the field was added.

"Well inside" is a unit coordinate (the space's own [0, 1] view: log ranges on a log scale,
integers as in gpbt.core.space) in [MARGIN, 1 - MARGIN]. MARGIN = 0.15 leaves at least 15% of
a uniform draw's mass on each side of the default (a random search samples both sides) and,
on a two-decade log range, 0.3 decades (x2) of room past it: three x1.25 perturbation steps,
so PBT can move past the default either way before it meets an edge.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from gpbt.bench.results import ResultsFolder
from gpbt.bench.suite import build_suite, known_suites, load_suite, suites_dir
from gpbt.config import ConfigError, read_toml
from gpbt.core.space import Choice, Space
from gpbt.rl.envs import resolve_env_name

MARGIN = 0.15
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def shipped_labels() -> list[str]:
    labels = []
    for name in known_suites():
        labels.append(name)
        variants = read_toml(suites_dir() / f"{name}.toml", "suite file").get("variants") or {}
        labels += [f"{name}:{v}" for v in variants]
    return labels


@functools.cache
def agent_defaults(agent: str, env: str, options: str) -> dict[str, float]:
    from gpbt.rl.agents import make_agent

    # brax's envs are all continuous control (gpbt.rl.envs builds them with discrete=False),
    # and PPO's defaults depend only on the action kind and the static config: a brax task's
    # defaults are those of Pendulum-v1's agent with the same agent options (building a brax
    # env takes minutes)
    if resolve_env_name(env)[0].startswith("brax:"):
        env = "Pendulum-v1"
    return make_agent(agent, env, json.loads(options)).default_hyperparameters()


def defaults_outside(suite) -> list[str]:
    """Each (task, hyperparameter) whose default lies outside [MARGIN, 1 - MARGIN] of its range,
    named with where it lies; toy tasks have no agent and are skipped."""
    found = []
    for cell in suite.cells():
        if cell.kind != "vector" or cell.row != "equal" or cell.seed != suite.seeds[0]:
            continue
        cfg = cell.config
        defaults = {
            **agent_defaults(cfg["agent"], cfg["env"], json.dumps(cfg.get("agent_options") or {})),
            **(cfg.get("hyperparameters") or {}),
        }
        for name, param in Space.from_dict(cfg["space"]).params.items():
            value = defaults[name]
            if isinstance(param, Choice) or not param.low <= value <= param.high:
                where = "not a value of the range" if isinstance(param, Choice) else "outside"
            else:
                unit = param.to_unit(value)
                where = f"at unit {unit:.2f}" if not MARGIN <= unit <= 1 - MARGIN else ""
            if where and (cell.task, name) not in {f[:2] for f in found}:
                found.append((cell.task, name, f"{value:g} {where}"))
    return found


@pytest.mark.parametrize("label", shipped_labels())
def test_every_shipped_suite_holds_the_defaults_or_says_why_not(label):
    suite = load_suite(label)
    outside = defaults_outside(suite)
    if suite.defaults_outside:
        # the reason must still be true: a suite whose ranges hold the defaults drops the field
        assert outside, f"{label} says defaults_outside but every default is well inside"
    else:
        assert outside == [], f"{label}: defaults not well inside their ranges: {outside}"


def toy_space_suite(lr_range: tuple[float, float], **extra) -> dict:
    return {
        "name": "ranges",
        "seeds": 1,
        "config": {
            "agent": "ppo",
            "population": 4,
            "space": {
                "lr": {"type": "float", "low": lr_range[0], "high": lr_range[1], "log": True}
            },
        },
        "tasks": [{"env": "CartPole-v1", "total_steps": 4000, "perturbation_interval": 1000}],
        "methods": [{"name": "pbt", "method": "pbt"}],
        **extra,
    }


@pytest.mark.parametrize(
    "lr_range, outside",
    [
        ((1e-5, 1e-3), [("CartPole-v1", "lr", "0.001 at unit 1.00")]),  # the default is the top
        ((1e-3, 1e-1), [("CartPole-v1", "lr", "0.001 at unit 0.00")]),  # ... the bottom
        ((1e-5, 2e-3), [("CartPole-v1", "lr", "0.001 at unit 0.87")]),  # inside, too near the top
        ((1e-6, 1e-4), [("CartPole-v1", "lr", "0.001 outside")]),
        ((1e-4, 1e-2), []),  # the log-midpoint
    ],
)
def test_the_check_fails_a_default_on_or_near_an_edge(lr_range, outside):
    assert defaults_outside(build_suite(toy_space_suite(lr_range))) == outside


def test_defaults_outside_is_a_reason_in_words_and_is_kept_with_the_suite():
    suite = build_suite(toy_space_suite((1e-5, 1e-3), defaults_outside="the paper's ranges"))
    assert suite.defaults_outside == "the paper's ranges"
    assert type(suite).from_dict(suite.to_dict()).defaults_outside == "the paper's ranges"
    for bad in ("", 1, True):
        with pytest.raises(ConfigError, match="defaults_outside = .*give the reason"):
            build_suite(toy_space_suite((1e-5, 1e-3), defaults_outside=bad))


def test_the_old_suites_committed_results_still_count_as_done():
    # the field is the suite's, not a cell's: no recorded cell's config changed with it
    for name, cells in (("long-ppo", 480), ("long-impala", 240), ("long-brax", 70)):
        suite = load_suite(name)
        assert suite.defaults_outside.startswith("old protocol, issue 14")
        res = ResultsFolder(RESULTS / name, suite)
        done = [c for c in suite.cells() if res.matching(c) is not None]
        assert len(done) == len(suite.cells()) == cells, name


def test_tuning_dev_runs_long_ppos_tasks_on_development_seeds_with_every_row():
    from gpbt.rl.agents import make_agent

    dev, long_ppo = load_suite("tuning-dev"), load_suite("long-ppo")
    assert dev.seeds == [100, 101, 102, 103, 104] and not set(dev.seeds) & set(long_ppo.seeds)
    assert not dev.defaults_outside
    assert dev.method_names() == ["default", "random", "pbt", "pbt-logsym", "pb2", "gpbt-pl",
                                  "pbt-anchored", "mf-pbt", "pbt-patient"]  # fmt: skip
    budget = ("env", "total_steps", "perturbation_interval", "population", "agent")
    old = {c.task: {k: c.config[k] for k in budget} for c in long_ppo.cells()}
    cells = dev.cells()
    assert {c.task: {k: c.config[k] for k in budget} for c in cells} == old
    for c in cells:
        if c.method == "pbt-logsym":
            assert c.config["pbt"] == {"perturbation_factors": [1.25, 0.8], "resample": "local"}
        if c.method == "pbt-anchored":
            # member 0 at the defaults of this task's action kind, every searched name given
            defaults = make_agent("ppo", c.config["env"]).default_hyperparameters()
            (point,) = c.config["start_points"]
            assert point == {k: pytest.approx(defaults[k]) for k in c.config["space"]}
    impala = load_suite("tuning-dev-impala")
    assert impala.seeds == dev.seeds and not impala.defaults_outside
    assert impala.method_names() == dev.method_names()


# issue 25's confirmation suites: {suite: (the development suite whose space and rows it
# takes, the long suite whose budget it takes)}
CONFIRM = {
    "confirm-ppo": ("tuning-dev", "long-ppo"),
    "confirm-impala": ("tuning-dev-impala", "long-impala"),
    "confirm-brax": ("tuning-dev", "long-brax"),
    "confirm-holdout-ppo": ("tuning-dev", "long-ppo"),
    "confirm-holdout-impala": ("tuning-dev-impala", "long-impala"),
}
CANDIDATES = ["pbt-logsym", "pbt-anchored", "mf-pbt", "pbt-patient"]  # rule 1's


@pytest.mark.parametrize("name", CONFIRM)
def test_the_confirmation_suites_run_the_dev_rows_at_the_long_budgets_on_seeds_0_to_9(name):
    suite = load_suite(name)
    dev, long = (load_suite(n) for n in CONFIRM[name])
    assert suite.seeds == list(range(10)) and suite.score == "final_test"
    assert not suite.defaults_outside and suite.raw["config"] == dev.raw["config"]
    # every row as the development suite defines it (start points below, per task)
    dev_rows = {m["name"]: m for m in dev.methods}
    held_out = name.startswith("confirm-holdout")
    wanted = ["default", "pbt", *CANDIDATES] if held_out else list(dev_rows)
    assert sorted(suite.method_names()) == sorted(wanted)
    for m in suite.methods:
        assert {k: v for k, v in m.items() if k != "start_points"} == {
            k: v for k, v in dev_rows[m["name"]].items() if k != "start_points"
        }
    # the long suite's budget and interval: its own tasks, or Freeway at its MinAtar budget
    budget = ("total_steps", "perturbation_interval", "agent")
    long_budget = {c.task: {k: c.config[k] for k in (*budget, "env", "population")}
                   for c in long.cells() if c.seed == 0}  # fmt: skip
    cells = suite.cells()
    if held_out:
        (minatar,) = {json.dumps({k: long_budget[t][k] for k in budget})
                      for t in long_budget if "MinAtar" in t}  # fmt: skip
        assert {c.task for c in cells} == {
            "Freeway-MinAtar@population=4", "Freeway-MinAtar@population=8"
        }  # fmt: skip
        assert {json.dumps({k: c.config[k] for k in budget}) for c in cells} == {minatar}
    else:
        assert {c.task: {k: c.config[k] for k in long_budget[c.task]} for c in cells} == (
            long_budget
        )
    for c in cells:
        assert c.config["space"] == dev.raw["config"]["space"]
        if c.method == "pbt-anchored":
            # member 0 at this task's agent defaults, every searched name given
            cfg = c.config
            defaults = agent_defaults(cfg["agent"], cfg["env"], json.dumps(cfg["agent_options"]))
            (point,) = cfg["start_points"]
            assert point == {k: pytest.approx(defaults[k]) for k in cfg["space"]}


def test_start_points_per_task_name_every_task_once():
    raw = toy_space_suite((1e-4, 1e-2))
    raw["tasks"].append({"env": "Acrobot-v1", "total_steps": 4000, "perturbation_interval": 1000})
    raw["methods"].append({"name": "anchored", "method": "pbt",
                           "start_points": {"CartPole-v1": [{"lr": 1e-3}],
                                            "Acrobot-v1": [{"lr": 5e-4}]}})  # fmt: skip
    points = {c.task: c.config["start_points"] for c in build_suite(raw).cells()
              if c.method == "anchored"}  # fmt: skip
    assert points == {"CartPole-v1": [{"lr": 1e-3}], "Acrobot-v1": [{"lr": 5e-4}]}
    del raw["methods"][1]["start_points"]["Acrobot-v1"]
    with pytest.raises(ConfigError, match="start_points has no entry for task 'Acrobot-v1'"):
        build_suite(raw)
    raw["methods"][1]["start_points"].update({"Acrobot-v1": [{"lr": 5e-4}], "Pong": [{}]})
    with pytest.raises(ConfigError, match="start_points names 'Pong', which is not a task"):
        build_suite(raw)
    raw["methods"][1]["start_points"] = {"CartPole-v1": [], "Acrobot-v1": [{"lr": 5e-4}]}
    with pytest.raises(ConfigError, match="or a table of such lists keyed by task name"):
        build_suite(raw)
