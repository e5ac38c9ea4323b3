"""The command line: overrides parsed by field type, bad input rejected with exit code 2."""

import pytest

from a3c_jax import ConfigError
from a3c_jax.cli.args import parse_overrides
from a3c_jax.cli.main import main


def test_parse_overrides_typed():
    got = parse_overrides(
        ["lr=7e-4", "num_envs=32", "anneal_lr=false", "hidden_sizes=32,32", "optimizer=rmsprop"]
    )
    assert got == {
        "lr": 7e-4,
        "num_envs": 32,
        "anneal_lr": False,
        "hidden_sizes": (32, 32),
        "optimizer": "rmsprop",
    }


@pytest.mark.parametrize(
    "item,match",
    [
        ("nope=1", "is not a Config field"),
        ("num_envs=abc", "num_envs='abc': not a valid int"),
        ("anneal_lr=maybe", "anneal_lr"),
        ("lr", "FIELD=VALUE"),
    ],
)
def test_parse_overrides_errors(item, match):
    with pytest.raises(ConfigError, match=match):
        parse_overrides([item])


def test_bad_input_exits_2_before_training(capsys):
    assert main(["train", "--env", "CartPol-v1"]) == 2
    assert "did you mean 'CartPole-v1'" in capsys.readouterr().err
    assert main(["train", "--set", "gamma=3"]) == 2
    assert "gamma=3.0 must lie in" in capsys.readouterr().err


def test_train_a3c_end_to_end(capsys, tmp_path):
    code = main(
        [
            "train",
            "--no-cache",
            "--out",
            str(tmp_path / "run"),
            "--algo",
            "a3c",
            "--episodes",
            "2",
            "--set",  # test_asynchronous's MANY: one compile for both files
            "num_workers=3",
            "num_envs=2",
            "n_steps=4",
            "total_timesteps=2400",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "with 3 workers" in out and "staleness mean" in out
    assert "greedy evaluation over 2 episodes" in out
