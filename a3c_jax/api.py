"""The front door: `train(config, ...)` runs whichever trainer the config needs and returns one
result type; `evaluate` and `make_act` take that result (or a config and parameters).

Which trainer runs a `Config` is decided once, by `Config.trainer` (from the algorithm registry
and the environment's backend), and dispatched here by one table (`TRAINERS`):

| `config.trainer` | trainer | in memory | into a run folder |
|---|---|---|---|
| "jit" | the pure jitted program | `jit_train` | `runs.chunked.train_run` |
| "threads" | A3C's actor-learner threads | `workers.a3c.train_async` | `runs.worker_runs` |
| "host" | one learner over host environments | `workers.host.train_host` | `runs.worker_runs` |
| "ray" | A3C's workers as Ray actors | `workers.ray_backend.train_ray` | `runs.worker_runs` |

`make_train` / `jit_train` stay first-class: they are the pure functional core (jit it, vmap it
over seeds) that `train` runs for gymnax and Brax configs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax

from a3c_jax.config import Config, ConfigError
from a3c_jax.core.types import Params, PRNGKey, TrainResult

# The options of a run folder that `train` hands to its driver (`runs.chunked.train_run`,
# `runs.worker_runs.train_async_run`).
RUN_OPTIONS = (
    "chunk_updates",
    "checkpoint_every",
    "checkpoint_seconds",
    "keep_checkpoints",
    "stop_after",
    "tensorboard",
    "log",
)


class Trained(NamedTuple):
    """What `train` returns, whichever trainer ran.

    With `num_seeds > 1` every array of `params` and `metrics` has a leading `[num_seeds]` axis.
    """

    config: Config
    params: Params  # the policy's parameters, ready for `evaluate` and `make_act`
    metrics: dict[str, Any]  # per update, by name: `[num_updates]` each (`[S, U]` with seeds);
    # from a run folder, its metrics.csv's columns
    num_seeds: int
    extras: Any  # the trainer's own result: `TrainResult` (jit), `AsyncResult` (workers),
    # or the run folder's outcome (`RunOutcome`, `AsyncRunOutcome`) when trained into one
    run_dir: Path | None = None  # the run folder, if trained into one
    status: str = "finished"  # "finished", "interrupted" or "stopped" (run folders)


def train(
    config: Config,
    key: PRNGKey | None = None,
    *,
    num_seeds: int = 1,
    run_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    progress: bool = False,
    **run_options: Any,
) -> Trained:
    """Trains `config` with the trainer it needs (`Config.trainer`).

    In memory (`run_dir=None`): from `key` (default `PRNGKey(seed)`); `num_seeds > 1` trains
    `jax.random.split(key, num_seeds)` side by side with `vmap` (the jitted trainer only).

    Into a run folder (`run_dir`): the seeds' keys come from `seed` (as `a3c-jax train --seed`),
    checkpoints, metrics.csv and run.json are written there, `resume` continues the run, and
    `overwrite` replaces an a3c_jax run folder; `progress` shows a progress bar; `run_options`
    are those of `runs.chunked.train_run` (`chunk_updates`, `checkpoint_every`,
    `checkpoint_seconds`, `keep_checkpoints`, `stop_after`, `tensorboard`, `log`).

    Raises `ConfigError` for arguments that do not apply, before anything compiles.
    """
    if not isinstance(config, Config):
        raise ConfigError(f"config={config!r} must be an a3c_jax.Config")
    unknown = sorted(set(run_options) - set(RUN_OPTIONS))
    if unknown:
        raise ConfigError(
            f"{', '.join(unknown)}: not an argument of a3c_jax.train (run folder options: "
            f"{', '.join(RUN_OPTIONS)})"
        )
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
        raise ConfigError(f"num_seeds={num_seeds!r} must be a positive integer")
    if num_seeds > 1 and config.trainer != "jit":
        raise ConfigError(
            f"num_seeds={num_seeds}: seeds train side by side in one jitted program; "
            f"algo={config.algo!r} on env_name={config.env_name!r} runs as workers "
            f"(trainer {config.trainer!r}): train one seed per call"
        )
    if run_dir is None:
        unused = [k for k, v in (("resume", resume), ("overwrite", overwrite)) if v]
        unused += sorted(run_options)
        if unused:
            raise ConfigError(f"{', '.join(unused)}: only apply with run_dir (a run folder)")
        key = jax.random.PRNGKey(seed) if key is None else key
        return TRAINERS[config.trainer][0](config, key, num_seeds)
    if key is not None:
        raise ConfigError("key: a run folder's keys come from seed (an int), recorded with it")
    return TRAINERS[config.trainer][1](
        config, run_dir, num_seeds, resume=resume, overwrite=overwrite, seed=seed,
        progress=progress, **run_options,
    )  # fmt: skip


def _jit_in_memory(config: Config, key: PRNGKey, num_seeds: int) -> Trained:
    from a3c_jax.training.loop import jit_train

    keys = jax.random.split(key, num_seeds) if num_seeds > 1 else key
    result: TrainResult = jit_train(config, num_seeds if num_seeds > 1 else None)(keys)
    return Trained(config, result.params, result.metrics._asdict(), num_seeds, result)


def _workers_in_memory(config: Config, key: PRNGKey, num_seeds: int) -> Trained:
    from a3c_jax.workers import trainers

    result = trainers.train(config, key)
    status = "interrupted" if result.interrupted else "finished"
    return Trained(config, result.params, result.metrics._asdict(), 1, result, None, status)


def _jit_in_folder(config: Config, run_dir: Any, num_seeds: int, **options: Any) -> Trained:
    from a3c_jax.runs import chunked, saving

    outcome = chunked.train_run(config, run_dir, num_seeds=num_seeds, **options)
    batched = num_seeds > 1
    params = saving.policy_params(config, outcome.runner_state, batched)
    metrics = _folder_metrics(outcome.run_dir)
    return Trained(config, params, metrics, num_seeds, outcome, outcome.run_dir, outcome.status)


def _workers_in_folder(config: Config, run_dir: Any, num_seeds: int, **options: Any) -> Trained:
    from a3c_jax.runs import worker_runs

    outcome = worker_runs.train_async_run(config, run_dir, **options)
    metrics = _folder_metrics(outcome.run_dir)
    params = outcome.result.params
    return Trained(config, params, metrics, 1, outcome, outcome.run_dir, outcome.status)


def _folder_metrics(run_dir: Path) -> dict[str, Any]:
    """The run folder's metrics.csv by column ({} in a process that writes no folder: the other
    processes of a multi-process run)."""
    from a3c_jax import distributed
    from a3c_jax.runs import metrics_log

    return metrics_log.read_metrics(run_dir) if distributed.is_output_process() else {}


# `config.trainer` -> (in memory, into a run folder): the one dispatch of the library.
TRAINERS: dict[str, tuple[Callable[..., Trained], Callable[..., Trained]]] = {
    "jit": (_jit_in_memory, _jit_in_folder),
    "threads": (_workers_in_memory, _workers_in_folder),
    "host": (_workers_in_memory, _workers_in_folder),
    "ray": (_workers_in_memory, _workers_in_folder),
}


def _policy(config: Any, params: Any) -> tuple[Config, Params, int | None]:
    """`(config, params, seeds)` of a `Trained` or `SavedRun` result (`seeds`: the leading seed
    axis's length, or None), or of the `config` and `params` given."""
    if isinstance(config, Config):
        if params is None:
            raise ConfigError("params: give the parameters to act with (or a train result)")
        return config, params, None
    if not hasattr(config, "config") or not hasattr(config, "params"):
        raise ConfigError(f"{config!r} is neither a Config nor a result of train or load")
    if params is not None:
        raise ConfigError("params: a result carries its own parameters; give one or the other")
    result = config
    seeds = getattr(result, "num_seeds", None)
    if seeds is None and "index" not in result.meta:  # a SavedRun of every seed it holds
        from a3c_jax.runs.saving import seed_axis

        seeds = seed_axis(result.meta)
    return result.config, result.params, seeds if seeds and seeds > 1 else None


def evaluate(
    config: Any,
    params: Params | None = None,
    key: PRNGKey | None = None,
    num_episodes: int = 100,
    greedy: bool = True,
) -> jax.Array:
    """Undiscounted returns `[num_episodes]` of whole episodes played with the policy: of a
    `Config` and its `params`, or of a result of `train` or `load` (`evaluate(result, key=k)`;
    several seeds: `[num_seeds, num_episodes]`). Greedy actions by default; `key` defaults to
    `PRNGKey(0)`. Host environments are played in a Python loop, the others in one jitted
    program."""
    config, params, seeds = _policy(config, params)
    key = jax.random.PRNGKey(0) if key is None else key
    if config.host_env:
        from a3c_jax.workers.host_evaluation import evaluate as play
    else:
        from a3c_jax.training.evaluation import evaluate as play
    if seeds is None:
        return play(config, params, key, num_episodes, greedy)
    keys = jax.random.split(key, seeds)
    per_seed = [
        play(config, jax.tree.map(lambda x, i=i: x[i], params), keys[i], num_episodes, greedy)
        for i in range(seeds)
    ]
    return jax.numpy.stack(per_seed)


def make_act(config: Any, params: Params | None = None, greedy: bool = True, *, seed: int = 0):
    """A jitted policy (`training.evaluation.Act`) of a `Config` and its `params`, or of a result
    of `train` or `load` (`make_act(result)`; several seeds: seed `seed`'s)."""
    from a3c_jax.training.evaluation import make_act as act

    config, params, seeds = _policy(config, params)
    if seeds is not None:
        params = jax.tree.map(lambda x: x[seed], params)
    return act(config, params, greedy)


# The host-side drivers folded into `train`, importable for one release as aliases.
def train_run(config: Config, run_dir: str | os.PathLike[str], **options: Any):
    """Deprecated alias (one release): `train(config, run_dir=...)`; returns the run folder's
    outcome (`runs.chunked.RunOutcome`) as before."""
    from a3c_jax.runs import chunked

    return chunked.train_run(config, run_dir, **options)


def train_async_run(config: Config, run_dir: str | os.PathLike[str], **options: Any):
    """Deprecated alias (one release): `train(config, run_dir=...)` of a worker trainer;
    returns its outcome (`runs.worker_runs.AsyncRunOutcome`) as before."""
    from a3c_jax.runs import worker_runs

    return worker_runs.train_async_run(config, run_dir, **options)


def train_async(config: Config, key: PRNGKey, **options: Any):
    """Deprecated alias (one release): `train(config, key)` of an asynchronous algorithm;
    returns its `AsyncResult` as before (`workers.a3c.train_async`)."""
    from a3c_jax.workers import a3c

    return a3c.train_async(config, key, **options)


def train_host(config: Config, key: PRNGKey, **options: Any):
    """Deprecated alias (one release): `train(config, key)` on a host environment (A3C's
    threads or the host learner); returns its `AsyncResult` as before."""
    from a3c_jax.workers import trainers

    if not config.host_env:
        raise ConfigError(
            f"env_name={config.env_name!r} is a gymnax environment: train it with "
            "a3c_jax.train(config); train_host is for 'gymnasium:<id>'"
        )
    return trainers.train(config, key, **options)
