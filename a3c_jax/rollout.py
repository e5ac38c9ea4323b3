"""The one rollout every algorithm uses: `lax.scan` over vmapped environment steps."""

from __future__ import annotations

from collections.abc import Callable

import jax

from a3c_jax import envs
from a3c_jax.networks import Networks
from a3c_jax.types import EnvCarry, Params, PRNGKey, Transition

# (params, obs [B, O...], key) -> action [B, A...]
PolicyFn = Callable[[Params, jax.Array, PRNGKey], jax.Array]


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
        act_key, env_key = jax.random.split(step_key)
        action = policy_fn(params, carry.obs, act_key)
        return envs.step(spec, env_key, carry, action)

    return jax.lax.scan(body, carry, jax.random.split(key, num_steps))


def sampling_policy(networks: Networks) -> PolicyFn:
    """The behaviour policy of every on-policy algorithm here: `a ~ π(·|obs)`."""

    def policy_fn(params: Params, obs: jax.Array, key: PRNGKey) -> jax.Array:
        return networks.policy(params, obs).sample(key)

    return policy_fn
