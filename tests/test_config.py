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
    ],
)
def test_config_errors_name_the_field(change, needle):
    with pytest.raises(ConfigError) as err:
        validate_config({**BASE, **change})
    assert needle in str(err.value)


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


# Every key an engine declares is documented, and the documented example configs validate, so
# documentation, validation and the engines cannot drift apart (a Ray `store_metrics` that the
# docs showed and `gpbt run` refused is how this test came about).
DOCS = {"vector": "README.md", "local": "docs/local-engine.md", "ray": "docs/ray.md"}


@pytest.mark.parametrize("engine", ["vector", "local", "ray"])
def test_documented_configs_validate_and_document_every_engine_key(engine):
    import re
    import tomllib
    from pathlib import Path

    from gpbt.spec import engine_options

    text = (Path(__file__).parents[1] / DOCS[engine]).read_text()
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "method =" in b]
    assert blocks, f"{DOCS[engine]} has no example config"
    # optional engine keys are shown commented out (`# num_cpus = 8`): they must validate too
    keys = engine_options(engine)
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
