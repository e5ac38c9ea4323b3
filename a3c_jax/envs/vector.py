"""Environments as batches: creation by the backend table, vectorised reset and step, episode
statistics.

gymnax auto-resets: `env.step` returns the first observation of the next episode when one ends,
and keeps the observation the action led to in `info["final_observation"]`. `step` below returns
that one as `Transition.next_obs`, and keeps termination and truncation apart, so that a truncated
episode can bootstrap from the critic's value of the state it was cut off in.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from a3c_jax.core.types import EnvCarry, PRNGKey, Transition
from a3c_jax.envs.backends import backend
from a3c_jax.envs.spec import EnvSpec, clip_action


@functools.cache
def make_env(env_name: str, **options: Any) -> EnvSpec:
    """Creates (once per name and options) the environment `env_name` and describes its spaces:
    gymnax's by default, `"gymnasium:<id>"` a host environment, `"brax:<name>"` a Brax one made
    with the backend `options` (`Config.env_options`)."""
    return importlib.import_module(backend(env_name)).make_spec(env_name, **options)


def _obs(x: jax.Array) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def env_keys(key: PRNGKey, env_id: jax.Array) -> jax.Array:
    """One key per environment: `fold_in(key, env_id)`, `[B]` keys (raw: `[B, 2]`) for `[B]` ids.

    An environment's random draws depend on the shared `key` and on its own global index alone,
    not on how many environments share its batch: a batch split over devices (each with its slice
    of `env_id`) plays exactly as the whole batch would on one device.
    """
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, env_id)


def reset(spec: EnvSpec, key: PRNGKey, num_envs: int, first_env: int | jax.Array = 0) -> EnvCarry:
    """Resets `num_envs` environments numbered `first_env, ..., first_env + num_envs - 1`, each
    from its own key `env_keys(key, env_id)` (a device holding a slice of a larger batch passes the
    index of its first environment)."""
    env_id = jnp.arange(num_envs, dtype=jnp.int32) + jnp.asarray(first_env, jnp.int32)
    return _reset_ids(spec, key, env_id)


def restart(spec: EnvSpec, key: PRNGKey, carry: EnvCarry) -> EnvCarry:
    """Fresh episodes in the environments of `carry` (the same `env_id`s), from `key`; the
    wrappers keep their statistics, the policy its hidden state's shape (reset at each
    episode's first step by the networks)."""
    fresh = _reset_ids(spec, key, carry.env_id, carry.wrapper_state)
    return fresh._replace(core_state=carry.core_state)


def _reset_ids(
    spec: EnvSpec, key: PRNGKey, env_id: jax.Array, wrapper_state: Any = None
) -> EnvCarry:
    obs, env_state = jax.vmap(spec.env.reset, in_axes=(0, None))(
        env_keys(key, env_id), spec.env_params
    )
    obs = _obs(obs)
    if spec.wrapper is not None:
        wrapper_state, obs = spec.wrapper.reset(wrapper_state, obs)
    zeros = jnp.zeros(env_id.shape, jnp.float32)
    ints = jnp.zeros(env_id.shape, jnp.int32)
    return EnvCarry(
        env_state, obs, zeros, ints, env_id, () if spec.wrapper is None else wrapper_state
    )


class StepDraws(NamedTuple):
    """What `B` gymnax environments draw at random in one step, drawn ahead of it (`step_draws`):
    gymnax's `Environment.step` splits each environment's key into a key for `step_env` and one
    for the `reset_env` of its auto-reset, and computes that reset at every step."""

    key: jax.Array  # [B] each environment's key for `step_env` (raw: [B, 2])
    reset_obs: Any  # [B, O...] the first observation of the episode an auto-reset would start
    reset_state: Any  # [B] the environment state it would start from


def steps_as_gymnax(spec: EnvSpec) -> bool:
    """Whether `spec`'s environment steps with gymnax's own `Environment.step` (not DeepSea,
    which keeps statistics over its resets, nor a Brax or host environment): then its draws can
    be made ahead (`step_draws`)."""
    base = sys.modules.get("gymnax.environments.environment")
    return base is not None and type(spec.env).step is base.Environment.step


def step_draws(spec: EnvSpec, keys: jax.Array) -> StepDraws | jax.Array:
    """The draws of one step of `B` environments from their step keys `keys` `[B]` (raw `[B, 2]`),
    as gymnax's `Environment.step` would make them (the same splits, the same resets, bitwise).

    Made for a whole rollout at once (vmapped over its steps) they cost one hashing pass and
    one batch of resets instead of one of each at every step (on the CPU backend each hashing
    pass is a small XLA loop, costly to run at every step). Environments that do not step as
    gymnax does (`steps_as_gymnax`) get their keys back, which `step_each` hands to their own
    `step`.
    """
    if not steps_as_gymnax(spec):
        return keys

    def one(key: PRNGKey) -> StepDraws:
        key_step, key_reset = jax.random.split(key)
        obs, state = spec.env.reset_env(key_reset, spec.env_params)
        return StepDraws(key_step, obs, state)

    return jax.vmap(one)(keys)


@functools.partial(jax.jit, static_argnums=0)
def _step_drawn(
    env: Any, draws: StepDraws, state: Any, action: jax.Array, params: Any
) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
    """gymnax's `Environment.step` of one environment with its draws made ahead: the same
    step, truncation and auto-reset selection, jitted as gymnax's is (so XLA simplifies and
    fuses it alike: the same float results, bitwise)."""
    obs_st, state_st, reward, terminated, info = env.step_env(draws.key, state, action, params)
    truncated = env.is_truncated(state_st, params)
    done = jnp.logical_or(terminated, truncated)
    state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), draws.reset_state, state_st)
    obs = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), draws.reset_obs, obs_st)
    info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_st}
    return obs, state, reward, terminated, truncated, info


def step(
    spec: EnvSpec, key: PRNGKey, carry: EnvCarry, action: jax.Array
) -> tuple[EnvCarry, Transition]:
    """Steps `B` environments with `action` `[B, A...]`; auto-resets finished episodes. Each
    environment draws from its own key, `env_keys(key, carry.env_id)` (see `step_each`)."""
    return step_each(spec, env_keys(key, carry.env_id), carry, action)


def step_each(
    spec: EnvSpec, keys: StepDraws | jax.Array, carry: EnvCarry, action: jax.Array
) -> tuple[EnvCarry, Transition]:
    """`step` with the environments' own keys given, `[B]` (raw: `[B, 2]`), or their draws made
    ahead (`step_draws`): for callers that draw many steps' keys at once
    (`rollout.rollout_keys`, `rollout.rollout_draws`).

    Returns the new carry and the `Transition` of this step, whose `episode_return` and
    `episode_length` hold the finished episode's totals where `done`.
    """
    env_action = clip_action(spec, action)
    env_step = (
        functools.partial(_step_drawn, spec.env) if isinstance(keys, StepDraws) else spec.env.step
    )
    obs, env_state, reward, terminated, truncated, info = jax.vmap(
        env_step, in_axes=(0, 0, 0, None)
    )(keys, carry.env_state, env_action, spec.env_params)
    reward = jnp.asarray(reward, jnp.float32)
    terminated = jnp.asarray(terminated, bool)
    truncated = jnp.asarray(truncated, bool) & ~terminated
    done = terminated | truncated
    episode_return = carry.episode_return + reward
    episode_length = carry.episode_length + 1
    transition = Transition(
        obs=carry.obs,
        action=action,
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        next_obs=_obs(info["final_observation"]),
        episode_return=episode_return,
        episode_length=episode_length,
    )
    obs, wrapper_state = _obs(obs), carry.wrapper_state
    if spec.wrapper is not None:  # after the episode statistics: those stay the raw returns
        wrapper_state, transition, obs = spec.wrapper.step(wrapper_state, transition, obs)
    new_carry = EnvCarry(
        env_state=env_state,
        obs=obs,
        episode_return=jnp.where(done, 0.0, episode_return),
        episode_length=jnp.where(done, 0, episode_length),
        env_id=carry.env_id,
        wrapper_state=wrapper_state,
        core_state=carry.core_state,
    )
    return new_carry, transition
