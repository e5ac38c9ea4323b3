"""The policy distributions, as pytrees with pure methods.

Batch shapes are whatever the network was applied to (`[B]`, `[T, B]`, ...): `log_prob`,
`entropy` return that batch shape; `sample` and `mode` return batch shape + action shape.

`sample(key)` is `sample_from(noise(key))`: `noise` draws the randomness (it reads only its
fields' shapes and dtypes, so it works on the abstract distribution `jax.eval_shape` gives, and
can be drawn ahead for a whole rollout) and `sample_from` turns it into actions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Categorical(NamedTuple):
    """A categorical distribution over `n` discrete actions."""

    logits: jax.Array  # [..., n]

    def noise(self, key: jax.Array) -> jax.Array:
        """The Gumbel noise `[..., n]` that `sample(key)` adds to the logits."""
        return jax.random.gumbel(key, self.logits.shape, self.logits.dtype)

    def sample_from(self, noise: jax.Array) -> jax.Array:
        """The action that `noise` (`noise(key)`, drawn ahead) picks: `sample(key)` bitwise."""
        return jnp.argmax(self.logits + noise, axis=-1).astype(jnp.int32)

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_from(self.noise(key))

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1).astype(jnp.int32)

    def log_prob(self, action: jax.Array) -> jax.Array:
        log_p = jax.nn.log_softmax(self.logits)
        return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        log_p = jax.nn.log_softmax(self.logits)
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


class DiagGaussian(NamedTuple):
    """A diagonal Gaussian over `d`-dimensional continuous actions."""

    mean: jax.Array  # [..., d]
    log_std: jax.Array  # [..., d] (broadcast from [d])

    def noise(self, key: jax.Array) -> jax.Array:
        """The standard normal draw `[..., d]` that `sample(key)` scales and shifts."""
        return jax.random.normal(key, self.mean.shape, self.mean.dtype)

    def sample_from(self, noise: jax.Array) -> jax.Array:
        return self.mean + jnp.exp(self.log_std) * noise

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_from(self.noise(key))

    def mode(self) -> jax.Array:
        return self.mean

    def log_prob(self, action: jax.Array) -> jax.Array:
        z = (action - self.mean) * jnp.exp(-self.log_std)
        per_dim = -0.5 * jnp.square(z) - self.log_std - 0.5 * math.log(2 * math.pi)
        return jnp.sum(per_dim, axis=-1)

    def entropy(self) -> jax.Array:
        per_dim = self.log_std + 0.5 * (1.0 + math.log(2 * math.pi))
        return jnp.sum(per_dim, axis=-1)


class SquashedGaussian(NamedTuple):
    """A diagonal Gaussian over `u`, squashed into the box `[low, high]`:
    `a = low + (tanh(u) + 1) (high - low) / 2`, so every action lies inside the bounds.

    `log π(a) = log N(u; μ, σ) - Σ_i log(s_i (1 - tanh²(u_i)))`, `s = (high - low) / 2`, with
    `u = atanh(y)`, `y = (a - c) / s` kept `EDGE` inside ±1 (float32 rounds `tanh` to ±1 from
    `|u| > 9`), as Stable-Baselines3's `SquashedDiagGaussianDistribution` does. The entropy
    has no closed form: `entropy()` is the Gaussian's plus the log-Jacobian at the mean, a
    first-order estimate (exact as `σ -> 0`).
    """

    mean: jax.Array  # [..., d] of the pre-squash Gaussian
    log_std: jax.Array  # [..., d]
    low: jax.Array  # [d] action bounds
    high: jax.Array  # [d]

    EDGE = 1e-6

    def _centre_scale(self) -> tuple[jax.Array, jax.Array]:
        low = jnp.broadcast_to(self.low, self.mean.shape)
        high = jnp.broadcast_to(self.high, self.mean.shape)
        return (high + low) / 2, (high - low) / 2

    def _squash(self, u: jax.Array) -> jax.Array:
        centre, scale = self._centre_scale()
        low = jnp.broadcast_to(self.low, u.shape)
        high = jnp.broadcast_to(self.high, u.shape)
        return jnp.clip(centre + scale * jnp.tanh(u), low, high)

    def _log_jacobian(self, u: jax.Array) -> jax.Array:
        # log(1 - tanh²(u)) = 2 (log 2 - u - softplus(-2u)), stable for large |u|.
        _, scale = self._centre_scale()
        log_dtanh = 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))
        return jnp.sum(jnp.log(scale) + log_dtanh, axis=-1)

    def noise(self, key: jax.Array) -> jax.Array:
        return DiagGaussian(self.mean, self.log_std).noise(key)

    def sample_from(self, noise: jax.Array) -> jax.Array:
        return self._squash(DiagGaussian(self.mean, self.log_std).sample_from(noise))

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_from(self.noise(key))

    def mode(self) -> jax.Array:
        return self._squash(self.mean)

    def log_prob(self, action: jax.Array) -> jax.Array:
        centre, scale = self._centre_scale()
        y = jnp.clip((action - centre) / scale, -1.0 + self.EDGE, 1.0 - self.EDGE)
        u = jnp.arctanh(y)
        return DiagGaussian(self.mean, self.log_std).log_prob(u) - self._log_jacobian(u)

    def entropy(self) -> jax.Array:
        return DiagGaussian(self.mean, self.log_std).entropy() + self._log_jacobian(self.mean)


class StateDependentGaussian(NamedTuple):
    """Generalised state-dependent exploration (gSDE; Raffin et al., 2022): the action is
    `a = μ(s) + φ(s) W`, `φ(s)` `[..., H]` the actor's last features (held fixed: no gradient
    flows through them) and `W` `[H, d]` a noise matrix with independent entries
    `W_jk ~ N(0, σ_jk²)`, `σ = exp(log_std)`.

    Given the state, `a` is Gaussian with independent dimensions of variance
    `Σ_j φ_j(s)² σ_jk² (+ VARIANCE_EPS)`: `log_prob`, `entropy` and `mode` are those of that
    `DiagGaussian`, as Stable-Baselines3's `StateDependentNoiseDistribution` computes them.
    `sample(key)` draws one `W` from `key` for the whole batch: the rollout hands each
    environment the same key for `Config.sde_sample_freq` steps (`rollout.rollout_keys`'s
    `hold`), so the noise is a smooth function of the state between two draws.
    """

    mean: jax.Array  # [..., d]
    features: jax.Array  # [..., H] φ(s), gradient stopped
    log_std: jax.Array  # [H, d] log σ of the noise matrix's entries

    VARIANCE_EPS = 1e-6  # as Stable-Baselines3's, keeps the variance above 0 where φ(s) = 0

    def gaussian(self) -> DiagGaussian:
        """The action's Gaussian given the state: mean `μ`, variance `φ² @ σ²` `[..., d]`."""
        variance = jnp.square(self.features) @ jnp.exp(2.0 * self.log_std)
        return DiagGaussian(self.mean, 0.5 * jnp.log(variance + self.VARIANCE_EPS))

    def noise(self, key: jax.Array) -> jax.Array:
        """The standard normal draw `[H, d]` that `noise_matrix` scales by `σ`."""
        return jax.random.normal(key, self.log_std.shape, self.mean.dtype)

    def noise_matrix(self, key: jax.Array) -> jax.Array:
        """One draw of `W` `[H, d]`, entries `N(0, σ_jk²)`."""
        return jnp.exp(self.log_std) * self.noise(key)

    def sample_from(self, noise: jax.Array) -> jax.Array:
        return self.mean + self.features @ (jnp.exp(self.log_std) * noise)

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_from(self.noise(key))

    def mode(self) -> jax.Array:
        return self.mean

    def log_prob(self, action: jax.Array) -> jax.Array:
        return self.gaussian().log_prob(action)

    def entropy(self) -> jax.Array:
        return self.gaussian().entropy()


Distribution = Categorical | DiagGaussian | SquashedGaussian | StateDependentGaussian
