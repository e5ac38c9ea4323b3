"""The pure functions of returns, losses, distributions, replay and the networks under `pmap`
(chex's `with_pmap` variant: arguments broadcast to the 4 devices, the first device's output),
against the same functions called plainly."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from a3c_jax import Config, envs
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.core import losses, replay, returns
from a3c_jax.core.distributions import Categorical, DiagGaussian


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    r, v = (rng.normal(size=(6, 3)).astype(np.float32) for _ in range(2))
    d = (0.9 * (rng.random((6, 3)) > 0.3)).astype(np.float32)
    return r, v, d, rng.normal(size=(3,)).astype(np.float32)


class PmapTest(chex.TestCase):
    @chex.variants(with_pmap=True)
    def test_returns(self):
        r, v, d, b = _case()
        chex.assert_trees_all_close(
            self.variant(returns.discounted_returns)(r, d, b),
            returns.discounted_returns(r, d, b),
            rtol=1e-6,
        )
        chex.assert_trees_all_close(
            self.variant(returns.gae_advantages, static_argnums=4)(r, v, d, b, 0.95),
            returns.gae_advantages(r, v, d, b, 0.95),
            rtol=1e-5,
            atol=1e-6,
        )
        terminated, truncated = d == 0, np.roll(d == 0, 1, axis=0)
        chex.assert_trees_all_close(
            self.variant(returns.truncate_episodes, static_argnums=4)(
                r, terminated, truncated, v, 0.9
            ),
            returns.truncate_episodes(r, terminated, truncated, v, 0.9),
            rtol=1e-6,
        )

    @chex.variants(with_pmap=True)
    def test_losses(self):
        r, v, d, _ = _case(1)
        mask = d > 0
        args = (r, jnp.abs(v), v, r * 2, v + 1)
        chex.assert_trees_all_close(
            self.variant(losses.actor_critic_loss, static_argnums=(5, 6))(*args, 0.5, 0.01, mask),
            losses.actor_critic_loss(*args, 0.5, 0.01, mask),
            rtol=1e-5,
        )
        chex.assert_trees_all_close(
            self.variant(losses.normalize)(r, mask), losses.normalize(r, mask), rtol=1e-5
        )

    @chex.variants(with_pmap=True)
    def test_distributions(self):
        logits = jnp.log(jnp.array([[0.2, 0.8], [0.5, 0.5]]))

        def terms(logits, mean, log_std, key):
            pi, gauss = Categorical(logits), DiagGaussian(mean, log_std)
            actions, sampled = pi.sample(key), gauss.sample(key)
            return (
                pi.log_prob(actions),
                pi.entropy(),
                pi.mode(),
                gauss.log_prob(sampled),
                gauss.entropy(),
                sampled,
            )

        args = (logits, jnp.ones((2, 3)), jnp.full((2, 3), -0.5), jax.random.PRNGKey(3))
        chex.assert_trees_all_close(self.variant(terms)(*args), terms(*args), rtol=1e-5)

    @chex.variants(with_pmap=True)
    def test_replay(self):
        values = jnp.arange(6, dtype=jnp.float32)
        items = replay.Experience(values[:, None], values, values > 3, -values[:, None])
        valid = jnp.array([True, False, True, True, True, True])

        def add_and_sample(items, valid, key):
            buffer = replay.replay_add(replay.replay_init((1,), 4), items, valid)
            return buffer, replay.replay_sample(buffer, key, 8)

        args = (items, valid, jax.random.PRNGKey(0))
        chex.assert_trees_all_equal(self.variant(add_and_sample)(*args), add_and_sample(*args))

    @chex.variants(with_pmap=True)
    def test_networks(self):
        spec = envs.make_env("CartPole-v1")
        nets = make_networks(Config(), spec)
        params = nets.init(jax.random.PRNGKey(0))
        obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
        chex.assert_trees_all_close(
            self.variant(nets.apply)(params, obs), nets.apply(params, obs), rtol=1e-5, atol=1e-6
        )
