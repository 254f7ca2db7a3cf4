import pytest

from gpbt.config import ConfigError, load_config, validate_config

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
