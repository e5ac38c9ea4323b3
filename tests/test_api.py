"""The front door: `a3c_jax.train` runs whichever trainer a config needs (gymnax, A3C threads, a
Gymnasium host learner, Brax), in memory and into a run folder, and returns one result type that
`evaluate`, `make_act` and `load` take."""

import jax
import numpy as np
import pytest

import a3c_jax
from a3c_jax import envs
from a3c_jax.config import Config, ConfigError

TINY = {"num_envs": 4, "n_steps": 8, "hidden_sizes": (16,)}
CONFIGS = {
    "gymnax": ({"env_name": "CartPole-v1", "total_timesteps": 512, **TINY}, "jit"),
    "a3c": (
        {"env_name": "CartPole-v1", "algo": "a3c", "num_workers": 2, "total_timesteps": 400},
        "threads",
    ),
    "gymnasium": ({"env_name": "gymnasium:CartPole-v1", "total_timesteps": 256, **TINY}, "host"),
    "brax": (
        {
            "env_name": "brax:inverted_pendulum",
            "total_timesteps": 256,
            "episode_length": 50,
            **TINY,
        },
        "jit",
    ),
}


def _config(kind: str) -> Config:
    fields, trainer = CONFIGS[kind]
    if kind == "gymnasium":
        pytest.importorskip(
            "gymnasium", reason="the gymnasium extra: pip install -e '.[gymnasium]'"
        )
    if kind == "brax":
        pytest.importorskip("brax", reason="the brax extra: pip install -e '.[brax]'")
    config = Config(**fields)
    assert config.trainer == trainer  # the one decision, from the registry and the backend
    return config


def _observation(config: Config) -> np.ndarray:
    spec = envs.make_env(config.env_name, **config.env_options)
    return np.zeros(spec.obs_shape, np.float32)


def _check_policy(result) -> None:
    returns = np.asarray(a3c_jax.evaluate(result, key=jax.random.PRNGKey(1), num_episodes=2))
    assert returns.shape == (2,) and np.all(np.isfinite(returns))
    act = a3c_jax.make_act(result)
    action = np.asarray(act(_observation(result.config)))
    spec = envs.make_env(result.config.env_name, **result.config.env_options)
    if spec.discrete:
        assert action.shape == () and 0 <= int(action) < spec.num_actions
    else:
        assert action.shape == (spec.num_actions,) and np.all(np.isfinite(action))


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_train_in_memory_returns_one_result_type(kind):
    config = _config(kind)
    result = a3c_jax.train(config, jax.random.PRNGKey(3))
    assert isinstance(result, a3c_jax.Trained)
    assert result.config == config and result.num_seeds == 1 and result.run_dir is None
    assert result.status == "finished"
    losses = np.asarray(result.metrics["total_loss"])
    assert losses.size > 0 and np.all(np.isfinite(losses))
    _check_policy(result)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_train_into_a_run_folder_then_load(kind, tmp_path):
    config = _config(kind)
    run_dir = tmp_path / "run"
    result = a3c_jax.train(config, run_dir=run_dir, seed=5, log=lambda _: None)
    assert result.run_dir == run_dir and result.status == "finished"
    assert (run_dir / "metrics.csv").is_file() and result.metrics["update"].size > 0
    _check_policy(result)
    saved = a3c_jax.load(run_dir)
    assert saved.config == config
    _check_policy(saved)


def test_several_seeds_train_side_by_side_and_evaluate_per_seed(tmp_path):
    config = _config("gymnax")
    a3c_jax.train(config, num_seeds=2, run_dir=tmp_path / "run", log=lambda _: None)
    assert a3c_jax.evaluate(a3c_jax.load(tmp_path / "run"), num_episodes=3).shape == (2, 3)
    assert a3c_jax.evaluate(a3c_jax.load(tmp_path / "run", index=1), num_episodes=3).shape == (3,)
    result = a3c_jax.train(config, num_seeds=2)
    assert result.num_seeds == 2
    assert np.asarray(result.metrics["total_loss"]).shape[0] == 2
    returns = a3c_jax.evaluate(result, num_episodes=3)
    assert returns.shape == (2, 3)
    assert np.asarray(a3c_jax.make_act(result, seed=1)(_observation(config))).shape == ()


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("a3c", {"num_seeds": 2}, "num_seeds=2: seeds train side by side"),
        ("gymnax", {"num_seeds": 0}, "num_seeds=0 must be a positive integer"),
        ("gymnax", {"resume": True}, "resume: only apply with run_dir"),
        ("gymnax", {"chunk_updates": 3}, "chunk_updates: only apply with run_dir"),
        ("gymnax", {"chunk_update": 3}, "chunk_update: not an argument of a3c_jax.train"),
    ],
)
def test_arguments_that_do_not_apply_are_named_before_anything_compiles(kind, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        a3c_jax.train(_config(kind), **kwargs)


def test_a_run_folder_takes_a_seed_not_a_key(tmp_path):
    with pytest.raises(ConfigError, match="seed"):
        a3c_jax.train(_config("gymnax"), jax.random.PRNGKey(0), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
