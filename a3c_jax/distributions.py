"""The two policy distributions, as pytrees with pure methods.

Batch shapes are whatever the network was applied to (`[B]`, `[T, B]`, ...): `log_prob`,
`entropy` return that batch shape; `sample` and `mode` return batch shape + action shape.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Categorical(NamedTuple):
    """A categorical distribution over `n` discrete actions."""

    logits: jax.Array  # [..., n]

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.categorical(key, self.logits).astype(jnp.int32)

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

    def sample(self, key: jax.Array) -> jax.Array:
        noise = jax.random.normal(key, self.mean.shape, self.mean.dtype)
        return self.mean + jnp.exp(self.log_std) * noise

    def mode(self) -> jax.Array:
        return self.mean

    def log_prob(self, action: jax.Array) -> jax.Array:
        z = (action - self.mean) * jnp.exp(-self.log_std)
        per_dim = -0.5 * jnp.square(z) - self.log_std - 0.5 * math.log(2 * math.pi)
        return jnp.sum(per_dim, axis=-1)

    def entropy(self) -> jax.Array:
        per_dim = self.log_std + 0.5 * (1.0 + math.log(2 * math.pi))
        return jnp.sum(per_dim, axis=-1)


Distribution = Categorical | DiagGaussian
