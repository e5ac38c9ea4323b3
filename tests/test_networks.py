"""Networks: shapes for every torso and head, initialisation and parameter layout."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a3c_jax import Config, envs
from a3c_jax.algorithms.networks import make_networks, orthogonal_kernels
from a3c_jax.core.distributions import Categorical, DiagGaussian, StateDependentGaussian


@pytest.mark.parametrize(
    "env_name,shared,expected_dist",
    [
        ("CartPole-v1", False, Categorical),
        ("CartPole-v1", True, Categorical),
        ("Pendulum-v1", False, StateDependentGaussian),  # its preset uses gSDE
        ("MountainCarContinuous-v0", False, DiagGaussian),
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


def test_atari_frames_take_the_nature_cnn(key):
    """84x84x4 frames: "auto" picks the strided Nature CNN (not the 3x3 CNN, which would hold
    14M parameters), its kernels start orthogonal, and it runs batched and unbatched."""
    from a3c_jax.config import torso_kind

    assert torso_kind("auto", (84, 84, 4)) == "nature_cnn"
    assert torso_kind("auto", (10, 10, 4)) == "cnn" and torso_kind("auto", (4,)) == "mlp"
    spec = dataclasses.replace(envs.make_env("CartPole-v1"), obs_shape=(84, 84, 4))
    networks = make_networks(Config(torso="auto", hidden_sizes=(512,)), spec)
    params = networks.init(key)
    torso = params["params"]["actor_torso"]
    assert torso["Conv_0"]["kernel"].shape == (8, 8, 4, 32)
    assert torso["Conv_2"]["kernel"].shape == (3, 3, 64, 64)
    assert torso["MLPTorso_0"]["Dense_0"]["kernel"].shape == (7 * 7 * 64, 512)
    count = sum(x.size for x in jax.tree.leaves(params))
    assert 3e6 < count < 4e6  # two torsos of 1.7M (actor and critic), not 2 x 14M
    kernel = np.asarray(torso["Conv_0"]["kernel"]).reshape(-1, 32)
    np.testing.assert_allclose(kernel.T @ kernel, 2.0 * np.eye(32), atol=1e-4)  # gain sqrt(2)
    frames = jax.random.uniform(key, (3, 84, 84, 4))  # scaled frames, as Atari's
    dist, value = networks.apply(params, frames)
    assert value.shape == (3,) and dist.logits.shape == (3, 2)
    one_dist, one_value = networks.apply(params, frames[0])
    np.testing.assert_allclose(one_value, value[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one_dist.logits, dist.logits[0], rtol=1e-5, atol=1e-6)
    assert float(jnp.std(value)) > 0  # the frames reach the value


def test_patch_convolution_equals_flax_conv(key):
    import flax.linen as nn

    from a3c_jax.algorithms.networks import patches_3x3

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


@pytest.mark.parametrize("shared", [False, True])
def test_critic_loss_reaches_the_actor_torso_only_when_shared(shared, key):
    """Separate networks (the default): the critic's loss has no gradient in the actor's torso
    or head, and the actor's loss none in the critic's. A shared torso gets both."""
    from a3c_jax.core import losses

    spec = envs.make_env("CartPole-v1")
    nets = make_networks(Config(shared_torso=shared), spec)
    params = nets.init(key)
    obs = jax.random.normal(key, (6, 4))
    actions = jnp.arange(6) % 2

    def critic(p):
        return losses.value_loss(nets.value(p, obs), jnp.full(6, 10.0))[0]

    def actor(p):
        return losses.policy_gradient_loss(nets.policy(p, obs).log_prob(actions), obs[:, 0])[0]

    def norms(grads):
        return {name: float(optax_norm(tree)) for name, tree in grads["params"].items()}

    critic_grads, actor_grads = norms(jax.grad(critic)(params)), norms(jax.grad(actor)(params))
    assert critic_grads["critic_head"] > 0 and actor_grads["actor_head"] > 0
    assert critic_grads["actor_head"] == 0 and actor_grads["critic_head"] == 0
    if shared:
        assert set(critic_grads) == {"torso", "actor_head", "critic_head"}
        assert critic_grads["torso"] > 0 and actor_grads["torso"] > 0
    else:
        assert critic_grads["actor_torso"] == 0 and actor_grads["critic_torso"] == 0
        assert critic_grads["critic_torso"] > 0 and actor_grads["actor_torso"] > 0


def optax_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


class NetworksVariantsTest(chex.TestCase):
    """The networks' pure functions give the same values under jit and without."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_apply_value_and_policy_agree(self):
        for env_name in ("CartPole-v1", "Pendulum-v1", "Breakout-MinAtar"):
            spec = envs.make_env(env_name)
            nets = make_networks(Config(env_name=env_name), spec)
            params = nets.init(jax.random.PRNGKey(0))
            obs = jax.random.uniform(jax.random.PRNGKey(1), (3, *spec.obs_shape))
            pi, v = self.variant(nets.apply)(params, obs)
            chex.assert_shape(v, (3,))
            np.testing.assert_allclose(v, nets.value(params, obs), rtol=1e-5, atol=1e-6)
            chex.assert_trees_all_close(pi, nets.policy(params, obs), rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_orthogonal_kernels(self):
        kernels = self.variant(orthogonal_kernels, static_argnums=(1, 2))(
            jax.random.PRNGKey(3), ((4, 8), (8, 3)), (1.0, 2.0)
        )
        np.testing.assert_allclose(kernels[0] @ kernels[0].T, np.eye(4), atol=1e-5)
        np.testing.assert_allclose(kernels[1].T @ kernels[1], 4.0 * np.eye(3), atol=1e-4)
