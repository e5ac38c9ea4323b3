"""What the networks and losses need to know about an environment, whichever backend steps it."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


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
    # a3c_jax.envs.wrappers.VecWrapper applied to every reset and step (obs_shape is its output's)
    wrapper: Any = None

    @property
    def action_shape(self) -> tuple[int, ...]:
        return () if self.discrete else (self.num_actions,)


def describe_actions(spec: EnvSpec, action_space: Any, xp: Any) -> EnvSpec:
    """`spec` (with `discrete` set) completed from its action space: the number of actions of a
    `Discrete` space, or the dimension and float32 bounds (arrays of `xp`: `jnp` for gymnax,
    `np` for host environments) of a 1-D `Box`. Shared by gymnax and `a3c_jax.host`."""
    if spec.discrete:
        return dataclasses.replace(spec, num_actions=int(action_space.n))
    shape = action_space.shape
    low, high = (
        xp.array(xp.broadcast_to(xp.asarray(b, xp.float32), shape))
        for b in (action_space.low, action_space.high)
    )
    return dataclasses.replace(spec, num_actions=int(shape[0]), action_low=low, action_high=high)


def clip_action(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """Clips continuous actions `[..., d]` to the action space's bounds (discrete: unchanged)."""
    if spec.discrete:
        return action
    low = jnp.broadcast_to(spec.action_low, action.shape)
    high = jnp.broadcast_to(spec.action_high, action.shape)
    return jnp.clip(action, low, high)
