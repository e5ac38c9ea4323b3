"""Whole episodes on a host environment with trained parameters (`a3c_jax.evaluate` on
`"gymnasium:<id>"` names)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np

from a3c_jax import envs
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.config import Config
from a3c_jax.core.types import Params, PRNGKey
from a3c_jax.workers import host_rollout

# Episodes are played this many at a time, one per environment of a sync vector environment.
MAX_PARALLEL_EPISODES = 16
# Environments without a time limit are cut off here.
MAX_STEPS = 100_000


@functools.lru_cache(maxsize=32)
def _act(config: Config, greedy: bool) -> Callable[[Params, jax.Array, PRNGKey], jax.Array]:
    """`act(params, obs [B, O...], key) -> actions [B, A...]`, jitted: every environment its own
    key, split from `key`."""
    spec = envs.make_env(config.env_name)
    act = host_rollout.make_act(spec, make_networks(config, spec), greedy)

    def act_key(params: Params, obs: jax.Array, key: PRNGKey) -> jax.Array:
        return act(params, obs, jax.random.split(key, obs.shape[0]))

    return jax.jit(act_key)


def evaluate(
    config: Config, params: Params, key: PRNGKey, num_episodes: int = 100, greedy: bool = True
) -> np.ndarray:
    """Undiscounted returns `[num_episodes]` of whole episodes played with `params` on the host
    environment of `config`, up to `MAX_PARALLEL_EPISODES` at a time in a sync vector environment
    seeded from `key`. Each environment plays its share of the episodes in turn (a fixed share,
    so short episodes are not favoured); an episode still running after the time limit (or
    `MAX_STEPS` without one) counts with its return so far."""
    if num_episodes <= 0:
        raise ValueError(f"num_episodes={num_episodes} must be positive")
    spec = envs.make_env(config.env_name)
    act = _act(config, greedy)
    num_envs = min(num_episodes, MAX_PARALLEL_EPISODES)
    quota = np.bincount(np.arange(num_episodes) % num_envs, minlength=num_envs)
    returns: list[list[float]] = [[] for _ in range(num_envs)]
    seed_key, key = jax.random.split(key)
    host_envs = host_rollout.HostEnvs(spec, num_envs, "sync")
    try:
        obs = host_envs.reset(host_rollout.seed_from_key(seed_key))
        running = np.zeros(num_envs, np.float32)
        max_steps = (spec.max_episode_steps or MAX_STEPS) * int(quota.max())
        for t in range(max_steps):
            if all(len(r) >= q for r, q in zip(returns, quota, strict=True)):
                break
            action = np.asarray(act(params, obs, jax.random.fold_in(key, t)))
            obs, reward, terminated, truncated, _ = host_envs.step(action)
            running += reward
            for i in np.flatnonzero(terminated | truncated):
                returns[i].append(float(running[i]))
                running[i] = 0.0
        for i in range(num_envs):  # episodes cut off by max_steps
            if len(returns[i]) < quota[i]:
                returns[i].append(float(running[i]))
    finally:
        host_envs.close()
    return np.asarray([r for i in range(num_envs) for r in returns[i][: quota[i]]], np.float32)[
        :num_episodes
    ]
