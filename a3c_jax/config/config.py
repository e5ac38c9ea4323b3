"""The frozen, validated training configuration."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from a3c_jax.config import presets, registry
from a3c_jax.envs import backends
from a3c_jax.errors import ConfigError

OPTIMIZERS = ("adam", "rmsprop")
ACTIVATIONS = ("tanh", "relu")
TORSOS = ("auto", "mlp", "cnn", "nature_cnn", "a3c_cnn")
PARALLEL_BACKENDS = ("shard_map", "pmap")
MAX_TIMESTEPS = 2**31  # the jitted loop's step counters are int32
VECTOR_ENVS = ("sync", "async")


# Fields that only mean something for one kind of action space: name -> (kind, an example
# value for the tests). Setting one for an environment of the other kind raises `ConfigError`.
ACTION_SPACE_FIELDS: dict[str, tuple[str, Any]] = {
    "log_std_init": ("continuous", -1.0),
    "action_bounding": ("continuous", "tanh"),
    "state_dependent_std": ("continuous", True),
    "use_sde": ("continuous", True),
    "action_bound_coef": ("continuous", 0.1),
}
ACTION_BOUNDINGS = ("clip", "tanh")
RECURRENT_CELLS = ("lstm", "gru")
# Config fields of the environment wrappers (a3c_jax.envs.wrappers) and their neutral values.
WRAPPER_FIELDS: dict[str, Any] = {
    "mask_velocity": False,
    "frame_stack": 1,
    "normalize_obs": False,
    "normalize_reward": False,
}


NATURE_CNN_MIN_SIZE = 36  # the smallest image the three strided convolutions leave a pixel of
# The smallest image each convolutional torso takes (its strided convolutions leave a pixel).
CNN_MIN_SIZES = {"cnn": 3, "nature_cnn": NATURE_CNN_MIN_SIZE, "a3c_cnn": 20}


def torso_kind(torso: str, obs_shape: Sequence[int]) -> str:
    """What `Config.torso` resolves to for observations of `obs_shape`: "auto" takes the MLP
    for vectors, the Nature CNN for images of at least `NATURE_CNN_MIN_SIZE` pixels a side
    (Atari frames) and the 3x3 CNN for smaller ones (MinAtar's 10x10)."""
    if torso != "auto":
        return torso
    if len(obs_shape) != 3:
        return "mlp"
    return "nature_cnn" if min(obs_shape[:2]) >= NATURE_CNN_MIN_SIZE else "cnn"


NORMALIZER_FIELDS = ("normalize_obs", "normalize_reward")
# The Config fields that configure a Brax environment -> the option of `envs.make_env` each sets.
BRAX_FIELDS = {
    "brax_backend": "backend",
    "episode_length": "episode_length",
    "action_repeat": "action_repeat",
}
# Which trainer runs a Config (`Config.trainer`; `a3c_jax.api.train` dispatches on it):
# "jit": the pure jitted program (`a3c_jax.make_train`), gymnax and Brax environments;
# "threads": asynchronous actor-learner threads around a parameter store (`a3c`);
# "host": one learner stepping host environments (Gymnasium, Atari) in a Python loop;
# "ray": asynchronous workers as Ray actors (processes, on one machine or many) around one learner
# (`workers.ray_backend`), chosen by `workers="ray"`.
TRAINERS = ("jit", "threads", "host", "ray")
# Where an asynchronous algorithm's workers run (`Config.workers`): threads of this process, or
# Ray actors (`pip install "a3c_jax[ray]"`).
WORKER_BACKENDS = ("threads", "ray")
# What Ray workers send their learner (`Config.parallelism`, the second deck's two choices):
# "gradients" (A3C: each worker differentiates its own rollout, the learner only applies) or
# "data" (workers send trajectories with their behaviour policy's log-probabilities, the learner
# differentiates them, corrected for the policy lag with V-trace).
PARALLELISMS = ("gradients", "data")


# The fields the training program reads only through arithmetic: a sweep (`a3c_jax.sweeps.grid`)
# makes them traced inputs of one compiled program. Every other field changes shapes or the program.
TRACED_FIELDS: tuple[str, ...] = (
    "lr",
    "ent_coef",
    "vf_coef",
    "gamma",
    "gae_lambda",
    "max_grad_norm",
    "reward_scale",
    "rmsprop_decay",
    "optimizer_eps",
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a training run. Static: closed over, never traced.

    Fields left as `None` are resolved in `__post_init__` from `a3c_jax.config.presets` (environment
    preset, then the algorithm's defaults, then global defaults), so every field of a constructed
    `Config` holds a concrete value. Invalid values raise `ConfigError` naming the field.
    """

    env_name: str = "CartPole-v1"  # a gymnax name, "brax:<name>" or "gymnasium:<id>"
    algo: str = "a2c"  # an entry of a3c_jax.config.registry.REGISTRY
    # Data collection.
    num_envs: int | None = None  # environments stepped in parallel (vmapped)
    n_steps: int | None = None  # rollout length T per update (episodic algorithms: unused)
    total_timesteps: int | None = None  # environment-step budget (num_envs * n_steps per update)
    # Returns.
    gamma: float | None = None  # discount factor γ
    gae_lambda: float | None = None  # 1: plain n-step returns; 0: one-step TD
    reward_scale: float | None = None  # rewards are multiplied by this for learning only
    # Optimisation.
    lr: float | None = None  # learning rate (the start of the decay with anneal_lr)
    optimizer: str | None = None  # "adam" or "rmsprop" (the A3C paper's choice)
    optimizer_eps: float | None = None  # ε of Adam / RMSprop
    rmsprop_decay: float | None = None  # RMSprop's decay of its squared-gradient average
    anneal_lr: bool | None = None  # linear decay of the learning rate to 0 over the run
    max_grad_norm: float | None = None  # global-norm clipping; math.inf disables it
    # Loss.
    ent_coef: float | None = None  # weight of the entropy bonus
    vf_coef: float | None = None  # weight of the critic's loss
    normalize_advantages: bool | None = None  # advantages to mean 0, std 1 per batch
    # Replay (ac_replay only).
    replay_capacity: int | None = None  # transitions kept in the circular buffer
    replay_batch_size: int | None = None  # transitions per critic minibatch
    # Networks.
    # "mlp", "cnn" (3x3, MinAtar), "nature_cnn" (Mnih et al. 2015), "a3c_cnn" (the A3C paper's
    # network, Mnih et al. 2013) or "auto" (torso_kind)
    torso: str | None = None
    hidden_sizes: tuple[int, ...] | None = None  # MLP widths (for the cnn: dense after the conv)
    activation: str | None = None  # "tanh" or "relu"
    shared_torso: bool | None = None  # False: separate actor and critic networks (the decks')
    cnn_channels: int | None = None  # channels of the small CNN torso's layers
    # Recurrent policies: "lstm" or "gru" cores after the torso(s) (one each for the actor and
    # the critic, or one shared with `shared_torso`), `recurrent_size` units; None: feed-forward.
    recurrent: str | None = None
    recurrent_size: int | None = None
    # Gradient parallelism (a3c_jax.training.parallel): the environments split over devices, one
    # gradient step averaged over them. 1 (the default): one device, no device axis. "all": every
    # device of every process, counted when the trainer is built.
    num_devices: int | str | None = None
    parallel_backend: str | None = None  # "shard_map" or "pmap"
    # Asynchronous training (algo="a3c" only, with `a3c_jax.train_async`).
    num_workers: int | None = None  # actor-learner threads, each with its own num_envs environments
    # Ray workers (a3c_jax.workers.ray_backend): "threads" (the default) or "ray" (one actor
    # process per worker, on this machine or a Ray cluster's); what they send, "gradients" or
    # "data" (trajectories, V-trace at the learner); the cluster to join ("local": start a Ray
    # instance on this machine; "auto": the one `ray start` runs here; "HOST:PORT": its head
    # node); and how
    # often Ray restarts a worker whose process died before the run gives up.
    workers: str | None = None
    parallelism: str | None = None
    ray_address: str | None = None
    max_worker_restarts: int | None = None
    # Host environments ("gymnasium:<id>", a3c_jax.host) under the synchronous algorithms: their
    # Gymnasium vector environment steps them "sync" (one after the other, in the learner's
    # thread) or "async" (one process each).
    vector_env: str | None = None
    # Brax environments ("brax:<name>", a3c_jax.envs.brax_envs): the physics pipeline, physics steps
    # per episode (the time limit, a truncation) and physics steps per action.
    brax_backend: str | None = None  # "spring", "positional" or "generalized"
    episode_length: int | None = None
    action_repeat: int | None = None
    log_std_init: float | None = None  # Gaussian policies: initial log standard deviation
    # Gaussian policies: "clip" (actions sampled from the Gaussian, clipped to the action
    # bounds by the environment) or "tanh" (squashed into the bounds, log-probability corrected).
    action_bounding: str | None = None
    state_dependent_std: bool | None = None  # Gaussian policies: log-std from the actor's torso
    # Gaussian policies: generalised state-dependent exploration (gSDE): the action noise is
    # φ(s) W, φ the actor's last features, W ~ N(0, σ²) a [features, d] matrix (log σ starts at
    # log_std_init) drawn afresh every `sde_sample_freq` steps of a rollout (-1: once per rollout).
    use_sde: bool | None = None
    sde_sample_freq: int | None = None
    # Gaussian policies: weight of the loss on means outside the action bounds (squared
    # distance, losses.action_bound_loss); 0: none.
    action_bound_coef: float | None = None
    # Environment wrappers (a3c_jax.envs.wrappers), in this order: transforms, then normalisers.
    mask_velocity: bool | None = None  # observe positions only (partial observability)
    frame_stack: int | None = None  # observe the last k observations (1: no stacking)
    normalize_obs: bool | None = None  # running mean / variance normalisation of observations
    obs_clip: float | None = None  # normalised observations are clipped to [-obs_clip, obs_clip]
    normalize_reward: bool | None = None  # rewards / running std of the discounted return
    reward_clip: float | None = None  # normalised rewards are clipped to [-reward_clip, ...]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _plain(getattr(self, field.name)))
        if not isinstance(self.algo, str) or self.algo not in registry.REGISTRY:
            raise ConfigError(
                f"algo={self.algo!r} is not an algorithm here; choose one of "
                f"{sorted(registry.names())}"
            )
        _check_env_name(self.env_name)
        self._check_action_space_fields()
        self._check_recurrent_fields()
        layers = (
            presets.env_preset(self.env_name, self.algo),
            registry.get(self.algo).defaults,
            presets.DEFAULTS,
        )
        given = {f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        for field in dataclasses.fields(self):
            if getattr(self, field.name) is None:
                value = next(layer[field.name] for layer in layers if field.name in layer)
                object.__setattr__(self, field.name, value)
        self._yield_to_given(given)
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
        return registry.get(self.algo).episodic

    @property
    def asynchronous(self) -> bool:
        """True for algorithms trained by `a3c_jax.train_async` (threads), not `make_train`."""
        return registry.get(self.algo).asynchronous

    @property
    def host_env(self) -> bool:
        """True for environments stepped on the host (`"gymnasium:<id>"`)."""
        return backends.is_host_env(self.env_name)

    @property
    def trainer(self) -> str:
        """Which trainer runs this config, one of `TRAINERS`: the one place that decides it,
        from the registry (`asynchronous` algorithms run as threads) and the environment's
        backend (host environments are stepped by a host learner)."""
        if self.asynchronous:
            return "ray" if self.workers == "ray" else "threads"
        return "host" if self.host_env else "jit"

    @property
    def env_options(self) -> dict[str, Any]:
        """The options of `envs.make_env` this config sets for its environment's backend."""
        if not backends.is_brax_env(self.env_name):
            return {}
        return {option: getattr(self, field) for field, option in BRAX_FIELDS.items()}

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

    def to_dict(self) -> dict[str, Any]:
        """Every field by name, JSON-ready (tuples as lists); `Config.from_dict` inverts it."""
        return {
            field.name: list(value) if isinstance(value, tuple) else value
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> Config:
        """A `Config` from field values (a parsed JSON or YAML file, `--set` strings).

        Unknown names raise `ConfigError` naming them (with close matches); string values of
        non-string fields are parsed as on the command line (`"7e-4"`, `"64,64"`, `"false"`).
        """
        return cls(**{name: coerce_field(name, value, source) for name, value in data.items()})

    def diff(self, other: Config) -> dict[str, tuple[Any, Any]]:
        """`{field: (self's value, other's value)}` for every field where the two differ."""
        return {
            field.name: (getattr(self, field.name), getattr(other, field.name))
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(other, field.name)
        }

    def _check_action_space_fields(self) -> None:
        """A setting given for one kind of action space on an environment of the other kind is
        an error: checked on the values the caller gave, before presets fill the rest (the
        neutral default value of `presets.DEFAULTS` passes, so that `replace` works)."""
        from a3c_jax import envs

        kind = "discrete" if envs.make_env(self.env_name).discrete else "continuous"
        for name, (applies_to, _) in ACTION_SPACE_FIELDS.items():
            value = getattr(self, name)
            if value not in (None, presets.DEFAULTS[name]) and applies_to != kind:
                raise ConfigError(
                    f"{name}={value!r} only applies to {applies_to} actions; {self.env_name} "
                    f"has {kind} actions: drop the setting"
                )

    def _check_recurrent_fields(self) -> None:
        """`recurrent` is None, "lstm" or "gru" ("none" given as text means None); a
        `recurrent_size` given without a core is an error (checked before presets fill it)."""
        if isinstance(self.recurrent, str) and self.recurrent.lower() in ("none", "null", ""):
            object.__setattr__(self, "recurrent", None)
        if self.recurrent is not None and self.recurrent not in RECURRENT_CELLS:
            raise ConfigError(
                f"recurrent={self.recurrent!r} must be one of {RECURRENT_CELLS} or None"
            )
        size = self.recurrent_size
        if self.recurrent is None and size not in (None, presets.DEFAULTS["recurrent_size"]):
            raise ConfigError(
                f"recurrent_size={size!r} sizes a recurrent core, but recurrent=None: set "
                f"recurrent to one of {RECURRENT_CELLS} or drop recurrent_size"
            )

    def _check_host_algorithm(self) -> None:
        """Host environments train only the algorithms the registry marks `host`."""
        if self.host_env and not registry.get(self.algo).host:
            raise ConfigError(
                f"algo={self.algo!r} does not train on host environments; choose one of "
                f"{registry.names(host=True)} (episodic algorithms restart every environment at "
                "each update)"
            )

    def _check_recurrent_combinations(self) -> None:
        """The combinations a recurrent policy cannot train in, named before anything compiles."""
        if self.recurrent is None:
            return
        if self.host_env:
            raise ConfigError(
                f"recurrent={self.recurrent!r}: recurrent policies run on gymnax environments; "
                f"env_name={self.env_name!r} is a host environment (its rollout is a Python loop "
                "without a hidden state): drop recurrent or use a gymnax environment"
            )
        if self.shared_torso and not registry.get(self.algo).recurrent_critic:
            raise ConfigError(
                f"recurrent={self.recurrent!r} with shared_torso=True and algo={self.algo!r}: its "
                "critic learns from replayed single transitions, which carry no hidden state, so "
                "it cannot share the actor's core; use shared_torso=False (a recurrent actor and "
                "a feed-forward critic)"
            )

    def _validate(self) -> None:
        """Every field's type and range, then the fields against each other."""
        for name in (
            "num_envs",
            "n_steps",
            "total_timesteps",
            "cnn_channels",
            "replay_capacity",
            "replay_batch_size",
            "num_workers",
            "recurrent_size",
        ):
            _positive_int(self, name)
        if self.total_timesteps >= MAX_TIMESTEPS:
            raise ConfigError(
                f"total_timesteps={self.total_timesteps} must be below 2**31 = {MAX_TIMESTEPS}: "
                "the jitted loop counts environment steps in 32-bit integers"
            )
        self._validate_ranges()
        self._validate_choices()
        self._check_host_algorithm()
        self._validate_devices()
        self._validate_wrappers()
        self._validate_brax()
        for name in (
            "anneal_lr",
            "normalize_advantages",
            "shared_torso",
            "state_dependent_std",
            "use_sde",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be True or False")
        sizes = self.hidden_sizes
        if not (
            isinstance(sizes, tuple)
            and sizes
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
        ):
            raise ConfigError(f"hidden_sizes={sizes!r} must be a non-empty tuple of positive ints")
        self._validate_sde()
        self._validate_workers()
        self._check_combinations()

    def _yield_to_given(self, given: set[str]) -> None:
        """Preset values that cannot go with an exploration setting the caller gave fall back to
        their defaults: gSDE (`use_sde`, `sde_sample_freq`) where `action_bounding="tanh"` or
        `state_dependent_std=True` was given without `use_sde`, and `action_bound_coef` where
        `action_bounding="tanh"` was given without it (Pendulum-v1's preset sets both)."""
        squash = "action_bounding" in given and self.action_bounding == "tanh"
        own_std = "state_dependent_std" in given and self.state_dependent_std is True
        changes = {}
        if (squash or own_std) and "use_sde" not in given:
            changes |= {k: presets.DEFAULTS[k] for k in ("use_sde", "sde_sample_freq")}
        if squash and "action_bound_coef" not in given:
            changes["action_bound_coef"] = presets.DEFAULTS["action_bound_coef"]
        for name, value in changes.items():
            object.__setattr__(self, name, value)

    def _validate_sde(self) -> None:
        """`use_sde` and `sde_sample_freq`, and what gSDE does not combine with; the bound loss
        (`action_bound_coef`), which reads the means of clipped, not squashed, Gaussians."""
        if self.action_bound_coef > 0 and self.action_bounding == "tanh":
            raise ConfigError(
                f"action_bound_coef={self.action_bound_coef!r} with action_bounding='tanh': "
                "squashed actions never leave the bounds (the means are pre-squash): drop one"
            )
        freq = self.sde_sample_freq
        if (
            isinstance(freq, bool)
            or not isinstance(freq, int)
            or not (freq == -1 or 1 <= freq <= INT32_MAX)
        ):
            raise ConfigError(
                f"sde_sample_freq={freq!r} must be a positive integer (steps between draws of "
                "gSDE's noise matrix) or -1 (one draw per rollout)"
            )
        if not self.use_sde:
            if freq != presets.DEFAULTS["sde_sample_freq"]:
                raise ConfigError(
                    f"sde_sample_freq={freq!r} times gSDE's noise, but use_sde=False: set "
                    "use_sde=True or drop sde_sample_freq"
                )
            return
        for name, value in (("action_bounding", "tanh"), ("state_dependent_std", True)):
            if getattr(self, name) == value:
                raise ConfigError(
                    f"use_sde=True with {name}={value!r}: gSDE's noise is an unsquashed Gaussian "
                    f"with its own state-dependent scale; drop one of the two"
                )
        if self.host_env:
            raise ConfigError(
                f"use_sde=True: gSDE runs on gymnax and Brax environments; env_name="
                f"{self.env_name!r} is a host environment (its rollout draws a fresh key at "
                "every step): drop use_sde"
            )

    def _validate_workers(self) -> None:
        """The Ray fields: valid values, set only where they apply. (Whether Ray is installed
        is checked when a run starts, `workers.trainers.check`: a Ray run's config.json must
        load, evaluate and plot on a machine without Ray.)"""
        for name, allowed in (("workers", WORKER_BACKENDS), ("parallelism", PARALLELISMS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be one of {allowed}")
        restarts = self.max_worker_restarts
        if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
            raise ConfigError(f"max_worker_restarts={restarts!r} must be a non-negative integer")
        if self.workers == "ray" and not self.asynchronous:
            raise ConfigError(
                f"workers='ray' runs the workers of the asynchronous algorithms "
                f"({', '.join(map(repr, registry.names(asynchronous=True)))}); algo={self.algo!r} "
                "trains with one learner: use algo='a3c', or drop workers"
            )
        if self.workers != "ray":
            used = [
                f"{k}={getattr(self, k)!r}"
                for k in ("parallelism", "ray_address", "max_worker_restarts")
                if getattr(self, k) != presets.DEFAULTS[k]
            ]
            if used:
                raise ConfigError(
                    f"{', '.join(used)}: only applies to Ray workers; add workers='ray' "
                    "(with algo='a3c') or drop the setting"
                )
            return
        _check_ray_address(self.ray_address)
        if self.parallelism == "data" and self.recurrent is not None:
            raise ConfigError(
                f"parallelism='data' with recurrent={self.recurrent!r}: the learner re-runs the "
                "workers' trajectories without their hidden states; use parallelism='gradients' "
                "or a feed-forward policy"
            )

    def _validate_ranges(self) -> None:
        """The real-valued fields' ranges."""
        _in_range(self, "gamma", 0.0, 1.0)
        _in_range(self, "gae_lambda", 0.0, 1.0)
        _in_range(self, "log_std_init", -20.0, 20.0)
        for name in ("lr", "optimizer_eps", "reward_scale", "max_grad_norm"):
            _in_range(self, name, 0.0, math.inf, low_open=True)
        if not math.isfinite(self.optimizer_eps):  # 1/inf: every step is zero, nothing trains
            raise ConfigError(f"optimizer_eps={self.optimizer_eps!r} must be a finite number")
        _in_range(self, "rmsprop_decay", 0.0, 1.0, low_open=True)
        for name in ("ent_coef", "vf_coef", "action_bound_coef"):
            _in_range(self, name, 0.0, math.inf)

    def _validate_choices(self) -> None:
        """The fields that name one of a few choices."""
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("activation", ACTIVATIONS),
            ("torso", TORSOS),
            ("parallel_backend", PARALLEL_BACKENDS),
            ("vector_env", VECTOR_ENVS),
            ("action_bounding", ACTION_BOUNDINGS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be one of {allowed}")
        if self.vector_env != "sync" and (self.trainer != "host"):
            raise ConfigError(
                f"vector_env={self.vector_env!r} only applies to host environments "
                "('gymnasium:<id>') under a synchronous algorithm; gymnax environments are "
                "vmapped and A3C workers step their own environments in their threads"
            )

    def _validate_devices(self) -> None:
        """`num_devices` (the devices that exist are counted when the trainer is built)."""
        devices = self.num_devices
        if devices != 1 and self.asynchronous:  # before num_envs is asked to split over them
            raise ConfigError(
                f"num_devices={devices!r} does not apply to algo={self.algo!r}: its "
                "workers are threads sharing one device's parameters (num_devices must be 1); "
                "for gradient parallelism over devices use algo='a2c' with num_devices"
            )
        if devices != 1 and self.host_env:  # never ignored silently
            raise ConfigError(
                f"num_devices={devices!r} does not apply to env_name={self.env_name!r}: a host "
                "environment is stepped by one learner on one device (num_devices must be 1); "
                "gradient parallelism over devices runs on gymnax and Brax environments"
            )
        if devices == "all":
            return
        if isinstance(devices, bool) or not isinstance(devices, int) or devices <= 0:
            raise ConfigError(f"num_devices={devices!r} must be a positive integer or 'all'")
        if self.num_envs % devices:
            raise ConfigError(
                f"num_envs={self.num_envs} is not divisible by num_devices={devices}: each "
                f"device runs num_envs / num_devices environments; use a multiple of {devices}"
            )

    def _check_combinations(self) -> None:
        """Checks of fields against each other and against the environment."""
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
        if self.num_workers != 1 and not self.asynchronous:
            raise ConfigError(
                f"num_workers={self.num_workers} is only meaningful with an asynchronous algorithm "
                f"({', '.join(map(repr, registry.names(asynchronous=True)))}); algo={self.algo!r} "
                "is synchronous: it runs num_envs environments in parallel under one learner"
            )
        if self.asynchronous and self.num_devices != 1:
            raise ConfigError(
                f"num_devices={self.num_devices!r} does not apply to algo={self.algo!r}: its "
                "workers are threads sharing one device's parameters (num_devices must be 1); "
                "for gradient parallelism over devices use algo='a2c' with num_devices"
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
        self._check_recurrent_combinations()
        if self.torso in CNN_MIN_SIZES and len(spec.obs_shape) != 3:
            raise ConfigError(
                f"torso={self.torso!r} needs image observations [H, W, C]; {self.env_name} "
                f"observes shape {spec.obs_shape}: use torso='mlp' or 'auto'"
            )
        kind = torso_kind(self.torso, spec.obs_shape)
        smallest = CNN_MIN_SIZES.get(kind, 0)
        if min(spec.obs_shape[:2], default=smallest) < smallest:
            raise ConfigError(
                f"torso={self.torso!r}: its convolutions need images of at least "
                f"{smallest}x{smallest}; {self.env_name} observes shape {spec.obs_shape}: use "
                "torso='mlp'" + (" or 'cnn'" if smallest > 3 else "")
            )

    def _validate_wrappers(self) -> None:
        """The environment wrappers' fields (a3c_jax.envs.wrappers)."""
        from a3c_jax.envs import wrappers

        for name in ("mask_velocity", "normalize_obs", "normalize_reward"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be True or False")
        stack = self.frame_stack
        if isinstance(stack, bool) or not isinstance(stack, int) or not 1 <= stack <= 64:
            raise ConfigError(f"frame_stack={stack!r} must be an integer in [1, 64] (1: none)")
        for name in ("obs_clip", "reward_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name}={value!r} must be a positive number (math.inf: none)")
        if self.mask_velocity and self.env_name not in wrappers.POSITION_INDICES:
            raise ConfigError(
                f"mask_velocity=True: no velocity entries are known for {self.env_name}; it "
                f"applies to {', '.join(wrappers.POSITION_INDICES)}"
            )
        if self.asynchronous or self.host_env:
            # A3C workers apply the observation transforms (stateless or per environment); the
            # normalisers' statistics would need sharing between the workers' threads.
            refused = NORMALIZER_FIELDS if self.asynchronous and not self.host_env else ()
            used = [
                f"{k}={getattr(self, k)!r}"
                for k, v in WRAPPER_FIELDS.items()
                if getattr(self, k) != v and (k in refused or not refused)
            ]
            if used and refused:
                raise ConfigError(
                    f"{', '.join(used)}: the normalisers are not available for algo="
                    f"{self.algo!r} (its workers' threads would each keep their own statistics); "
                    "the observation transforms (mask_velocity, frame_stack) are, or use "
                    "algo='a2c'"
                )
            if used:
                where = f"env_name={self.env_name!r}" if self.host_env else f"algo={self.algo!r}"
                raise ConfigError(
                    f"{', '.join(used)}: environment wrappers are not available for {where} "
                    "(it steps unwrapped environments); use a gymnax environment with algo='a2c'"
                )

    def _validate_brax(self) -> None:
        """The Brax fields: valid values, and set only for a `"brax:<name>"` environment."""
        from a3c_jax.envs import brax_envs

        if self.brax_backend not in brax_envs.BACKENDS:
            raise ConfigError(
                f"brax_backend={self.brax_backend!r} must be one of {brax_envs.BACKENDS}"
            )
        for name in ("episode_length", "action_repeat"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if not backends.is_brax_env(self.env_name):
            used = [
                f"{k}={getattr(self, k)!r}"
                for k in BRAX_FIELDS
                if getattr(self, k) != presets.DEFAULTS[k]
            ]
            if used:
                raise ConfigError(
                    f"{', '.join(used)}: only applies to Brax environments ('brax:<name>'); "
                    f"env_name={self.env_name!r} is not one: drop the setting"
                )


INT32_MAX = 2**31 - 1  # sizes and counts live in 32-bit integers inside the jitted program


def _positive_int(config: Config, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    if value > INT32_MAX and name != "total_timesteps":  # that one's message says why, below
        raise ConfigError(f"{name}={value!r} must be at most 2**31 - 1 = {INT32_MAX}")


def _in_range(config: Config, name: str, low: float, high: float, low_open: bool = False) -> None:
    value = getattr(config, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name}={value!r} must lie in {bracket}{low}, {high}]")


def _plain(value: Any) -> Any:
    """`value` with numpy scalars (`np.float32(1e-3)`, `np.int64(8)`, `np.bool_`) as the Python
    numbers they hold, also inside a tuple or list; anything else as it is."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        item = value.item()  # float32 1e-3: its shortest text, not 0.0010000000474974513
        return float(str(value)) if isinstance(item, float) else item
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    return value


def field_kinds() -> dict[str, tuple[Any, ...]]:
    """`{field name: its value types without None}`, in the order a string is tried against them
    (`num_devices: int | str`: an integer, else a string such as "all")."""
    hints = typing.get_type_hints(Config)
    out = {}
    for field in dataclasses.fields(Config):
        hint = hints[field.name]
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            out[field.name] = tuple(a for a in typing.get_args(hint) if a is not type(None))
        else:
            out[field.name] = (hint,)
    return out


def field_types() -> dict[str, Any]:
    """`{field name: its first value type}`: `int`, `float`, `bool`, `str` or `tuple[int, ...]`."""
    return {name: kinds[0] for name, kinds in field_kinds().items()}


def _parse(kind: Any, text: str) -> Any:
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    if typing.get_origin(kind) is tuple:
        return tuple(int(v) for v in text.replace(" ", "").strip("()[]").split(",") if v)
    return kind(text)


def coerce_field(name: str, value: Any, source: str = "config") -> Any:
    """`value` for the field `name`, parsed from text where it is a string (and the field is not).

    Raises `ConfigError` for an unknown field (suggesting close names) or unparsable text; range
    checks are left to `Config` itself. `source` names where the value came from in messages.
    """
    all_kinds = field_kinds()
    if name not in all_kinds:
        close = difflib.get_close_matches(name, list(all_kinds), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"{source}: {name!r} is not a Config field{hint} (fields: {', '.join(all_kinds)})"
        )
    kinds = all_kinds[name]
    if any(typing.get_origin(k) is tuple for k in kinds) and isinstance(value, list):
        return tuple(value)
    if not isinstance(value, str) or (str in kinds and len(kinds) == 1):
        return value
    for kind in kinds:
        try:
            return _parse(kind, value.strip())
        except ValueError:
            continue
    names = [
        "true or false"
        if k is bool
        else "comma-separated ints (e.g. 64,64)"
        if typing.get_origin(k) is tuple
        else getattr(k, "__name__", str(k))
        for k in kinds
    ]
    raise ConfigError(f"{source} {name}={value!r}: not a valid {' or '.join(names)}")


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The field values in a `.json`, `.yaml` or `.yml` file (a mapping of field to value).

    Raises `ConfigError` if the file is missing, does not parse, or is not a mapping; the field
    names and values are checked by `Config.from_dict`.
    """
    path = os.fspath(path)
    if not path.endswith((".json", ".yaml", ".yml")):
        raise ConfigError(f"--config {path}: expected a .json, .yaml or .yml file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read it ({error.strerror})") from error
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"--config {path}: not UTF-8 text (byte {error.object[error.start]:#04x} at "
            f"position {error.start}); save it as UTF-8"
        ) from error
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ConfigError(f"--config {path}: not valid JSON: {error}") from error
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--config {path}: not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of Config fields to values")
    return data


def _check_ray_address(address: Any) -> None:
    """`ConfigError` unless `address` is "local", "auto", "HOST:PORT" or "ray://HOST:PORT"
    (whether anything answers there is checked when the run starts: `workers.ray_backend`)."""
    if address in ("local", "auto"):
        return
    text = address.removeprefix("ray://") if isinstance(address, str) else ""
    host, _, port = text.rpartition(":")
    if not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(
            f"ray_address={address!r} must be 'auto' (the cluster `ray start` runs on this "
            "machine), 'HOST:PORT' of a head node (e.g. '10.0.0.1:6379'), or 'local' (the "
            "default) to start a Ray instance on this machine"
        )


def _check_env_name(env_name: Any) -> None:
    """`ConfigError` unless `env_name` names an environment its backend can make."""
    if not isinstance(env_name, str):
        raise ConfigError(
            f"env_name={env_name!r} must be a string naming an environment (e.g. 'CartPole-v1')"
        )
    importlib.import_module(backends.backend(env_name)).check_env_name(env_name)
