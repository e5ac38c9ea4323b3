"""Returns and advantages against hand-computed cases."""

import chex
import jax.numpy as jnp
import numpy as np

from a3c_jax.core import returns

GAMMA = 0.9


def _reference_returns(r, d, bootstrap):
    g, out = bootstrap, []
    for r_t, d_t in zip(r[::-1], d[::-1], strict=True):
        g = r_t + d_t * g
        out.append(g)
    return np.array(out[::-1])


class DiscountedReturnsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_no_episode_end_bootstraps_from_value(self):
        r = jnp.array([1.0, 2.0, 3.0])
        d = jnp.full((3,), GAMMA)
        g = self.variant(returns.discounted_returns)(r, d, jnp.array(10.0))
        chex.assert_shape(g, (3,))
        g2 = 3.0 + GAMMA * 10.0
        g1 = 2.0 + GAMMA * g2
        g0 = 1.0 + GAMMA * g1
        np.testing.assert_allclose(g, [g0, g1, g2], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_termination_mid_rollout_cuts_the_return(self):
        # The episode terminates at t=1: G_1 = r_1, G_0 = r_0 + γ r_1; G_2 bootstraps.
        r = jnp.array([1.0, 1.0, 1.0])
        d = jnp.array([GAMMA, 0.0, GAMMA])
        g = self.variant(returns.discounted_returns)(r, d, jnp.array(5.0))
        np.testing.assert_allclose(g, [1.0 + GAMMA, 1.0, 1.0 + GAMMA * 5.0], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_batched_time_major(self):
        rng = np.random.default_rng(0)
        r = rng.normal(size=(6, 4, 3)).astype(np.float32)
        d = (GAMMA * (rng.random((6, 4, 3)) > 0.3)).astype(np.float32)
        b = rng.normal(size=(4, 3)).astype(np.float32)
        g = self.variant(returns.discounted_returns)(r, d, b)
        chex.assert_shape(g, (6, 4, 3))
        for i in range(4):
            for j in range(3):
                np.testing.assert_allclose(
                    g[:, i, j], _reference_returns(r[:, i, j], d[:, i, j], b[i, j]), rtol=1e-5
                )

    @chex.variants(with_jit=True, without_jit=True)
    def test_single_step(self):
        g = self.variant(returns.discounted_returns)(
            jnp.array([[2.0, 3.0]]), jnp.array([[GAMMA, 0.0]]), jnp.array([1.0, 7.0])
        )
        np.testing.assert_allclose(g, [[2.0 + GAMMA, 3.0]], rtol=1e-6)


class TruncateEpisodesTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_truncation_bootstraps_termination_does_not(self):
        r = jnp.array([1.0, 1.0, 1.0, 1.0])
        terminated = jnp.array([False, True, False, True])
        truncated = jnp.array([False, False, True, True])  # the last is both: termination wins
        next_v = jnp.array([3.0, 4.0, 5.0, 6.0])
        r2, d = self.variant(returns.truncate_episodes, static_argnums=4)(
            r, terminated, truncated, next_v, GAMMA
        )
        chex.assert_shape([r2, d], (4,))
        np.testing.assert_allclose(r2, [1.0, 1.0, 1.0 + GAMMA * 5.0, 1.0], rtol=1e-6)
        np.testing.assert_allclose(d, [GAMMA, 0.0, 0.0, 0.0])

    @chex.variants(with_jit=True, without_jit=True)
    def test_truncation_mid_rollout_return(self):
        # Truncated at t=1 in a state worth 10: G_1 = r_1 + γ·10, G_0 = r_0 + γ G_1; a new
        # episode starts at t=2 and bootstraps from V(s_3) = 2.
        r = jnp.ones(3)
        next_v = jnp.array([0.0, 10.0, 2.0])
        r2, d = self.variant(returns.truncate_episodes, static_argnums=4)(
            r, jnp.zeros(3, bool), jnp.array([False, True, False]), next_v, GAMMA
        )
        g = self.variant(returns.discounted_returns)(r2, d, next_v[-1])
        g1 = 1.0 + GAMMA * 10.0
        np.testing.assert_allclose(g, [1.0 + GAMMA * g1, g1, 1.0 + GAMMA * 2.0], rtol=1e-6)


class GAETest(chex.TestCase):
    def _case(self):
        rng = np.random.default_rng(1)
        r = rng.normal(size=(7, 5)).astype(np.float32)
        v = rng.normal(size=(7, 5)).astype(np.float32)
        d = (GAMMA * (rng.random((7, 5)) > 0.25)).astype(np.float32)
        b = rng.normal(size=(5,)).astype(np.float32)
        return r, v, d, b

    @chex.variants(with_jit=True, without_jit=True)
    def test_lambda_one_is_returns_minus_values(self):
        r, v, d, b = self._case()
        adv = self.variant(returns.gae_advantages)(r, v, d, b, 1.0)
        chex.assert_shape(adv, (7, 5))
        np.testing.assert_allclose(adv, returns.discounted_returns(r, d, b) - v, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_lambda_zero_is_td_error(self):
        r, v, d, b = self._case()
        adv = self.variant(returns.gae_advantages)(r, v, d, b, 0.0)
        v_tp1 = np.concatenate([v[1:], b[None]], axis=0)
        np.testing.assert_allclose(adv, r + d * v_tp1 - v, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_intermediate_lambda_hand_computed(self):
        r = jnp.array([1.0, 0.0])
        v = jnp.array([0.5, 0.25])
        d = jnp.array([GAMMA, GAMMA])
        lam = 0.5
        adv = self.variant(returns.gae_advantages)(r, v, d, jnp.array(2.0), lam)
        delta1 = 0.0 + GAMMA * 2.0 - 0.25
        delta0 = 1.0 + GAMMA * 0.25 - 0.5
        np.testing.assert_allclose(adv, [delta0 + GAMMA * lam * delta1, delta1], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_advantage_does_not_cross_episode_end(self):
        r = jnp.array([0.0, 0.0, 100.0])
        v = jnp.zeros(3)
        d = jnp.array([GAMMA, 0.0, GAMMA])  # episode ends at t=1
        adv = self.variant(returns.gae_advantages)(r, v, d, jnp.array(0.0), 0.95)
        np.testing.assert_allclose(adv[:2], [0.0, 0.0])
        np.testing.assert_allclose(adv[2], 100.0)
