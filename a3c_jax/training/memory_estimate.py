"""A rough estimate of the memory a run's update needs, checked before anything compiles.

An update holds its rollout `[T, B]` (observations, and the rest of each transition) and, for
the gradient, the networks' activations at every step of it; that grows with
`num_envs * n_steps` and is what runs out first when `num_envs` is set far too high. The
estimate is deliberately rough (a lower bound of what XLA allocates): it refuses only settings
that cannot fit, with a figure, instead of a long `RESOURCE_EXHAUSTED` from inside XLA.
"""

from __future__ import annotations

import math
import os

from a3c_jax.config import Config, ConfigError

BYTES = 4  # float32 / int32


def rollout_bytes(config: Config, num_seeds: int = 1) -> int:
    """About the bytes of one update's rollout `[T, B]` and its activations for the gradient,
    over `num_seeds` seeds (and, for `a3c`, all workers at once)."""
    from a3c_jax import envs

    spec = envs.make_env(config.env_name)
    obs = math.prod(spec.obs_shape)
    hidden = sum(config.hidden_sizes) * (1 if config.shared_torso else 2)
    if len(spec.obs_shape) == 3 and config.torso != "mlp":
        hidden += config.cnn_channels * math.prod(spec.obs_shape[:2])
    # observation and next observation, ~3 floats per hidden unit (pre-, post-activation and its
    # gradient), and a dozen scalars per transition (action, reward, done, value, log-prob, ...)
    per_step = BYTES * (2 * obs + 3 * hidden + 12)
    return per_step * config.batch_size * num_seeds * config.num_workers


def memory_limit() -> int | None:
    """The bytes of the device a run uses: an accelerator's own memory where JAX reports it,
    else the machine's physical memory (None if unknown)."""
    import jax

    try:  # this process's own device (another process's cannot be asked)
        stats = jax.local_devices()[0].memory_stats()
    except (RuntimeError, AttributeError):  # a backend that keeps no statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(config: Config, num_seeds: int = 1) -> None:
    """Raises `ConfigError` naming `num_envs` and `n_steps` when `rollout_bytes` alone exceeds
    `memory_limit` (host environments: not checked, their memory is their own)."""
    if config.trainer == "host":
        return
    need, have = rollout_bytes(config, num_seeds), memory_limit()
    if have is None or need <= have:
        return
    seeds = f" x {num_seeds} seeds" if num_seeds > 1 else ""
    raise ConfigError(
        f"num_envs={config.num_envs} with n_steps={config.n_steps}{seeds} needs at least "
        f"{need / 2**30:,.1f} GiB for one update's rollout and gradient, more than the "
        f"{have / 2**30:,.1f} GiB of memory here: lower num_envs (or n_steps)"
    )
