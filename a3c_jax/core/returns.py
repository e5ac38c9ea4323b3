"""Returns and advantages: time-major reverse scans.

Every function takes time-major arrays `[T, ...]` (any trailing batch shape, e.g. `[T, B]`) and a
bootstrap `[...]` for the state after the last step. `discount_t` is `γ` where the episode goes on
after step `t` and `0` where it ended there; `truncate_episodes` turns a truncated step into that
form by adding `γ V(s'_t)` to its reward.

`vtrace` corrects the returns of experience played by an older (behaviour) policy for the
current one (IMPALA's off-policy targets), as a learner needs with data parallelism: workers
send trajectories, the learner's parameters have moved on by the time it learns from them.
"""

from __future__ import annotations

from typing import NamedTuple

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


class VTraceOutput(NamedTuple):
    """V-trace's targets and the policy gradient's advantages, each `[T, ...]`."""

    errors: jax.Array  # v_s - V(x_s): the critic's regression errors toward the targets
    pg_advantage: jax.Array  # ρ^pg_s (r_s + γ_s v_{s+1} - V(x_s)), the actor's advantage
    q_estimate: jax.Array  # r_s + γ_s v_{s+1}, the corrected action value


def vtrace(
    v_tm1: jax.Array,
    v_t: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    rho_tm1: jax.Array,
    lambda_: float | jax.Array = 1.0,
    rho_clip: float = 1.0,
    c_clip: float = 1.0,
    stop_target_gradients: bool = True,
) -> jax.Array:
    """V-trace targets `v_s` (Espeholt et al., 2018, "IMPALA", eq. 1, with its λ of section 4.2):
    the value targets of a trajectory played by a behaviour policy `μ` for a target policy `π`.

    With `ρ_s = min(ρ̄, π(a_s|x_s) / μ(a_s|x_s))`, `c_s = λ min(c̄, π(a_s|x_s) / μ(a_s|x_s))` and
    `δ_s = ρ_s (r_s + γ_s V(x_{s+1}) - V(x_s))`, one reverse scan over time:

        v_s - V(x_s) = δ_s + γ_s c_s (v_{s+1} - V(x_{s+1})),   v_T - V(x_T) = 0,

    which unrolls to the paper's `v_s = V(x_s) + Σ_{t≥s} (Π_{s≤i<t} γ_i c_i) δ_t`. With `π = μ`
    (`ρ = 1`), `λ = 1` and consistent values (`v_t[s] = v_tm1[s + 1]` wherever `discount_t[s] >
    0`) it is the n-step return `discounted_returns(r_t, discount_t, v_t[-1])`.

    Args:
      v_tm1: `[T, ...]` `V(x_s)`, the values of the states acted in.
      v_t: `[T, ...]` `V(x_{s+1})`, the values of the states each action led to (the last one
        bootstraps the trajectory).
      r_t: `[T, ...]` rewards.
      discount_t: `[T, ...]` `γ_s`: `γ` where the episode goes on after step `s`, `0` where it
        ended (`truncate_episodes`).
      rho_tm1: `[T, ...]` importance ratios `π(a_s|x_s) / μ(a_s|x_s)`.
      lambda_: scalar or `[T, ...]`, the trace's decay (1: the paper's V-trace).
      rho_clip: `ρ̄`, the truncation of the ratios in `δ_s` (the fixed point's policy).
      c_clip: `c̄`, the truncation of the traces `c_s` (the speed of convergence).
      stop_target_gradients: hold the targets fixed (no gradient through them).

    Returns:
      `[T, ...]` the targets `v_s`.
    """
    chex.assert_equal_shape([v_tm1, v_t, r_t, discount_t, rho_tm1])
    lambda_ = jnp.broadcast_to(jnp.asarray(lambda_, v_tm1.dtype), v_tm1.shape)
    c_tm1 = lambda_ * jnp.minimum(c_clip, rho_tm1)
    deltas = jnp.minimum(rho_clip, rho_tm1) * (r_t + discount_t * v_t - v_tm1)

    def body(err_tp1: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta_t, trace_t = xs
        err_t = delta_t + trace_t * err_tp1
        return err_t, err_t

    _, errors = jax.lax.scan(
        body, jnp.zeros_like(v_t[0]), (deltas, discount_t * c_tm1), reverse=True
    )
    targets = errors + v_tm1
    return jax.lax.stop_gradient(targets) if stop_target_gradients else targets


def vtrace_td_error_and_advantage(
    v_tm1: jax.Array,
    v_t: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    rho_tm1: jax.Array,
    lambda_: float | jax.Array = 1.0,
    rho_clip: float = 1.0,
    c_clip: float = 1.0,
    pg_rho_clip: float = 1.0,
    stop_target_gradients: bool = True,
) -> VTraceOutput:
    """V-trace's critic errors and the actor's advantages (IMPALA, section 4.2).

    The targets `v_s` are `vtrace`'s (the arguments mean what they mean there); the action
    value is `q_s = r_s + γ_s (λ_s v_{s+1} + (1 - λ_s) V(x_{s+1}))` (`v_t[-1]` after the last
    step) and the policy gradient's advantage `ρ^pg_s (q_s - V(x_s))` with
    `ρ^pg_s = min(pg_rho_clip, π(a_s|x_s) / μ(a_s|x_s))`.

    Returns:
      `VTraceOutput` of `[T, ...]` arrays; `errors = v_s - V(x_s)`.
    """
    chex.assert_equal_shape([v_tm1, v_t, r_t, discount_t, rho_tm1])
    lambda_ = jnp.broadcast_to(jnp.asarray(lambda_, v_tm1.dtype), v_tm1.shape)
    targets = vtrace(
        v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_, rho_clip, c_clip, stop_target_gradients
    )
    q_bootstrap = jnp.concatenate(
        [lambda_[:-1] * targets[1:] + (1.0 - lambda_[:-1]) * v_tm1[1:], v_t[-1:]], axis=0
    )
    q_estimate = r_t + discount_t * q_bootstrap
    pg_advantage = jnp.minimum(pg_rho_clip, rho_tm1) * (q_estimate - v_tm1)
    return VTraceOutput(targets - v_tm1, pg_advantage, q_estimate)
