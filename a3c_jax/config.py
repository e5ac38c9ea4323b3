"""The frozen, validated training configuration."""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

from a3c_jax import presets

OPTIMIZERS = ("adam", "rmsprop")
ACTIVATIONS = ("tanh", "relu")
TORSOS = ("auto", "mlp", "cnn")
PARALLEL_BACKENDS = ("shard_map", "pmap")


class ConfigError(ValueError):
    """A configuration that cannot train; raised before anything is compiled."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a training run. Static: closed over, never traced.

    Fields left as `None` are resolved in `__post_init__` from `a3c_jax.presets` (environment
    preset, then the algorithm's defaults, then global defaults), so every field of a constructed
    `Config` holds a concrete value. Invalid values raise `ConfigError` naming the field.
    """

    env_name: str = "CartPole-v1"
    algo: str = "a2c"
    # Data collection.
    num_envs: int | None = None  # environments stepped in parallel (vmapped)
    n_steps: int | None = None  # rollout length T per update (episodic algorithms: unused)
    total_timesteps: int | None = None  # environment-step budget (num_envs * n_steps per update)
    # Returns.
    gamma: float | None = None
    gae_lambda: float | None = None  # 1: plain n-step returns; 0: one-step TD
    reward_scale: float | None = None  # rewards are multiplied by this for learning only
    # Optimisation.
    lr: float | None = None
    optimizer: str | None = None  # "adam" or "rmsprop" (the A3C paper's choice)
    optimizer_eps: float | None = None
    rmsprop_decay: float | None = None
    anneal_lr: bool | None = None  # linear decay of the learning rate to 0 over the run
    max_grad_norm: float | None = None  # global-norm clipping; math.inf disables it
    # Loss.
    ent_coef: float | None = None
    vf_coef: float | None = None
    normalize_advantages: bool | None = None
    # Replay (ac_replay only).
    replay_capacity: int | None = None  # transitions kept in the circular buffer
    replay_batch_size: int | None = None  # transitions per critic minibatch
    # Networks.
    torso: str | None = None  # "mlp", "cnn" or "auto" (cnn for [H, W, C] observations)
    hidden_sizes: tuple[int, ...] | None = None  # MLP widths (for the cnn: dense after the conv)
    activation: str | None = None
    shared_torso: bool | None = None  # False: separate actor and critic networks (the decks')
    cnn_channels: int | None = None
    # Gradient parallelism (a3c_jax.parallel): the environments split over devices, one gradient
    # step averaged over them. 1 (the default): one device, no device axis. "all": every device
    # of every process, counted when the trainer is built.
    num_devices: int | str | None = None
    parallel_backend: str | None = None  # "shard_map" or "pmap"
    # Asynchronous training (algo="a3c" only, with `a3c_jax.train_async`).
    num_workers: int | None = None  # actor-learner threads, each with its own num_envs environments

    def __post_init__(self) -> None:
        if self.algo not in presets.ALGORITHM_DEFAULTS:
            raise ConfigError(
                f"algo={self.algo!r} is not an algorithm here; choose one of "
                f"{sorted(presets.ALGORITHM_DEFAULTS)}"
            )
        _check_env_name(self.env_name)
        layers = (
            presets.ENV_PRESETS.get((self.env_name, self.algo), {}),
            presets.ALGORITHM_DEFAULTS[self.algo],
            presets.DEFAULTS,
        )
        for field in dataclasses.fields(self):
            if getattr(self, field.name) is None:
                value = next(layer[field.name] for layer in layers if field.name in layer)
                object.__setattr__(self, field.name, value)
        if isinstance(self.hidden_sizes, list):
            object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        self._validate()

    @property
    def batch_size(self) -> int:
        """Environment steps per update: `num_envs * n_steps` (for `a3c`: one worker's update)."""
        return self.num_envs * self.n_steps

    @property
    def episodic(self) -> bool:
        """True for algorithms whose updates play whole episodes (`da2c`, `ac_replay`), so that
        the environment steps of an update vary; `n_steps` is then unused."""
        return self.algo in presets.EPISODIC_ALGORITHMS

    @property
    def num_updates(self) -> int:
        """Gradient updates in the run: `total_timesteps // batch_size` (for `a3c`: all workers'
        updates together). For episodic algorithms, an upper bound (every environment plays at
        least one step per update): their run stops once `total_timesteps` environment steps are
        spent."""
        if self.episodic:
            return -(-self.total_timesteps // self.num_envs)
        return self.total_timesteps // self.batch_size

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def _validate(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive integer")

        def in_range(name: str, low: float, high: float, low_open: bool = False) -> None:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (low < value if low_open else low <= value) and value <= high
            if not ok:
                bracket = "(" if low_open else "["
                raise ConfigError(f"{name}={value!r} must lie in {bracket}{low}, {high}]")

        def one_of(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be one of {allowed}")

        for name in (
            "num_envs",
            "n_steps",
            "total_timesteps",
            "cnn_channels",
            "replay_capacity",
            "replay_batch_size",
            "num_workers",
        ):
            positive_int(name)
        in_range("gamma", 0.0, 1.0)
        in_range("gae_lambda", 0.0, 1.0)
        for name in ("lr", "optimizer_eps", "reward_scale"):
            in_range(name, 0.0, math.inf, low_open=True)
        in_range("max_grad_norm", 0.0, math.inf, low_open=True)
        in_range("rmsprop_decay", 0.0, 1.0, low_open=True)
        for name in ("ent_coef", "vf_coef"):
            in_range(name, 0.0, math.inf)
        one_of("optimizer", OPTIMIZERS)
        one_of("activation", ACTIVATIONS)
        one_of("torso", TORSOS)
        one_of("parallel_backend", PARALLEL_BACKENDS)
        devices = self.num_devices
        if devices != "all":
            if isinstance(devices, bool) or not isinstance(devices, int) or devices <= 0:
                raise ConfigError(f"num_devices={devices!r} must be a positive integer or 'all'")
            if self.num_envs % devices:
                raise ConfigError(
                    f"num_envs={self.num_envs} is not divisible by num_devices={devices}: each "
                    f"device runs num_envs / num_devices environments; use a multiple of {devices}"
                )
        for name in ("anneal_lr", "normalize_advantages", "shared_torso"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be True or False")
        sizes = self.hidden_sizes
        if not (
            isinstance(sizes, tuple)
            and sizes
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
        ):
            raise ConfigError(f"hidden_sizes={sizes!r} must be a non-empty tuple of positive ints")
        if self.episodic and self.total_timesteps < self.num_envs:
            raise ConfigError(
                f"total_timesteps={self.total_timesteps} is smaller than one step in each of "
                f"num_envs={self.num_envs} environments"
            )
        if not self.episodic and self.total_timesteps < self.batch_size:
            raise ConfigError(
                f"total_timesteps={self.total_timesteps} is smaller than one rollout "
                f"(num_envs * n_steps = {self.num_envs} * {self.n_steps} = {self.batch_size})"
            )
        if self.num_workers != 1 and self.algo not in presets.ASYNCHRONOUS_ALGORITHMS:
            raise ConfigError(
                f"num_workers={self.num_workers} is only meaningful with an asynchronous algorithm "
                f"({', '.join(map(repr, presets.ASYNCHRONOUS_ALGORITHMS))}); algo={self.algo!r} is "
                "synchronous: it runs num_envs environments in parallel under one learner"
            )
        if self.num_updates < self.num_workers:
            raise ConfigError(
                f"total_timesteps={self.total_timesteps} buys {self.num_updates} updates of "
                f"num_envs * n_steps = {self.batch_size} steps, fewer than num_workers="
                f"{self.num_workers}: some workers would never apply a gradient"
            )
        # Environment-dependent checks (cheap: gymnax environments are plain Python objects).
        from a3c_jax import envs

        spec = envs.make_env(self.env_name)
        if self.torso == "cnn" and len(spec.obs_shape) != 3:
            raise ConfigError(
                f"torso='cnn' needs image observations [H, W, C]; {self.env_name} observes "
                f"shape {spec.obs_shape}: use torso='mlp' or 'auto'"
            )


def _check_env_name(env_name: str) -> None:
    import gymnax

    known = list(gymnax.registered_envs)
    if env_name not in known:
        close = difflib.get_close_matches(env_name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"env_name={env_name!r} is not a registered gymnax environment{hint} "
            f"(known: {', '.join(known)})"
        )
