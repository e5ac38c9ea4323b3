"""Losses: values, masking and the direction of their gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from a3c_jax.core import losses
from a3c_jax.core.distributions import Categorical, DiagGaussian


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

    @chex.variants(with_jit=True, without_jit=True)
    def test_action_bound_loss(self):
        mean = jnp.array([[3.0, 0.0], [-1.0, 0.5], [-2.5, 4.0]])  # [3, 2]
        low, high = jnp.array([-2.0, 0.0]), jnp.array([2.0, 1.0])
        bound = self.variant(lambda m, mask: losses.action_bound_loss(m, low, high, mask)[0])
        # Squared distance outside the box, summed over dimensions, averaged over samples.
        np.testing.assert_allclose(bound(mean, None), (1.0 + 0.0 + 0.25 + 9.0) / 3, rtol=1e-6)
        np.testing.assert_allclose(bound(mean, jnp.array([1.0, 1.0, 0.0])), 0.5, rtol=1e-6)
        # Its gradient pulls each outlying mean towards the bound, and leaves inner ones alone.
        grad = jax.grad(lambda m: bound(m, None))(mean)
        np.testing.assert_allclose(grad, [[2 / 3, 0.0], [0.0, 0.0], [-1 / 3, 2.0]], rtol=1e-6)


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


# --------------------------------------------------------------------------- masks, normalize

VARIANTS = {"with_jit": True, "without_jit": True}


def _padded(x: np.ndarray, mask: np.ndarray, fill: float) -> jnp.ndarray:
    return jnp.asarray(np.where(mask, x, fill), jnp.float32)


class MaskTest(chex.TestCase):
    """Every loss term: padding (mask 0) changes neither the loss nor the gradient, and the masked
    loss equals the plain loss over the unmasked samples alone."""

    def _case(self):
        rng = np.random.default_rng(3)
        x = rng.normal(size=(5, 3)).astype(np.float32)
        y = rng.normal(size=(5, 3)).astype(np.float32)
        mask = np.ones((5, 3), bool)
        mask[3:, 0] = mask[1:, 2] = False
        return x, y, mask

    @chex.variants(**VARIANTS)
    def test_policy_gradient_loss(self):
        log_p, adv, mask = self._case()
        fn = self.variant(lambda lp, a, m: losses.policy_gradient_loss(lp, a, m)[0])
        expected = -np.mean(log_p[mask] * adv[mask])
        for fill in (0.0, 1e6, -3.0):
            got = fn(_padded(log_p, mask, fill), _padded(adv, mask, -fill), jnp.asarray(mask))
            np.testing.assert_allclose(got, expected, rtol=1e-5)
        grad = jax.grad(lambda lp: losses.policy_gradient_loss(lp, adv, mask)[0])(log_p)
        np.testing.assert_array_equal(np.asarray(grad)[~mask], 0.0)
        np.testing.assert_allclose(np.asarray(grad)[mask], -adv[mask] / mask.sum(), rtol=1e-5)

    @chex.variants(**VARIANTS)
    def test_entropy_loss(self):
        entropy, _, mask = self._case()
        fn = self.variant(lambda h, m: losses.entropy_loss(h, m))
        for fill in (0.0, 1e6):
            loss, metrics = fn(_padded(entropy, mask, fill), jnp.asarray(mask))
            np.testing.assert_allclose(loss, -np.mean(entropy[mask]), rtol=1e-5)
            np.testing.assert_allclose(metrics["entropy"], np.mean(entropy[mask]), rtol=1e-5)
        grad = jax.grad(lambda h: losses.entropy_loss(h, mask)[0])(entropy)
        np.testing.assert_array_equal(np.asarray(grad)[~mask], 0.0)

    @chex.variants(**VARIANTS)
    def test_value_loss(self):
        values, targets, mask = self._case()
        fn = self.variant(lambda v, g, m: losses.value_loss(v, g, m)[0])
        expected = 0.5 * np.mean(np.square(values[mask] - targets[mask]))
        got = fn(_padded(values, mask, 1e3), _padded(targets, mask, -1e3), jnp.asarray(mask))
        np.testing.assert_allclose(got, expected, rtol=1e-5)

    @chex.variants(**VARIANTS)
    def test_actor_critic_loss_with_mask_equals_the_unmasked_samples_alone(self):
        log_p, adv, mask = self._case()
        rng = np.random.default_rng(4)
        entropy, values, targets = (rng.random((5, 3)).astype(np.float32) for _ in range(3))
        args = (log_p, entropy, values, adv, targets)
        masked = self.variant(losses.actor_critic_loss, static_argnums=(5, 6))(
            *(_padded(a, mask, 7.0) for a in args), 0.5, 0.01, jnp.asarray(mask)
        )
        alone = losses.actor_critic_loss(*(jnp.asarray(a[mask]) for a in args), 0.5, 0.01)
        chex.assert_trees_all_close(masked, alone, rtol=1e-5)

    def test_an_all_zero_mask_gives_zero_not_nan(self):
        zeros = jnp.zeros((4,))
        for loss in (
            losses.policy_gradient_loss(jnp.ones(4), jnp.ones(4), zeros)[0],
            losses.value_loss(jnp.ones(4), zeros, zeros)[0],
            losses.entropy_loss(jnp.ones(4), zeros)[0],
        ):
            assert float(loss) == 0.0


class NormalizeTest(chex.TestCase):
    @chex.variants(**VARIANTS)
    def test_batched_inputs_are_normalised_over_every_sample(self):
        x = np.random.default_rng(5).normal(3.0, 2.0, size=(6, 4)).astype(np.float32)
        y = self.variant(losses.normalize)(jnp.asarray(x))
        chex.assert_shape(y, (6, 4))
        np.testing.assert_allclose(y, (x - x.mean()) / x.std(), rtol=1e-4, atol=1e-5)

    @chex.variants(**VARIANTS)
    def test_masked_samples_are_normalised_by_the_unmasked_ones_alone(self):
        x = np.random.default_rng(6).normal(size=(6, 4)).astype(np.float32)
        mask = np.random.default_rng(7).random((6, 4)) > 0.4
        padded = np.where(mask, x, 1e4).astype(np.float32)  # padding far out: must not count
        y = np.asarray(self.variant(losses.normalize)(jnp.asarray(padded), jnp.asarray(mask)))
        kept = x[mask]
        np.testing.assert_allclose(y[mask], (kept - kept.mean()) / kept.std(), rtol=1e-4)
        np.testing.assert_allclose(y[mask].mean(), 0.0, atol=1e-5)
        np.testing.assert_allclose(y[mask].std(), 1.0, rtol=1e-4)

    @chex.variants(**VARIANTS)
    def test_constant_input_gives_zeros(self):
        y = self.variant(losses.normalize)(jnp.full((5, 2), 3.25))
        np.testing.assert_array_equal(y, 0.0)


# --------------------------------------------------------------------------- distributions


class DistributionSamplingTest(chex.TestCase):
    """Samples follow the parameters: categorical frequencies match the probabilities, Gaussian
    sample means and standard deviations match `mean` and `exp(log_std)`. Tolerances: 5
    standard errors of the estimate."""

    N = 100_000

    @chex.variants(with_jit=True, without_jit=True)
    def test_categorical_frequencies(self):
        probs = np.array([[0.1, 0.6, 0.3], [0.7, 0.05, 0.25]], np.float32)
        pi = Categorical(jnp.log(jnp.broadcast_to(probs, (self.N, 2, 3))))
        draws = np.asarray(self.variant(Categorical.sample)(pi, jax.random.PRNGKey(1)))
        chex.assert_shape(draws, (self.N, 2))
        for row in range(2):
            freq = np.bincount(draws[:, row], minlength=3) / self.N
            np.testing.assert_allclose(freq, probs[row], atol=5 * np.sqrt(0.25 / self.N))

    @chex.variants(with_jit=True, without_jit=True)
    def test_gaussian_mean_and_std(self):
        mean = jnp.array([-1.5, 0.0, 4.0])
        log_std = jnp.log(jnp.array([0.5, 1.0, 3.0]))
        pi = DiagGaussian(
            jnp.broadcast_to(mean, (self.N, 3)), jnp.broadcast_to(log_std, (self.N, 3))
        )
        draws = np.asarray(self.variant(DiagGaussian.sample)(pi, jax.random.PRNGKey(2)))
        std = np.exp(np.asarray(log_std))
        np.testing.assert_allclose(draws.mean(0), mean, atol=5 * std.max() / np.sqrt(self.N))
        np.testing.assert_allclose(draws.std(0), std, rtol=5 / np.sqrt(2 * self.N))
        # The sample's own log-density averages to minus the entropy.
        np.testing.assert_allclose(
            np.mean(np.asarray(pi.log_prob(jnp.asarray(draws)))), -float(pi.entropy()[0]), rtol=1e-2
        )

    @chex.variants(with_jit=True, without_jit=True)
    def test_log_prob_entropy_and_mode_under_transformations(self):
        logits = jnp.log(jnp.array([[0.2, 0.8], [0.5, 0.5]]))

        def categorical(logits, action):
            pi = Categorical(logits)
            return pi.log_prob(action), pi.entropy(), pi.mode()

        log_p, entropy, mode = self.variant(categorical)(logits, jnp.array([1, 0]))
        np.testing.assert_allclose(log_p, np.log([0.8, 0.5]), rtol=1e-6)
        np.testing.assert_allclose(entropy[1], np.log(2), rtol=1e-6)
        np.testing.assert_array_equal(mode, [1, 0])

        def gaussian(mean, log_std, action):
            pi = DiagGaussian(mean, log_std)
            return pi.log_prob(action), pi.entropy(), pi.mode()

        log_p, entropy, mode = self.variant(gaussian)(
            jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.ones((1, 2))
        )
        np.testing.assert_allclose(log_p, [-1.0 - np.log(2 * np.pi)], rtol=1e-6)
        np.testing.assert_allclose(entropy, [1.0 + np.log(2 * np.pi)], rtol=1e-6)
        np.testing.assert_array_equal(mode, jnp.zeros((1, 2)))
