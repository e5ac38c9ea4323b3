"""Rollouts: the policy acting in vectorised environments, `[T, B]` time-major.

`rollout` plays a fixed number of steps; `rollout_episodes` plays whole episodes, padded to a
fixed length and masked. Both are a `lax.scan` taking each step with `policy_step`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from a3c_jax import envs
from a3c_jax.networks import Networks
from a3c_jax.types import EnvCarry, Params, PRNGKey, Transition

# (params, obs [B, O...], key) -> action [B, A...]
PolicyFn = Callable[[Params, jax.Array, PRNGKey], jax.Array]


def act_each(policy_fn: PolicyFn, params: Params, carry: EnvCarry, key: PRNGKey) -> jax.Array:
    """Actions `[B, A...]` for the `B` environments of `carry`, each chosen on its own
    observation with its own key `envs.env_keys(key, env_id)` (`policy_fn` vmapped over
    environments): an environment's action does not depend on how the batch is split over
    devices."""

    def one(obs: jax.Array, env_key: PRNGKey) -> jax.Array:
        return policy_fn(params, obs[None], env_key)[0]

    return jax.vmap(one)(carry.obs, envs.env_keys(key, carry.env_id))


def policy_step(
    spec: envs.EnvSpec, policy_fn: PolicyFn, params: Params, carry: EnvCarry, key: PRNGKey
) -> tuple[EnvCarry, Transition]:
    """One step of `B` environments, each acting with `policy_fn` on its own key (`act_each`)."""
    act_key, env_key = jax.random.split(key)
    return envs.step(spec, env_key, carry, act_each(policy_fn, params, carry, act_key))


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
    """Plays `max_steps` steps in `B` environments and marks each one's first episode, for the
    episodic algorithms (`da2c`, `ac_replay`); with `max_steps` at least the time limit, every
    environment finishes the episode it is in.

    Environments whose episode ended keep stepping (into their auto-reset next episode), but
    those steps are marked invalid and must count for nothing. A fixed-length `lax.scan`, not a
    `while_loop` that stops with the longest episode: under `vmap` over seeds a `while_loop`
    copies its whole carry (the `[T, B]` buffers) at every step, and the loss costs the same
    `[T, B]` either way.

    Returns the carry after the last step, the transitions `[max_steps, B, ...]` and `valid`
    `[max_steps, B]` bool: True up to and including each environment's first `done`.
    """

    def body(
        state: tuple[EnvCarry, jax.Array], step_key: PRNGKey
    ) -> tuple[tuple[EnvCarry, jax.Array], tuple[Transition, jax.Array]]:
        carry, alive = state
        carry, transition = policy_step(spec, policy_fn, params, carry, step_key)
        return (carry, alive & ~transition.done), (transition, alive)

    alive = jnp.ones(carry.obs.shape[:1], bool)
    keys = jax.random.split(key, max_steps)
    (carry, _), (traj, valid) = jax.lax.scan(body, (carry, alive), keys)
    return carry, traj, valid
