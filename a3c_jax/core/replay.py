"""A fixed-capacity circular replay buffer in device memory, as a pytree (for `ac_replay`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from a3c_jax.core.types import PRNGKey


class Experience(NamedTuple):
    """One transition for one-step TD learning of the critic (no leading axis, or `[N]`)."""

    obs: jax.Array  # [O...]
    reward: jax.Array  # []
    terminated: jax.Array  # [] bool: no bootstrap from next_obs
    next_obs: jax.Array  # [O...] the observation before any auto-reset


class ReplayBuffer(NamedTuple):
    """`data` leaves are `[capacity, ...]`; slots `[0, size)` hold experience, and the next write
    goes to `position` (the oldest slot once full)."""

    data: Experience
    position: jax.Array  # [] int32
    size: jax.Array  # [] int32


def replay_init(obs_shape: tuple[int, ...], capacity: int) -> ReplayBuffer:
    """An empty buffer for `capacity` experiences with observations of `obs_shape`."""
    data = Experience(
        obs=jnp.zeros((capacity, *obs_shape), jnp.float32),
        reward=jnp.zeros((capacity,), jnp.float32),
        terminated=jnp.zeros((capacity,), bool),
        next_obs=jnp.zeros((capacity, *obs_shape), jnp.float32),
    )
    zero = jnp.zeros((), jnp.int32)
    return ReplayBuffer(data, zero, zero)


def replay_add(buffer: ReplayBuffer, items: Experience, valid: jax.Array) -> ReplayBuffer:
    """Writes the `valid` rows of `items` (leaves `[N, ...]`, `valid` `[N]` bool) in order,
    overwriting the oldest experience once the buffer is full. Invalid rows are skipped."""
    capacity = buffer.data.reward.shape[0]
    valid = valid.astype(jnp.int32)
    offset = jnp.cumsum(valid) - valid  # rank of each valid row among the valid rows
    count = jnp.sum(valid)
    # Invalid rows, and valid rows that a later row of the same call would overwrite anyway
    # (more than `capacity` new rows), go to index `capacity`: out of bounds, dropped.
    keep = (valid > 0) & (offset >= count - capacity)
    index = jnp.where(keep, (buffer.position + offset) % capacity, capacity)
    data = jax.tree.map(
        lambda d, x: d.at[index].set(x.astype(d.dtype), mode="drop"), buffer.data, items
    )
    return ReplayBuffer(
        data,
        (buffer.position + count) % capacity,
        jnp.minimum(buffer.size + count, capacity),
    )


def replay_sample(buffer: ReplayBuffer, key: PRNGKey, batch_size: int) -> Experience:
    """`batch_size` experiences drawn uniformly, with replacement, from the filled slots
    (leaves `[batch_size, ...]`). The buffer must hold at least one experience."""
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[index], buffer.data)
