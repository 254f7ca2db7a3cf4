import math
from pathlib import Path

import pytest

from gpbt.config import ConfigError, load_config, resume_config, validate_config

BASE = {
    "env": "CartPole-v1",
    "method": "gpbt-pl",
    "population": 4,
    "total_steps": 1000,
    "perturbation_interval": 100,
    "space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}},
}


def test_defaults_are_filled():
    cfg = validate_config(BASE)
    assert cfg["engine"] == "vector" and cfg["agent"] == "ppo" and cfg["mode"] == "max"
    assert cfg["metric"] == "episode_return" and cfg["checkpoint_interval"] == 100


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"populaton": 4}, "unknown key 'populaton' in the config for engine 'vector'"),
        ({"population": "8"}, "key 'population' = '8' has the wrong type; expected int"),
        ({"population": 0}, "key 'population' = 0 must be > 0"),
        ({"method": "hyperband"}, "method = 'hyperband' is not known"),
        ({"engine": "slurm"}, "engine = 'slurm' is not known"),
        (
            {"perturbation_interval": 5000},
            "perturbation_interval (5000) is larger than total_steps",
        ),
        (
            {"space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-5}}},
            "[space] parameter 'lr': low (0.001) must be below high",
        ),
        (
            {
                "method": "pb2",
                "space": {"o": {"type": "choice", "values": ["a", "b"], "ordered": False}},
            },
            "[pb2] parameter 'o': PB2 cannot model an unordered choice",
        ),
        ({"gpbt-pl": {"pairing": "tournament"}}, "[gpbt-pl] pairing='tournament' is not known"),
        (
            {"gpbt-pl": {"w_intertia": 1}},
            "method 'gpbt-pl' has no option 'w_intertia'; allowed options are ['anchor', "
            "'copy_margin',",
        ),
        ({"metric": "eval_return"}, "metric = 'eval_return' needs eval_episodes >= 1"),
        ({"mode": "maximum"}, "mode = 'maximum'"),
        # numbers must be finite and in range; a NaN passed every `<= 0` check
        ({"total_steps": math.nan}, "key 'total_steps' = nan must be a finite number"),
        ({"total_steps": math.inf}, "key 'total_steps' = inf must be a finite number"),
        ({"perturbation_interval": math.nan}, "key 'perturbation_interval' = nan must be a"),
        ({"burn_in_period": -1}, "key 'burn_in_period' = -1 must be >= 0"),
        ({"seed": -1}, "key 'seed' = -1 must be >= 0 (same seed => same initial population"),
        ({"checkpoint_interval": 0}, "key 'checkpoint_interval' = 0 must be > 0"),
        ({"final_eval_episodes": -4}, "key 'final_eval_episodes' = -4 must be >= 1"),
        ({"metric": ""}, "key 'metric' = '' must not be empty"),
        ({"env": " "}, "key 'env' = ' ' must not be empty"),
        ({"engine": [1]}, "key 'engine' = [1]: use one of ['vector', 'local', 'ray']"),
        # the search space's own types
        (
            {"space": {"lr": {"type": "choice", "values": 5}}},
            "[space] parameter 'lr': a choice needs a list of 'values', e.g. values = [16, 32], "
            "got 5",
        ),
        (
            {"space": {"lr": {"type": "choice", "values": "abc"}}},
            "a choice needs a list of 'values', e.g. values = [16, 32], got 'abc'",
        ),
        ({"space": {"lr": {"type": ["float"]}}}, "[space] parameter 'lr': unknown type ['float']"),
        (
            {"space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": "no"}}},
            "[space] parameter 'lr': 'log' must be true or false, got 'no'",
        ),
        (
            {"space": {"o": {"type": "choice", "values": [1, 2], "ordered": "no"}}},
            "parameter 'o': 'ordered' must be true or false, got 'no'",
        ),
        # method options of the wrong type are named before a constructor trips on them
        (
            {"method": "pbt", "pbt": {"quantile_fraction": "x"}},
            "[pbt] method 'pbt' option 'quantile_fraction' = 'x' must be a number",
        ),
        (
            {"method": "pbt", "pbt": {"synch": "yes"}},
            "method 'pbt' option 'synch' = 'yes' must be true or false",
        ),
        (
            {"method": "pbt", "pbt": {"perturbation_factors": [1.2, "a"]}},
            "option 'perturbation_factors' = [1.2, 'a'] must be a list of numbers",
        ),
        (
            {"method": "pb2", "pb2": {"data_window": 2.5}},
            "method 'pb2' option 'data_window' = 2.5 must be an integer",
        ),
        ({"gpbt-pl": {"w_inertia": None}}, "option 'w_inertia' = None must be a number"),
        # budgets: env steps are whole numbers, and a budget must leave room for a decision
        (
            {"total_steps": 40000.7, "perturbation_interval": 4000},
            "total_steps = 40000.7: the vector engine counts env steps, a whole number; use "
            "total_steps = 40000 or total_steps = 40001",
        ),
        (
            {"perturbation_interval": 0.5},
            "perturbation_interval = 0.5: the vector engine counts env steps, a whole number; "
            "use perturbation_interval = 1",
        ),
        (
            {"burn_in_period": 1000},
            "burn_in_period (1000) is not below total_steps (1000): no decision would ever be made",
        ),
        (
            {"burn_in_period": 950},
            "burn_in_period (950) is past the last decision, at 900 env steps (decisions come "
            "every perturbation_interval = 100 before total_steps = 1000)",
        ),
        (
            {"population": 1},
            "population = 1 with method 'gpbt-pl': it copies better members into worse ones, "
            "and one member has nobody to compare with; use population >= 2",
        ),
        ({"population": 1, "method": "pb2"}, "population = 1 with method 'pb2'"),
    ],
)
def test_config_errors_name_the_field(change, needle):
    with pytest.raises(ConfigError) as err:
        validate_config({**BASE, **change})
    assert needle in str(err.value)


def test_budgets_that_are_whole_or_leave_a_decision_are_accepted():
    cfg = validate_config({**BASE, "total_steps": 1000.0, "burn_in_period": 900})
    assert cfg["total_steps"] == 1000
    # one member is fine for a method that never copies (random search trains one config)
    assert validate_config({**BASE, "population": 1, "method": "random"})["population"] == 1


def test_missing_required_key():
    cfg = dict(BASE)
    del cfg["space"]
    with pytest.raises(ConfigError, match="missing required key 'space'"):
        validate_config(cfg)


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('env = "CartPole-v1"\npopulation = = 4\n')
    with pytest.raises(ConfigError, match="is not valid TOML: .*line 2"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder; pass the path of a TOML file"):
        load_config(tmp_path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"is not a text file \(not UTF-8\); pass a TOML file"):
        load_config(binary)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"step_timeout": -1}, "key 'step_timeout' = -1 must be >= 0"),
        ({"workers": -1}, "key 'workers' = -1 must be >= 0"),
        ({"max_failures": -1}, "key 'max_failures' = -1 must be >= 0"),
        ({"threads_per_worker": -3}, "key 'threads_per_worker' = -3 must be >= 0"),
        ({"trainable": ""}, "key 'trainable' = '' must not be empty"),
        ({"total_steps": math.nan}, "key 'total_steps' = nan must be a finite number"),
    ],
)
def test_local_engine_values_are_checked_before_it_starts(change, needle):
    local = {k: v for k, v in BASE.items() if k != "env"}
    local.update(engine="local", trainable="my_module:Toy", time_attr="steps", metric="score")
    with pytest.raises(ConfigError) as err:
        validate_config({**local, **change})
    assert needle in str(err.value)


# Every key an engine declares is documented, and the documented example configs validate, so
# documentation, validation and the engines cannot drift apart (a Ray `store_metrics` that the
# docs showed and `gpbt run` refused is how this test came about).
DOCS = {"vector": "README.md", "local": "docs/local-engine.md", "ray": "docs/ray.md"}


@pytest.mark.parametrize("engine", ["vector", "local", "ray"])
def test_documented_configs_validate_and_document_every_engine_key(engine):
    import re
    import tomllib
    from pathlib import Path

    from gpbt.engines import engine_named

    text = (Path(__file__).parents[1] / DOCS[engine]).read_text()
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "method =" in b]
    assert blocks, f"{DOCS[engine]} has no example config"
    # optional engine keys are shown commented out (`# num_cpus = 8`): they must validate too
    keys = engine_named(engine).options
    block = re.sub(
        r"^# (\w+) = ", lambda m: f"{m[1]} = " if m[1] in keys else m[0], blocks[0], flags=re.M
    )
    raw = tomllib.loads(block)
    raw.setdefault("engine", engine)
    spec = validate_config(raw)
    assert spec.engine == engine and spec.population == raw["population"]
    for key in keys:
        assert key in text, f"{DOCS[engine]} does not document {engine} key {key!r}"
        if key != "rllib":  # a table of its own below the example's [space]
            assert key in raw, f"the example config in {DOCS[engine]} does not show {key!r}"


def test_a_spec_is_validated_once_and_builds_its_scheduler():
    spec = load_config(Path(__file__).parents[1] / "examples" / "quickstart.toml", ["seed=3"])
    assert validate_config(spec) is spec  # already a RunSpec: nothing to do again
    a, b = spec.scheduler(), spec.scheduler()
    assert a.initial_population(4) == b.initial_population(4)  # same seed, same population
    assert spec.scheduler(max_time=100).max_time == 100
    with pytest.raises(TypeError):
        spec["seed"] = 4  # frozen
    assert spec.replace(seed=4).seed == 4 and spec.seed == 3
    with pytest.raises(ConfigError, match="engine = 'gpu' is not known"):
        validate_config({**spec.to_dict(), "engine": "gpu"})


def test_a_resume_may_change_how_a_local_run_runs_and_nothing_else():
    base = {k: v for k, v in BASE.items() if k != "env"}
    local = validate_config(
        {**base, "engine": "local", "trainable": "my_module:Toy", "time_attr": "steps",
         "metric": "score", "step_timeout": 60, "workers": 2}
    ).to_dict()  # fmt: skip
    spec = resume_config(local, ["step_timeout=1200", "workers=1", "max_failures=5"])
    assert (spec["step_timeout"], spec["workers"], spec["max_failures"]) == (1200, 1, 5)
    assert resume_config(local)["step_timeout"] == 60  # no override: the stored config
    with pytest.raises(ConfigError) as err:
        resume_config(local, ["population=8"])
    assert str(err.value) == (
        "resume override 'population=8': 'population' cannot change when a run is resumed "
        "(only workers, step_timeout, max_failures, threads_per_worker may change on resume); "
        "to train with other settings, start a new run with `gpbt run CONFIG`"
    )
    with pytest.raises(ConfigError, match="a vector-engine run resumes with its stored config"):
        resume_config(validate_config(BASE).to_dict(), ["workers=2"])
    with pytest.raises(ConfigError, match="step_timeout"):  # still validated: a bad value
        resume_config(local, ["step_timeout=soon"])
