"""Rollouts: the policy acting in vectorised environments, `[T, B]` time-major.

`rollout` plays a fixed number of steps (`lax.scan`); `rollout_episodes` plays whole episodes
(`lax.while_loop` with padding). Both take each step with `policy_step`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from a3c_jax import envs
from a3c_jax.networks import Networks
from a3c_jax.types import EnvCarry, Params, PRNGKey, Transition

# (params, obs [B, O...], key) -> action [B, A...]
PolicyFn = Callable[[Params, jax.Array, PRNGKey], jax.Array]


def policy_step(
    spec: envs.EnvSpec, policy_fn: PolicyFn, params: Params, carry: EnvCarry, key: PRNGKey
) -> tuple[EnvCarry, Transition]:
    """One step of `B` environments with actions from `policy_fn`."""
    act_key, env_key = jax.random.split(key)
    return envs.step(spec, env_key, carry, policy_fn(params, carry.obs, act_key))


def rollout(
    spec: envs.EnvSpec,
    policy_fn: PolicyFn,
    params: Params,
    carry: EnvCarry,
    key: PRNGKey,
    num_steps: int,
) -> tuple[EnvCarry, Transition]:
    """Plays `num_steps` steps in `B` environments with the policy's current parameters.

    Returns the carry after the last step and the transitions, time-major `[T, B, ...]`.
    """

    def body(carry: EnvCarry, step_key: PRNGKey) -> tuple[EnvCarry, Transition]:
        return policy_step(spec, policy_fn, params, carry, step_key)

    return jax.lax.scan(body, carry, jax.random.split(key, num_steps))


def sampling_policy(networks: Networks) -> PolicyFn:
    """The behaviour policy of every on-policy algorithm here: `a ~ π(·|obs)`."""

    def policy_fn(params: Params, obs: jax.Array, key: PRNGKey) -> jax.Array:
        return networks.policy(params, obs).sample(key)

    return policy_fn


def rollout_episodes(
    spec: envs.EnvSpec,
    policy_fn: PolicyFn,
    params: Params,
    carry: EnvCarry,
    key: PRNGKey,
    max_steps: int,
) -> tuple[EnvCarry, Transition, jax.Array]:
    """Plays until each of `B` environments has finished the episode it is in (at most
    `max_steps` steps), for the episodic algorithms (`da2c`, `ac_replay`).

    A `lax.while_loop` that stops as soon as the longest episode ends, writing into fixed
    `[max_steps, B]` buffers: environments whose episode ended keep stepping (their auto-reset
    next episode) but those steps are marked invalid and must count for nothing.

    Returns the carry after the last step, the transitions `[max_steps, B, ...]` (rows past the
    last step are zeros) and `valid` `[max_steps, B]` bool: True up to and including each
    environment's first `done`.
    """
    num_envs = carry.obs.shape[0]

    _, template = jax.eval_shape(
        functools.partial(policy_step, spec, policy_fn), params, carry, key
    )
    buffer = jax.tree.map(lambda x: jnp.zeros((max_steps, *x.shape), x.dtype), template)
    valid = jnp.zeros((max_steps, num_envs), bool)

    def cond(state) -> jax.Array:
        t, _, alive, *_ = state
        return (t < max_steps) & jnp.any(alive)

    def body(state):
        t, carry, alive, buffer, valid, key = state
        key, step_key = jax.random.split(key)
        carry, transition = policy_step(spec, policy_fn, params, carry, step_key)
        buffer = jax.tree.map(lambda b, x: b.at[t].set(x), buffer, transition)
        valid = valid.at[t].set(alive)
        return t + 1, carry, alive & ~transition.done, buffer, valid, key

    alive = jnp.ones((num_envs,), bool)
    state = (jnp.zeros((), jnp.int32), carry, alive, buffer, valid, key)
    _, carry, _, buffer, valid, _ = jax.lax.while_loop(cond, body, state)
    return carry, buffer, valid
