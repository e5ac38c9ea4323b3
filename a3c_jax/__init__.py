"""a3c_jax: the actor-critic family (online actor-critic to A3C) as pure, jitted, vmapped JAX
functions.

`import a3c_jax` imports JAX and the configuration (`Config`, its presets and the algorithm
registry); every other public name is imported from its module when first used (PEP 562), so a
command imports only what it runs (`tests/test_imports.py` checks that the heavy libraries stay
out). Importing changes nothing else in the process: the `a3c-jax` command itself joins a
multi-process run (`distributed.initialize_from_env`) and runs JAX's CPU computations inline
(`training.xla.prefer_inline_dispatch`); a program that embeds a3c_jax calls those if it wants
them.

The layers, each importing only from those below it (checked by the import contract in
pyproject.toml): `cli` > `sweeps` > `viz` > `api` > `runs` > `workers` > `training` >
`algorithms` > `config` > `envs` > `core`, with `distributed` and `errors` at the bottom.
"""

from typing import TYPE_CHECKING, Any

import jax  # noqa: F401 (a JAX library: importing it imports JAX, and initialises nothing)

from a3c_jax import _lazy
from a3c_jax.config import Config, ConfigError, presets

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from a3c_jax import envs
    from a3c_jax.algorithms import networks, rollout
    from a3c_jax.api import (
        Trained,
        evaluate,
        make_act,
        train,
        train_async,
        train_async_run,
        train_host,
        train_run,
    )
    from a3c_jax.core import distributions, losses, returns
    from a3c_jax.core.types import (
        CoreState,
        EnvCarry,
        RunnerState,
        Trainer,
        TrainResult,
        TrainState,
        Transition,
        UpdateMetrics,
    )
    from a3c_jax.errors import (
        CheckpointError,
        ConfigMismatchError,
        DivergenceError,
        RunDirError,
        RunFolderLostError,
    )
    from a3c_jax.runs.saving import SavedRun, load, save
    from a3c_jax.sweeps.grid import SweepResult, sweep
    from a3c_jax.training import parallel
    from a3c_jax.training.divergence import check_finite
    from a3c_jax.training.loop import jit_train, make_train, make_trainer
    from a3c_jax.training.xla import enable_compilation_cache
    from a3c_jax.workers.store import AsyncMetrics, AsyncResult, UpdateRecord

    ALGORITHMS: tuple[str, ...]

__version__ = "0.1.0"

_NAMES: dict[str, str] = {  # public name -> the module (under a3c_jax) that defines it
    **dict.fromkeys(
        (
            "Trained",
            "evaluate",
            "make_act",
            "train",
            "train_async",
            "train_async_run",
            "train_host",
            "train_run",
        ),
        "api",
    ),
    **dict.fromkeys(
        (
            "CheckpointError",
            "ConfigMismatchError",
            "DivergenceError",
            "RunDirError",
            "RunFolderLostError",
        ),
        "errors",
    ),
    **dict.fromkeys(("AsyncMetrics", "AsyncResult", "UpdateRecord"), "workers.store"),
    "check_finite": "training.divergence",
    **dict.fromkeys(("SavedRun", "load", "save"), "runs.saving"),
    **dict.fromkeys(("SweepResult", "sweep"), "sweeps.grid"),
    **dict.fromkeys(("jit_train", "make_train", "make_trainer"), "training.loop"),
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
        "core.types",
    ),
    "enable_compilation_cache": "training.xla",
    "ALGORITHMS": "config.registry",
}
# Modules published under a short name: `a3c_jax.returns` is `a3c_jax.core.returns`.
_MODULES: dict[str, str] = {
    "distributed": "distributed",
    "distributions": "core.distributions",
    "envs": "envs",
    "losses": "core.losses",
    "networks": "algorithms.networks",
    "parallel": "training.parallel",
    "returns": "core.returns",
    "rollout": "algorithms.rollout",
}
_get_name, _ = _lazy.attach(__name__, _NAMES, globals())


def __getattr__(name: str) -> Any:
    """A public name (`_NAMES`), a published module (`_MODULES`) or a subpackage, imported on
    first use and kept here."""
    import importlib.util

    if name in _MODULES:
        value = importlib.import_module(f"a3c_jax.{_MODULES[name]}")
    elif name in _NAMES:
        return _get_name(name)
    elif not name.startswith("_") and importlib.util.find_spec(f"a3c_jax.{name}"):
        value = importlib.import_module(f"a3c_jax.{name}")  # a layer, as `a3c_jax.runs`
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
    "RunFolderLostError",
    "RunnerState",
    "SavedRun",
    "SweepResult",
    "TrainResult",
    "TrainState",
    "Trained",
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
    "train",
    "train_async",
    "train_async_run",
    "train_host",
    "train_run",
]
