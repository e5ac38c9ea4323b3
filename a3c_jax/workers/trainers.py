"""The worker trainers by `Config.trainer`: one table, read by the run folders
(`a3c_jax.runs.worker_runs`) and the front door (`a3c_jax.api.train`).

"threads": `a3c.train_async`, actor-learner threads over gymnax or host environments; "ray":
`ray_backend.train_ray`, the same workers as Ray actors (processes, on one machine or many);
"host": `host.train_host`, one synchronous learner over a Gymnasium vector environment. All
update a `store.ParameterStore`, so their runs share one checkpoint format.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from a3c_jax.config import Config, ConfigError
from a3c_jax.core.types import PRNGKey, TrainState
from a3c_jax.workers import a3c, host
from a3c_jax.workers.store import AsyncResult, ParameterStore, UpdateRecord


def _train_ray(config: Config, key: PRNGKey, **options) -> AsyncResult:
    from a3c_jax.workers import ray_backend  # Ray is imported only by runs that use it

    return ray_backend.train_ray(config, key, **options)


TRAINERS: dict[str, Callable[..., AsyncResult]] = {
    "threads": a3c.train_async,
    "ray": _train_ray,
    "host": host.train_host,
}


def check(config: Config) -> None:
    """`ConfigError` unless a worker trainer runs `config`."""
    if config.trainer not in TRAINERS:
        raise ConfigError(
            f"algo={config.algo!r} on env_name={config.env_name!r} is trained by the jitted "
            "program, not by workers: train it with a3c_jax.train(config)"
        )
    if config.trainer == "ray":
        from a3c_jax.workers import ray_backend

        ray_backend.require_ray()


def train(
    config: Config,
    key: PRNGKey,
    *,
    callback: Callable[[UpdateRecord], bool | None] | None = None,
    store: ParameterStore | None = None,
) -> AsyncResult:
    """Trains `config` with its worker trainer (`TRAINERS[config.trainer]`); `callback` and
    `store` as in `a3c.train_async`."""
    check(config)
    return TRAINERS[config.trainer](config, key, callback=callback, store=store)


def store_apply(config: Config) -> Callable[[jax.Array, jax.Array], TrainState] | None:
    """Compiles the run's programs (once per `config`); returns the store's optimiser step
    (None for the synchronous host learner, which commits whole updates)."""
    check(config)
    if config.trainer == "host":
        return host.make_parts(config).apply
    return a3c.make_async_parts(config).apply


def initial_state(config: Config, key: PRNGKey) -> TrainState:
    """The store's state `[P]` that `train(config, key)` starts from."""
    check(config)
    if config.trainer == "host":
        return host.initial_state(config, key)
    return a3c.initial_state(config, key)
