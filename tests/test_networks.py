"""Networks: shapes for every torso and head, initialisation and parameter layout."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a3c_jax import Config, envs
from a3c_jax.distributions import Categorical, DiagGaussian
from a3c_jax.networks import make_networks, orthogonal_kernels


@pytest.mark.parametrize(
    "env_name,shared,expected_dist",
    [
        ("CartPole-v1", False, Categorical),
        ("CartPole-v1", True, Categorical),
        ("Pendulum-v1", False, DiagGaussian),
        ("Breakout-MinAtar", False, Categorical),
        ("Breakout-MinAtar", True, Categorical),
    ],
)
def test_shapes(env_name, shared, expected_dist, key):
    config = Config(env_name=env_name, shared_torso=shared)
    spec = envs.make_env(env_name)
    nets = make_networks(config, spec)
    params = nets.init(key)
    obs = jnp.zeros((3, 5, *spec.obs_shape))
    pi, v = nets.apply(params, obs)
    assert isinstance(pi, expected_dist)
    chex.assert_shape(v, (3, 5))
    chex.assert_shape(nets.value(params, obs), (3, 5))
    chex.assert_shape(pi.log_prob(pi.sample(key)), (3, 5))
    chex.assert_shape(pi.sample(key), (3, 5, *spec.action_shape))
    # Unbatched observations work too (for make_act in a plain loop).
    chex.assert_shape(nets.value(params, jnp.zeros(spec.obs_shape)), ())


def test_separate_actor_and_critic_by_default(key):
    nets = make_networks(Config(), envs.make_env("CartPole-v1"))
    names = set(nets.init(key)["params"])
    assert {"actor_torso", "critic_torso", "actor_head", "critic_head"} <= names
    shared = make_networks(Config(shared_torso=True), envs.make_env("CartPole-v1"))
    assert "torso" in shared.init(key)["params"]


def test_cnn_used_for_images(key):
    params = make_networks(
        Config(env_name="Breakout-MinAtar"), envs.make_env("Breakout-MinAtar")
    ).init(key)
    torso = params["params"]["actor_torso"]
    assert torso["Dense_0"]["kernel"].shape == (9 * 4, 16)  # the 3x3 convolution's kernel


def test_patch_convolution_equals_flax_conv(key):
    import flax.linen as nn

    from a3c_jax.networks import patches_3x3

    x = jax.random.normal(key, (2, 10, 10, 4))
    conv = nn.Conv(16, (3, 3), padding="VALID")
    conv_params = conv.init(key, x)
    kernel = conv_params["params"]["kernel"]  # [3, 3, 4, 16]
    expected = conv.apply(conv_params, x)
    bias = conv_params["params"]["bias"][None, None, None]
    got = patches_3x3(x) @ kernel.reshape(9 * 4, 16) + bias
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_orthogonal_init_and_small_policy_head(key):
    params = make_networks(Config(), envs.make_env("CartPole-v1")).init(key)["params"]
    w = np.asarray(params["actor_torso"]["Dense_1"]["kernel"])  # 64 x 64 hidden layer
    np.testing.assert_allclose(w.T @ w, 2.0 * np.eye(64), atol=1e-4)
    head = np.asarray(params["actor_head"]["kernel"])
    assert np.abs(head).max() < 0.05
    # Initial policy is close to uniform.
    pi = make_networks(Config(), envs.make_env("CartPole-v1")).policy(
        {"params": params}, jax.random.normal(key, (10, 4))
    )
    np.testing.assert_allclose(pi.entropy(), np.log(2), atol=1e-3)


def test_orthogonal_kernels_of_mixed_shapes_in_one_draw(key):
    """One batched draw gives every kernel its own orthogonal matrix at its gain: columns
    orthonormal for tall kernels, rows for wide ones, whatever the other kernels' shapes."""
    shapes = [(4, 64), (64, 64), (64, 64), (64, 2), (3, 3, 4, 16), (1024, 64), (64, 1)]
    gains = [1.0, 2.0, 2.0, 0.5, 1.0, 3.0, 1.0]
    kernels = orthogonal_kernels(key, shapes, gains)
    for shape, gain, kernel in zip(shapes, gains, kernels, strict=True):
        chex.assert_shape(kernel, shape)
        w = np.asarray(kernel).reshape(-1, shape[-1]) / gain
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        np.testing.assert_allclose(gram, np.eye(min(w.shape)), atol=2e-5)
    # Distinct draws per kernel, and per key.
    assert not np.allclose(kernels[1], kernels[2], atol=0.1)
    np.testing.assert_raises(
        AssertionError,
        np.testing.assert_allclose,
        kernels[1],
        orthogonal_kernels(jax.random.PRNGKey(7), shapes, gains)[1],
    )
