"""Returns and advantages: time-major reverse scans.

Every function takes time-major arrays `[T, ...]` (any trailing batch shape, e.g. `[T, B]`) and a
bootstrap `[...]` for the state after the last step. `discount_t` is `γ` where the episode goes on
after step `t` and `0` where it ended there; `truncate_episodes` turns a truncated step into that
form by adding `γ V(s'_t)` to its reward.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def truncate_episodes(
    rewards: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    next_values: jax.Array,
    gamma: float,
) -> tuple[jax.Array, jax.Array]:
    """Per-step rewards and discounts that tell termination from truncation.

    `r'_t = r_t + γ V(s'_t)` where the episode was truncated at `t` (a time limit, not a terminal
    state: the critic's value of the state it was cut off in, `s'_t` = gymnax's
    `info["final_observation"]`, stands in for the rest of the episode), `r'_t = r_t` elsewhere;
    `discount_t = 0` where the episode ended at `t` (either way), `γ` elsewhere.

    Args:
      rewards: `[T, ...]` float.
      terminated: `[T, ...]` bool.
      truncated: `[T, ...]` bool (ignored where `terminated`).
      next_values: `[T, ...]` `V(s'_t)`, the value of the observation each action led to.
      gamma: the discount `γ`.

    Returns:
      `(rewards', discounts)`, both `[T, ...]` float32.
    """
    chex.assert_equal_shape([rewards, terminated, truncated, next_values])
    bootstrap_here = truncated & ~terminated
    rewards = rewards + jnp.where(bootstrap_here, gamma * next_values, 0.0)
    discounts = jnp.where(terminated | truncated, 0.0, gamma).astype(jnp.float32)
    return rewards.astype(jnp.float32), discounts


def discounted_returns(
    rewards: jax.Array, discounts: jax.Array, bootstrap_value: jax.Array
) -> jax.Array:
    """Bootstrapped discounted returns `G_t = r_t + discount_t G_{t+1}`, `G_T = bootstrap_value`.

    With `discount_t = 0` at an episode's end this is the decks' backward loop
    `R <- r_i + γ R` with `R = 0` at termination, else `R = V(s_T)` (the n-step return).

    Args:
      rewards: `[T, ...]`.
      discounts: `[T, ...]`.
      bootstrap_value: `[...]`, the value of the state after step `T - 1`.

    Returns:
      `[T, ...]` returns.
    """
    chex.assert_equal_shape([rewards, discounts])
    chex.assert_equal_shape([rewards[0], bootstrap_value])

    def body(g_tp1: jax.Array, rd: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        r_t, discount_t = rd
        g_t = r_t + discount_t * g_tp1
        return g_t, g_t

    _, returns = jax.lax.scan(body, bootstrap_value, (rewards, discounts), reverse=True)
    return returns


def gae_advantages(
    rewards: jax.Array,
    values: jax.Array,
    discounts: jax.Array,
    bootstrap_value: jax.Array,
    lambda_: float | jax.Array,
) -> jax.Array:
    """Generalised advantage estimates (Schulman et al., 2016).

    `δ_t = r_t + discount_t V_{t+1} - V_t` with `V_T = bootstrap_value`, and
    `A_t = δ_t + discount_t λ A_{t+1}`, `A_T = 0`. `λ = 1` gives `discounted_returns - values`
    (the n-step advantage of A2C); `λ = 0` gives the one-step TD errors `δ_t`.

    Args:
      rewards: `[T, ...]`.
      values: `[T, ...]`, `V(s_t)`.
      discounts: `[T, ...]`.
      bootstrap_value: `[...]`, `V(s_T)`.
      lambda_: scalar, or `[T, ...]` per step.

    Returns:
      `[T, ...]` advantages; the critic's targets are `advantages + values`.
    """
    chex.assert_equal_shape([rewards, values, discounts])
    chex.assert_equal_shape([values[0], bootstrap_value])
    lambda_ = jnp.broadcast_to(jnp.asarray(lambda_, values.dtype), values.shape)
    values_tp1 = jnp.concatenate([values[1:], bootstrap_value[None]], axis=0)
    deltas = rewards + discounts * values_tp1 - values

    def body(a_tp1: jax.Array, xs: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        delta_t, discount_t, lambda_t = xs
        a_t = delta_t + discount_t * lambda_t * a_tp1
        return a_t, a_t

    _, advantages = jax.lax.scan(
        body, jnp.zeros_like(bootstrap_value), (deltas, discounts, lambda_), reverse=True
    )
    return advantages
