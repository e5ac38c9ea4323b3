"""Atari through ale-py on the host: a smoke run of A3C on Pong (the preprocessing's shapes, the
CNN torso, finite losses)."""

import importlib.util

import chex
import jax
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
    # ("auto" for 84x84 frames, over the Atari preset's paper network) with a small dense layer.
    config = Config(
        env_name=PONG,
        algo="a3c",
        num_workers=2,
        num_envs=1,
        n_steps=20,
        total_timesteps=2 * 20 * 8,
        hidden_sizes=(32,),
        torso="auto",
        shared_torso=False,
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


def test_the_atari_preset_is_the_a3c_papers_network_and_settings(key):
    """Mnih et al. 2016: one torso of 16 8x8/4 and 32 4x4/2 convolutions and 256 ReLU units
    shared by the policy and the value heads, shared RMSprop (decay 0.99), t_max 5, entropy
    0.01, gamma 0.99; a short run trains with finite losses and its policy acts in the real
    environment through `make_act`."""
    config = Config(env_name=PONG, algo="a3c", num_workers=2, total_timesteps=2 * 5 * 4)
    assert (config.torso, config.hidden_sizes, config.activation) == ("a3c_cnn", (256,), "relu")
    assert config.shared_torso and config.optimizer == "rmsprop" and config.rmsprop_decay == 0.99
    assert (config.n_steps, config.num_envs, config.ent_coef, config.gamma) == (5, 1, 0.01, 0.99)
    assert Config(env_name=PONG, algo="a2c").num_envs == 16  # the synchronous form: 16 emulators
    trained = a3c_jax.train(config, key)
    params = trained.params["params"]
    assert sorted(params) == ["actor_head", "critic_head", "torso"]  # one torso, two heads
    torso = params["torso"]
    assert torso["Conv_0"]["kernel"].shape == (8, 8, 4, 16)
    assert torso["Conv_1"]["kernel"].shape == (4, 4, 16, 32)
    assert sum(x.size for x in jax.tree.leaves(torso)) == 676_144  # 4,112 + 8,224 + 663,808
    for name in ("total_loss", "actor_loss", "critic_loss", "entropy", "grad_norm"):
        assert np.all(np.isfinite(trained.metrics[name])), name
    env = envs.make_env(PONG).env()  # Pong with its preprocessing: 84x84 grey, 4 frames stacked
    obs, _ = env.reset(seed=0)
    act = a3c_jax.make_act(trained)
    for _ in range(3):
        obs, _, terminated, truncated, _ = env.step(int(act(obs)))
        assert not (terminated or truncated)
    env.close()
