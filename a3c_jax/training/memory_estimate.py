"""A rough estimate of the memory a run's update needs, checked before anything compiles.

An update holds its rollout `[T, B]` (observations, and the rest of each transition) and, for
the gradient, the networks' activations at every step of it; that grows with
`num_envs * n_steps` and is what runs out first when `num_envs` is set far too high. The
estimate is deliberately rough (a lower bound of what XLA allocates): it refuses only settings
that cannot fit, with a figure, instead of a long `RESOURCE_EXHAUSTED` from inside XLA.
"""

from __future__ import annotations

import itertools
import math
import os

from a3c_jax.config import Config, ConfigError

BYTES = 4  # float32 / int32


def _parts(config: Config, num_seeds: int = 1) -> dict[str, int]:
    """About the bytes of what an update holds, by the fields that size it: the rollout `[T, B]`
    and its activations (`num_envs`, `n_steps`, `hidden_sizes`, `cnn_channels`), the networks'
    parameters with their gradient and optimiser state (`hidden_sizes`), and a replay buffer
    (`replay_capacity`, for the algorithms that keep one)."""
    from a3c_jax import envs

    spec = envs.make_env(config.env_name)
    obs = math.prod(spec.obs_shape)
    towers = 1 if config.shared_torso else 2
    hidden = sum(config.hidden_sizes) * towers
    if len(spec.obs_shape) == 3 and config.torso != "mlp":
        hidden += config.cnn_channels * math.prod(spec.obs_shape[:2])
    # observation and next observation, ~3 floats per hidden unit (pre-, post-activation and its
    # gradient), and a dozen scalars per transition (action, reward, done, value, log-prob, ...)
    per_step = BYTES * (2 * obs + 3 * hidden + 12)
    copies = num_seeds * config.num_workers
    layers = [obs, *config.hidden_sizes]
    params = towers * sum(a * b for a, b in itertools.pairwise(layers))
    parts = {
        "rollout": per_step * config.batch_size * copies,
        "network": BYTES * 4 * params * num_seeds,  # parameters, gradient, two moments
    }
    if config.algo == "ac_replay":
        parts["replay"] = BYTES * (2 * obs + 4) * config.replay_capacity * num_seeds
    return parts


def rollout_bytes(config: Config, num_seeds: int = 1) -> int:
    """About the bytes of one update's rollout `[T, B]` and its activations for the gradient,
    over `num_seeds` seeds (and, for `a3c`, all workers at once)."""
    return _parts(config, num_seeds)["rollout"]


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
    """Raises `ConfigError` when what an update holds (`_parts`) alone exceeds `memory_limit`,
    naming the fields of its largest part (host environments: not checked, their memory is
    their own)."""
    if config.trainer == "host":
        return
    parts, have = _parts(config, num_seeds), memory_limit()
    need = sum(parts.values())
    if have is None or need <= have:
        return
    seeds = f" x {num_seeds} seeds" if num_seeds > 1 else ""
    largest = max(parts, key=parts.get)
    if largest == "rollout":
        what = f"num_envs={config.num_envs} with n_steps={config.n_steps}{seeds}"
        advice = "lower num_envs (or n_steps)"
        if 3 * sum(config.hidden_sizes) > 2 * 12 and config.batch_size <= 4096:
            what = f"hidden_sizes={config.hidden_sizes} over a rollout of {config.batch_size}"
            advice = "lower hidden_sizes (or cnn_channels, num_envs)"
    elif largest == "network":
        what = f"hidden_sizes={config.hidden_sizes}{seeds} (the networks' parameters)"
        advice = "lower hidden_sizes"
    else:
        what = f"replay_capacity={config.replay_capacity}{seeds} (the replay buffer)"
        advice = "lower replay_capacity"
    raise ConfigError(
        f"{what} needs at least {need / 2**30:,.1f} GiB for one update, more than the "
        f"{have / 2**30:,.1f} GiB of memory here: {advice}"
    )
