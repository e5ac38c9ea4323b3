"""The environment layer over gymnax: creation, vectorisation, episode statistics.

gymnax auto-resets: `env.step` returns the first observation of the next episode when one ends,
and keeps the observation the action led to in `info["final_observation"]`. `step` below returns
that one as `Transition.next_obs`, and keeps termination and truncation apart, so that a truncated
episode can bootstrap from the critic's value of the state it was cut off in.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from a3c_jax.types import EnvCarry, PRNGKey, Transition


@dataclasses.dataclass(frozen=True, eq=False)
class EnvSpec:
    """A gymnax environment with what the networks and losses need to know about it."""

    name: str
    env: Any
    env_params: Any
    obs_shape: tuple[int, ...]
    discrete: bool
    num_actions: int  # discrete: number of actions; continuous: action dimension
    action_low: Any = None  # continuous only: [d] bounds, actions are clipped to them
    action_high: Any = None
    max_episode_steps: int = 0
    # a3c_jax.wrappers.VecWrapper applied to every reset and step (obs_shape is its output's)
    wrapper: Any = None

    @property
    def action_shape(self) -> tuple[int, ...]:
        return () if self.discrete else (self.num_actions,)


@functools.cache
def make_env(env_name: str) -> EnvSpec:
    """Creates (once per name) the gymnax environment `env_name` and describes its spaces."""
    env, env_params = gymnax.make(env_name)
    action_space = env.action_space(env_params)
    obs_shape = tuple(env.observation_space(env_params).shape)
    max_steps = int(getattr(env_params, "max_steps_in_episode", 0))
    if isinstance(action_space, spaces.Discrete):
        return EnvSpec(
            env_name,
            env,
            env_params,
            obs_shape,
            True,
            int(action_space.n),
            max_episode_steps=max_steps,
        )
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        low = jnp.broadcast_to(jnp.asarray(action_space.low, jnp.float32), action_space.shape)
        high = jnp.broadcast_to(jnp.asarray(action_space.high, jnp.float32), action_space.shape)
        return EnvSpec(
            env_name,
            env,
            env_params,
            obs_shape,
            False,
            int(action_space.shape[0]),
            action_low=low,
            action_high=high,
            max_episode_steps=max_steps,
        )
    raise ValueError(
        f"{env_name}: action space {action_space!r} is neither Discrete nor a 1-D Box; "
        "a3c_jax supports categorical and diagonal-Gaussian policies only"
    )


def _obs(x: jax.Array) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def clip_action(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """Clips continuous actions `[..., d]` to the action space's bounds (discrete: unchanged)."""
    if spec.discrete:
        return action
    low = jnp.broadcast_to(spec.action_low, action.shape)
    high = jnp.broadcast_to(spec.action_high, action.shape)
    return jnp.clip(action, low, high)


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
    wrappers keep their statistics."""
    return _reset_ids(spec, key, carry.env_id, carry.wrapper_state)


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


def step(
    spec: EnvSpec, key: PRNGKey, carry: EnvCarry, action: jax.Array
) -> tuple[EnvCarry, Transition]:
    """Steps `B` environments with `action` `[B, A...]`; auto-resets finished episodes. Each
    environment draws from its own key, `env_keys(key, carry.env_id)` (see `step_each`)."""
    return step_each(spec, env_keys(key, carry.env_id), carry, action)


def step_each(
    spec: EnvSpec, keys: jax.Array, carry: EnvCarry, action: jax.Array
) -> tuple[EnvCarry, Transition]:
    """`step` with the environments' own keys given, `[B]` (raw: `[B, 2]`): for callers that
    draw many steps' keys at once (`rollout.rollout_keys`).

    Returns the new carry and the `Transition` of this step, whose `episode_return` and
    `episode_length` hold the finished episode's totals where `done`.
    """
    env_action = clip_action(spec, action)
    obs, env_state, reward, terminated, truncated, info = jax.vmap(
        spec.env.step, in_axes=(0, 0, 0, None)
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
    )
    return new_carry, transition
