"""a3c_jax: the actor-critic family as pure, jitted, vmapped JAX functions over gymnax.

`import a3c_jax` imports JAX, the configuration and the presets; every other public name is
imported from its module when first used (PEP 562), so a command imports only what it runs
(`tests/test_imports.py` checks that the heavy libraries stay out).
"""

# A process of a multi-process run (a3c_jax.launch) joins it first: anything that initialises
# JAX's backend (gymnax's environments build arrays at import) makes jax.distributed refuse.
from a3c_jax import distributed

distributed.initialize_from_env()

# ruff: noqa: E402

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from a3c_jax import presets, xla
from a3c_jax.config import Config, ConfigError

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from a3c_jax import distributions, envs, losses, networks, parallel, returns, rollout
    from a3c_jax.async_runs import train_async_run
    from a3c_jax.asynchronous import AsyncMetrics, AsyncResult, UpdateRecord, train_async
    from a3c_jax.checkpoint import CheckpointError, ConfigMismatchError
    from a3c_jax.divergence import DivergenceError, check_finite
    from a3c_jax.evaluation import evaluate, make_act
    from a3c_jax.host.train import train_host
    from a3c_jax.run_folder import RunDirError
    from a3c_jax.runs import train_run
    from a3c_jax.saving import SavedRun, load, save
    from a3c_jax.sweeps import SweepResult, sweep
    from a3c_jax.train import jit_train, make_train, make_trainer
    from a3c_jax.types import (
        CoreState,
        EnvCarry,
        RunnerState,
        Trainer,
        TrainResult,
        TrainState,
        Transition,
        UpdateMetrics,
    )
    from a3c_jax.xla import enable_compilation_cache

    ALGORITHMS: tuple[str, ...]

# Host runs call a small jitted policy step at every environment step: computations run inline
# on the CPU (`xla.prefer_inline_dispatch`).
xla.prefer_inline_dispatch()

__version__ = "0.1.0"

_LAZY: dict[str, str] = {  # public name -> the module that defines it
    **dict.fromkeys(("AsyncMetrics", "AsyncResult", "UpdateRecord", "train_async"), "asynchronous"),
    **dict.fromkeys(("CheckpointError", "ConfigMismatchError"), "checkpoint"),
    **dict.fromkeys(("evaluate", "make_act"), "evaluation"),
    "train_host": "host.train",
    "train_async_run": "async_runs",
    **dict.fromkeys(("DivergenceError", "check_finite"), "divergence"),
    "RunDirError": "run_folder",
    "train_run": "runs",
    **dict.fromkeys(("SavedRun", "load", "save"), "saving"),
    **dict.fromkeys(("SweepResult", "sweep"), "sweeps"),
    **dict.fromkeys(("jit_train", "make_train", "make_trainer"), "train"),
    **dict.fromkeys(
        (
            "CoreState",
            "EnvCarry",
            "RunnerState",
            "Trainer",
            "TrainResult",
            "TrainState",
            "Transition",
            "UpdateMetrics",
        ),
        "types",
    ),
    "enable_compilation_cache": "xla",
}


def __getattr__(name: str) -> Any:
    """Imports a public name's module (or a submodule) on first use and keeps the name here."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f"a3c_jax.{_LAZY[name]}"), name)
    elif name == "ALGORITHMS":
        from a3c_jax.algorithms import registry

        value = tuple(registry.REGISTRY)
    elif not name.startswith("__") and importlib.util.find_spec(f"a3c_jax.{name}"):
        value = importlib.import_module(f"a3c_jax.{name}")  # any submodule, as `a3c_jax.envs`
    else:
        raise AttributeError(f"module 'a3c_jax' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ALGORITHMS",
    "AsyncMetrics",
    "AsyncResult",
    "CheckpointError",
    "Config",
    "ConfigError",
    "ConfigMismatchError",
    "CoreState",
    "DivergenceError",
    "EnvCarry",
    "RunDirError",
    "RunnerState",
    "SavedRun",
    "SweepResult",
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
    "sweep",
    "train_async",
    "train_async_run",
    "train_host",
    "train_run",
]
