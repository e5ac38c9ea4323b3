"""Config: defaults resolved from presets, and clear errors for bad input."""

import dataclasses
import math

import pytest

from a3c_jax import Config, ConfigError
from a3c_jax.config import presets


def test_every_field_resolved():
    config = Config()
    for field in dataclasses.fields(config):
        if field.name != "recurrent":  # None is its value: a feed-forward policy
            assert getattr(config, field.name) is not None, field.name
    assert config.recurrent is None and config.recurrent_size == 128
    assert config.batch_size == config.num_envs * config.n_steps
    assert config.num_updates == config.total_timesteps // config.batch_size


def test_frozen_and_hashable():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]
    assert hash(config) == hash(Config())


def test_explicit_beats_preset_beats_algorithm_default():
    da2c_defaults = presets.ALGORITHM_DEFAULTS["nstep_da2c"]
    assert Config(algo="nstep_da2c").ent_coef == da2c_defaults["ent_coef"]
    assert Config(algo="nstep_da2c", ent_coef=0.1).ent_coef == 0.1
    pendulum = presets.ENV_PRESETS[("Pendulum-v1", "a2c")]
    assert Config(env_name="Pendulum-v1").lr == pendulum["lr"]
    assert Config(env_name="Pendulum-v1", lr=0.5).lr == 0.5


def test_replace_revalidates():
    with pytest.raises(ConfigError, match="gamma"):
        Config().replace(gamma=2.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"env_name": "CartPole-v2"}, "did you mean 'CartPole-v1'"),
        ({"env_name": "nope"}, "not a registered gymnax environment"),
        ({"algo": "ppo"}, "algo='ppo'"),
        ({"num_envs": 0}, "num_envs=0 must be a positive integer"),
        ({"num_envs": 2.5}, "num_envs"),
        ({"n_steps": -1}, "n_steps"),
        ({"gamma": 1.5}, r"gamma=1.5 must lie in \[0.0, 1.0\]"),
        ({"gae_lambda": -0.1}, "gae_lambda"),
        ({"lr": 0.0}, "lr=0.0"),
        ({"optimizer": "sgd"}, "optimizer='sgd' must be one of"),
        ({"activation": "gelu"}, "activation"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"ent_coef": -1.0}, "ent_coef"),
        ({"hidden_sizes": ()}, "hidden_sizes"),
        ({"total_timesteps": 10, "num_envs": 4, "n_steps": 5}, "smaller than one rollout"),
        ({"torso": "cnn"}, "torso='cnn' needs image observations"),
        ({"torso": "nature_cnn"}, "torso='nature_cnn' needs image observations"),
        (
            {"env_name": "Breakout-MinAtar", "torso": "nature_cnn"},
            r"at least 36x36; Breakout-MinAtar observes shape \(10, 10, 4\): use torso='mlp' or",
        ),
        ({"anneal_lr": "yes"}, "anneal_lr"),
        ({"cnn_channels": 0}, "cnn_channels=0 must be a positive integer"),
        ({"replay_capacity": -5}, "replay_capacity=-5 must be a positive integer"),
        ({"replay_batch_size": 0}, "replay_batch_size=0 must be a positive integer"),
        ({"algo": "da2c", "num_envs": 8, "total_timesteps": 7}, "smaller than one step in each"),
        ({"algo": "ac_replay", "num_envs": 4, "total_timesteps": 3}, "num_envs=4 environments"),
        # Brax's settings on a gymnax environment (checked without importing Brax).
        ({"episode_length": 200}, r"episode_length=200: only applies to Brax environments"),
        ({"action_repeat": 2}, r"action_repeat=2: only applies to Brax"),
        ({"brax_backend": "nope"}, r"brax_backend='nope' must be one of"),
        # gSDE (use_sde): its noise schedule and what it does not combine with.
        ({"env_name": "Pendulum-v1", "use_sde": "yes"}, "use_sde='yes' must be True or False"),
        (
            {"env_name": "Pendulum-v1", "use_sde": True, "sde_sample_freq": 0},
            r"sde_sample_freq=0 must be a positive integer .* or -1",
        ),
        (
            {"env_name": "MountainCarContinuous-v0", "sde_sample_freq": 4},
            "sde_sample_freq=4 .* use_sde=False",
        ),
        (
            {"env_name": "Pendulum-v1", "use_sde": True, "action_bounding": "tanh"},
            "use_sde=True with action_bounding='tanh'",
        ),
        (
            {"env_name": "Pendulum-v1", "use_sde": True, "state_dependent_std": True},
            "use_sde=True with state_dependent_std=True",
        ),
        ({"env_name": "Pendulum-v1", "action_bound_coef": -1.0}, "action_bound_coef=-1.0"),
        (
            {"env_name": "Pendulum-v1", "action_bound_coef": 0.1, "action_bounding": "tanh"},
            "action_bound_coef=0.1 with action_bounding='tanh'",
        ),
        (
            {"env_name": "gymnasium:Pendulum-v1", "use_sde": True},
            "use_sde=True: gSDE runs on gymnax and Brax environments",
        ),
    ],
)
def test_bad_values_raise_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Config(**kwargs)


def test_gradient_clipping_can_be_disabled():
    assert math.isinf(Config(max_grad_norm=math.inf).max_grad_norm)


def test_every_algorithm_has_defaults_and_an_update():
    import a3c_jax
    from a3c_jax.algorithms import ALGORITHM_BUILDERS

    # Asynchronous algorithms have no pure update: train_async orchestrates the shared parts.
    asynchronous = set(presets.ASYNCHRONOUS_ALGORITHMS)
    assert not asynchronous & set(ALGORITHM_BUILDERS)
    assert set(presets.ALGORITHM_DEFAULTS) == set(ALGORITHM_BUILDERS) | asynchronous
    assert set(a3c_jax.ALGORITHMS) == set(presets.ALGORITHM_DEFAULTS)


def test_the_smallest_budgets_are_accepted():
    """The controls of the budget errors above: one rollout, one step per environment."""
    assert Config(num_envs=4, n_steps=5, total_timesteps=20).num_updates == 1
    assert Config(algo="da2c", num_envs=8, total_timesteps=8).total_timesteps == 8


def test_presets_exploration_yields_to_a_given_bounding():
    # Pendulum-v1's preset uses gSDE and the bound loss; a squashed or state-dependent
    # Gaussian given by the caller replaces them, while giving both is an error.
    preset = Config(env_name="Pendulum-v1")
    assert preset.use_sde and preset.action_bound_coef > 0
    tanh = Config(env_name="Pendulum-v1", action_bounding="tanh")
    assert not tanh.use_sde and tanh.action_bound_coef == 0.0
    own_std = Config(env_name="Pendulum-v1", state_dependent_std=True)
    assert not own_std.use_sde and own_std.action_bound_coef == preset.action_bound_coef
    with pytest.raises(ConfigError, match="use_sde=True with action_bounding='tanh'"):
        Config(env_name="Pendulum-v1", action_bounding="tanh", use_sde=True)
