"""Actor, critic and entropy losses. Pure; each returns `(loss, metrics)`.

Inputs share one batch shape (`[T, B]` for a rollout, anything else works). An optional `mask`
of that shape weights each sample (1: counts, 0: padding that must change nothing); the losses are
means over the unmasked samples.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from a3c_jax.core.types import LossMetrics

Metrics = dict[str, jax.Array]  # what each loss piece reports about itself


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of `x` over the samples where `mask` is non-zero (all samples if `mask` is None)."""
    if mask is None:
        return jnp.mean(x)
    chex.assert_equal_shape([x, mask])
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def policy_gradient_loss(
    log_probs: jax.Array, advantages: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, Metrics]:
    """The actor's loss `-mean(log π(a_t|s_t) · stop_gradient(A_t))`.

    Its gradient is the policy-gradient estimate: descending it raises the log-probability of
    actions with positive advantage and lowers it for negative advantage.
    """
    chex.assert_equal_shape([log_probs, advantages])
    loss = -masked_mean(log_probs * jax.lax.stop_gradient(advantages), mask)
    return loss, {"actor_loss": loss}


def value_loss(
    values: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, Metrics]:
    """The critic's loss `0.5 · mean((G_t - V(s_t))²)`, targets held fixed.

    The factor 0.5 makes its gradient `(V - G) ∇V`; with `vf_coef = 0.5` (the default) the total
    loss weighs it as Stable-Baselines3's `vf_coef · MSE` does with `vf_coef = 0.25`.
    """
    chex.assert_equal_shape([values, targets])
    loss = 0.5 * masked_mean(jnp.square(jax.lax.stop_gradient(targets) - values), mask)
    return loss, {"critic_loss": loss}


def entropy_loss(entropy: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, Metrics]:
    """`-mean(H[π(·|s_t)])`: minimised with a positive weight, it keeps the policy exploring."""
    mean_entropy = masked_mean(entropy, mask)
    return -mean_entropy, {"entropy": mean_entropy}


def action_bound_loss(
    mean: jax.Array, low: jax.Array, high: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, Metrics]:
    """`mean(Σ_i relu(μ_i - high_i)² + relu(low_i - μ_i)²)` over the samples: how far a
    Gaussian policy's means `[..., d]` lie outside the action bounds `[d]` (zero inside them).

    With actions clipped to the bounds, a mean far outside them makes every sampled action the
    bound itself, so the policy gradient no longer tells one action from another; weighted by
    `Config.action_bound_coef`, this pulls such means back (rl_games' `bounds_loss_coef`).
    """
    low, high = jnp.broadcast_to(low, mean.shape), jnp.broadcast_to(high, mean.shape)
    over = jax.nn.relu(mean - high) + jax.nn.relu(low - mean)  # [..., d], one is zero
    loss = masked_mean(jnp.sum(jnp.square(over), axis=-1), mask)
    return loss, {"action_bound_loss": loss}


def combine(
    actor: jax.Array,
    critic: jax.Array,
    mean_entropy: jax.Array,
    vf_coef: float,
    ent_coef: float,
) -> tuple[jax.Array, LossMetrics]:
    """The total loss `actor + vf_coef · critic - ent_coef · entropy` of the pieces' values
    (`policy_gradient_loss`, `value_loss`, `entropy_loss`'s mean entropy) and its metrics."""
    total = actor + vf_coef * critic - ent_coef * mean_entropy
    return total, LossMetrics(total, actor, critic, mean_entropy)


def actor_critic_loss(
    log_probs: jax.Array,
    entropy: jax.Array,
    values: jax.Array,
    advantages: jax.Array,
    targets: jax.Array,
    vf_coef: float,
    ent_coef: float,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, LossMetrics]:
    """`actor + vf_coef · critic - ent_coef · entropy` over one batch (`combine`)."""
    actor, _ = policy_gradient_loss(log_probs, advantages, mask)
    critic, _ = value_loss(values, targets, mask)
    neg_entropy, _ = entropy_loss(entropy, mask)
    return combine(actor, critic, -neg_entropy, vf_coef, ent_coef)


def normalize(x: jax.Array, mask: jax.Array | None = None, eps: float = 1e-8) -> jax.Array:
    """`(x - mean) / (std + eps)` over the (unmasked) samples."""
    mean = masked_mean(x, mask)
    std = jnp.sqrt(masked_mean(jnp.square(x - mean), mask))
    return (x - mean) / (std + eps)
