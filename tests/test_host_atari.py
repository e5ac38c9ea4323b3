"""Atari through ale-py on the host: a smoke run of A3C on Pong (the preprocessing's shapes, the
CNN torso, finite losses)."""

import importlib.util

import chex
import numpy as np
import pytest

if importlib.util.find_spec("gymnasium") is None or importlib.util.find_spec("ale_py") is None:
    pytest.skip(
        'Atari needs Gymnasium and ale-py (pip install "a3c_jax[atari]")', allow_module_level=True
    )

import a3c_jax
from a3c_jax import Config, envs

PONG = "gymnasium:ALE/Pong-v5"


def test_pong_smoke(key):
    spec = envs.make_env(PONG)
    # AtariPreprocessing (84x84 grey, scaled) and 4 stacked frames, channels-last.
    assert spec.obs_shape == (84, 84, 4)
    assert spec.discrete and spec.num_actions == 6
    # A few hundred frames' worth of agent steps with 2 workers, through the Nature CNN torso
    # ("auto" for 84x84 frames) with a small dense layer.
    config = Config(
        env_name=PONG,
        algo="a3c",
        num_workers=2,
        num_envs=1,
        n_steps=20,
        total_timesteps=2 * 20 * 8,
        hidden_sizes=(32,),
    )
    result = a3c_jax.train_async(config, key)
    assert result.num_updates == 16
    assert int(result.train_state.env_steps) == 320
    params = result.params["params"]
    assert params["actor_torso"]["Conv_0"]["kernel"].shape == (8, 8, 4, 32)  # over 4 frames
    chex.assert_tree_all_finite(result.params)
    for name in ("total_loss", "actor_loss", "critic_loss", "entropy", "grad_norm"):
        assert np.all(np.isfinite(getattr(result.metrics, name))), name
    # Pong's reward is 0 until a point is scored; the critic's loss is finite and small then.
    assert np.all(result.metrics.entropy > 0)
    act = a3c_jax.make_act(config, result.params)
    assert act(np.zeros((3, 84, 84, 4), np.float32)).shape == (3,)
