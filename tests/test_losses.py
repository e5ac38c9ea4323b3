"""Losses: values, masking and the direction of their gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from a3c_jax import losses
from a3c_jax.distributions import Categorical, DiagGaussian


class LossesTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_values_and_metrics(self):
        log_p = jnp.log(jnp.array([[0.5, 0.25], [0.125, 1.0]]))
        adv = jnp.array([[1.0, -2.0], [0.5, 0.0]])
        values = jnp.array([[1.0, 2.0], [3.0, 4.0]])
        targets = jnp.array([[2.0, 2.0], [1.0, 4.0]])
        entropy = jnp.array([[0.1, 0.2], [0.3, 0.4]])
        total, m = self.variant(losses.actor_critic_loss, static_argnums=(5, 6))(
            log_p, entropy, values, adv, targets, 0.5, 0.01
        )
        chex.assert_shape(total, ())
        actor = -np.mean(np.log([[0.5, 0.25], [0.125, 1.0]]) * np.array([[1, -2], [0.5, 0]]))
        critic = 0.5 * np.mean(np.square([[1.0, 0.0], [-2.0, 0.0]]))
        np.testing.assert_allclose(m["actor_loss"], actor, rtol=1e-6)
        np.testing.assert_allclose(m["critic_loss"], critic, rtol=1e-6)
        np.testing.assert_allclose(m["entropy"], 0.25, rtol=1e-6)
        np.testing.assert_allclose(total, actor + 0.5 * critic - 0.01 * 0.25, rtol=1e-6)

    def test_mask_ignores_padding(self):
        x = jnp.array([1.0, 2.0, 100.0])
        mask = jnp.array([1.0, 1.0, 0.0])
        loss, _ = losses.value_loss(x, jnp.zeros(3), mask)
        np.testing.assert_allclose(loss, 0.5 * (1.0 + 4.0) / 2)
        grad = jax.grad(lambda v: losses.value_loss(v, jnp.zeros(3), mask)[0])(x)
        assert grad[2] == 0.0

    def test_actor_gradient_raises_log_prob_of_advantaged_action(self):
        logits = jnp.zeros((1, 3))

        def loss(logits, adv):
            pi = Categorical(logits)
            return losses.policy_gradient_loss(pi.log_prob(jnp.array([1])), adv)[0]

        for adv, sign in ((jnp.array([2.0]), 1.0), (jnp.array([-2.0]), -1.0)):
            new_logits = logits - 0.1 * jax.grad(loss)(logits, adv)
            before = Categorical(logits).log_prob(jnp.array([1]))
            after = Categorical(new_logits).log_prob(jnp.array([1]))
            assert sign * (after - before)[0] > 0

    def test_actor_gradient_does_not_flow_into_advantage(self):
        g = jax.grad(lambda a: losses.policy_gradient_loss(jnp.array([-1.0]), a)[0])(
            jnp.array([3.0])
        )
        assert g[0] == 0.0

    def test_critic_gradient_moves_value_towards_target(self):
        v = jnp.array([0.0])
        g = jax.grad(lambda v: losses.value_loss(v, jnp.array([5.0]))[0])(v)
        np.testing.assert_allclose(g, [-5.0])

    def test_normalize(self):
        x = jnp.array([1.0, 2.0, 3.0, 4.0])
        y = losses.normalize(x)
        np.testing.assert_allclose(jnp.mean(y), 0.0, atol=1e-6)
        np.testing.assert_allclose(jnp.std(y), 1.0, rtol=1e-5)


class DistributionsTest(chex.TestCase):
    def test_categorical(self):
        pi = Categorical(jnp.log(jnp.array([[0.2, 0.8], [0.5, 0.5]])))
        np.testing.assert_allclose(pi.log_prob(jnp.array([1, 0])), np.log([0.8, 0.5]), rtol=1e-6)
        np.testing.assert_allclose(
            pi.entropy(), [-(0.2 * np.log(0.2) + 0.8 * np.log(0.8)), np.log(2)], rtol=1e-6
        )
        np.testing.assert_array_equal(pi.mode(), [1, 0])
        chex.assert_shape(pi.sample(jax.random.PRNGKey(0)), (2,))

    def test_gaussian_matches_closed_form(self):
        mean = jnp.array([[0.0, 1.0]])
        log_std = jnp.log(jnp.array([[1.0, 2.0]]))
        pi = DiagGaussian(mean, log_std)
        a = jnp.array([[0.5, -1.0]])
        expected = sum(
            -0.5 * ((x - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
            for x, m, s in ((0.5, 0.0, 1.0), (-1.0, 1.0, 2.0))
        )
        np.testing.assert_allclose(pi.log_prob(a), [expected], rtol=1e-5)
        np.testing.assert_allclose(
            pi.entropy(), [np.log(1.0) + np.log(2.0) + 1 + np.log(2 * np.pi)], rtol=1e-5
        )
        chex.assert_shape(pi.sample(jax.random.PRNGKey(0)), (1, 2))
