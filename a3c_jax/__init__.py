"""a3c_jax: the actor-critic family as pure, jitted, vmapped JAX functions over gymnax."""

# A process of a multi-process run (a3c_jax.launch) joins it first: importing gymnax below
# initialises JAX's backend, after which jax.distributed.initialize is refused.
from a3c_jax import distributed

distributed.initialize_from_env()

# ruff: noqa: E402

from a3c_jax import distributions, envs, losses, networks, parallel, presets, returns, rollout
from a3c_jax.algorithms import ALGORITHM_BUILDERS
from a3c_jax.asynchronous import AsyncMetrics, AsyncResult, UpdateRecord, train_async
from a3c_jax.checkpoint import CheckpointError, ConfigMismatchError
from a3c_jax.config import Config, ConfigError
from a3c_jax.evaluation import evaluate, make_act
from a3c_jax.host.train import train_host
from a3c_jax.runs import RunDirError, SavedRun, load, save, train_run
from a3c_jax.train import (
    DivergenceError,
    Trainer,
    check_finite,
    enable_compilation_cache,
    jit_train,
    make_train,
    make_trainer,
)
from a3c_jax.types import (
    EnvCarry,
    RunnerState,
    TrainResult,
    TrainState,
    Transition,
    UpdateMetrics,
)

__version__ = "0.1.0"

ALGORITHMS = (*ALGORITHM_BUILDERS, *presets.ASYNCHRONOUS_ALGORITHMS)

__all__ = [
    "ALGORITHMS",
    "AsyncMetrics",
    "AsyncResult",
    "CheckpointError",
    "Config",
    "ConfigError",
    "ConfigMismatchError",
    "DivergenceError",
    "EnvCarry",
    "RunDirError",
    "RunnerState",
    "SavedRun",
    "TrainResult",
    "TrainState",
    "Trainer",
    "Transition",
    "UpdateMetrics",
    "UpdateRecord",
    "__version__",
    "check_finite",
    "distributed",
    "distributions",
    "enable_compilation_cache",
    "envs",
    "evaluate",
    "jit_train",
    "load",
    "losses",
    "make_act",
    "make_train",
    "make_trainer",
    "networks",
    "parallel",
    "presets",
    "returns",
    "rollout",
    "save",
    "train_async",
    "train_host",
    "train_run",
]
