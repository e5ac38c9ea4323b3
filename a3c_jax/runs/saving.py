"""Run folders from Python: `save` a training result as a run folder, `load` one back.

With several seeds every array carries a leading `[num_seeds]` axis; one seed's state has none,
as `make_train` returns it (`checkpoints.to_file`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from a3c_jax import distributed
from a3c_jax.config import Config
from a3c_jax.core.types import Params, RunnerState, TrainResult
from a3c_jax.runs import checkpoint_file as ckpt
from a3c_jax.runs import checkpoints, run_claim, run_folder
from a3c_jax.runs.run_folder import find_checkpoint
from a3c_jax.training.evaluation import policy_params


class SavedRun(NamedTuple):
    """What `load` returns. With several seeds every array has a leading `[num_seeds]` axis
    unless `load(..., index=i)` picked one."""

    config: Config
    params: Params  # ready for `a3c_jax.evaluate(config, params, key)` (one seed)
    runner_state: RunnerState | None  # None: one process's part of a multi-process run
    meta: dict[str, Any]  # update, env_steps, num_seeds, seed, time_s, status, checkpoint,
    # index (the seed `load` picked, if it did), ...


def seed_axis(meta: dict[str, Any]) -> int | None:
    """The number of seeds along the leading axis of `load`'s arrays (`None`: one seed, no axis)."""
    return int(meta["num_seeds"]) if meta.get("batched") else None


def per_seed(x: Any, num_seeds: int) -> np.ndarray:
    """`[S]` from a per-seed counter (that may carry copies per device)."""
    return np.asarray(x).reshape(num_seeds, -1)[:, 0]


def public_state(state: Any, num_seeds: int) -> Any:
    """A state `[S, ...]` as the API hands it out: one seed without the seed axis."""
    return checkpoints.to_file(state, num_seeds)


def budget_spent(config: Config, env_steps: int) -> bool:
    """Whether a seed that took `env_steps` environment steps has no further update left: a
    fixed-size update no longer fits in `total_timesteps`, or an episodic run reached it."""
    smallest_update = 1 if config.episodic else config.batch_size
    return env_steps + smallest_update > config.total_timesteps


def save(
    run_dir: str | os.PathLike[str],
    result: TrainResult | RunnerState,
    config: Config,
    *,
    seed: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Saves a training result (from `make_train`/`jit_train`, one seed or vmapped over seeds)
    as a run folder that `load`, `a3c-jax eval` and `a3c-jax train --resume` read.

    Returns the checkpoint written. The folder must be new or empty unless `overwrite`.
    """
    runner = result.runner_state if isinstance(result, TrainResult) else result
    folder = run_claim.create(run_dir, overwrite)
    batched = np.ndim(runner.updates) > 0
    state = checkpoints.from_file(runner, {"batched": batched})
    num_seeds = int(np.shape(state.updates)[0])
    from a3c_jax.training.loop import make_trainer

    ckpt.unflatten_state(  # fails early, with a clear message, on a state of another config
        ckpt.flatten_state(state),
        checkpoints.state_template(make_trainer(config).init, num_seeds),
        "the result to save",
    )
    env_steps = int(np.max(distributed.fetch(runner.train_state.env_steps)))
    diverged = np.any(distributed.fetch(runner.diverged))
    meta = {
        "update": int(np.max(distributed.fetch(runner.updates))),
        "env_steps": env_steps,
        "num_seeds": num_seeds,
        "seed": seed,
        "time_s": None,
        "status": "diverged"
        if diverged
        else ("finished" if budget_spent(config, env_steps) else "stopped"),
    }
    folder.write_config(config)
    info = {"versions": run_folder.versions(), "source": "a3c_jax.save", **meta}
    folder.write_info({**info, "batched": num_seeds > 1})
    return checkpoints.Checkpointer(folder.checkpoint_dir, config, keep=1 << 30).save(state, meta)


def load(
    run_dir: str | os.PathLike[str], config: Config | None = None, index: int | None = None
) -> SavedRun:
    """Loads a run folder's newest checkpoint (or the checkpoint file `run_dir`).

    Returns its `Config`, parameters (ready for `a3c_jax.evaluate`), whole `RunnerState` and
    metadata. With several seeds, `index` picks one (else arrays keep their `[num_seeds]` axis).
    `config`, if given, must equal the saved one (else `ConfigMismatchError` naming the fields).
    Raises `CheckpointError` for a damaged file, `RunDirError` for a folder with no checkpoint.
    """
    path = find_checkpoint(run_dir)
    content = ckpt.read_checkpoint(path)
    if content.meta.get("trainer") == "async":  # an A3C run's shared store (`async_runs`)
        if config is not None:
            ckpt.check_config(content.config, config, str(path))
        params = checkpoints.saved_params(content, str(path))
        return SavedRun(content.config, params, None, {**content.meta, "checkpoint": str(path)})
    if content.meta.get("processes", 1) > jax.process_count():
        return _load_params_only(content, path, config, index)
    content, runner = checkpoints.restore_content(content, str(path), config)
    num_seeds = checkpoints.seeds_in(content.meta)
    if index is not None and not 0 <= index < num_seeds:
        if num_seeds == 1:
            raise ValueError(f"index={index}: {path} holds one seed (use index=0 or None)")
        raise ValueError(f"index={index}: {path} holds seeds 0..{num_seeds - 1}")
    if index is not None:
        runner = jax.tree.map(lambda x: x[index], runner)
    else:
        runner = public_state(runner, num_seeds)
    meta = {**content.meta, "checkpoint": str(path), **({} if index is None else {"index": index})}
    batched = num_seeds > 1 and index is None
    return SavedRun(content.config, policy_params(content.config, runner, batched), runner, meta)


def _load_params_only(
    content: ckpt.Checkpoint, path: Path, config: Config | None, index: int | None
) -> SavedRun:
    """`load` of one process's part of a multi-process run in fewer processes: the parameters
    (replicated, so whole in the part) without a `runner_state` (None); resume it with
    `python -m a3c_jax.launch` and as many processes."""
    from a3c_jax.training.loop import make_trainer

    if config is not None:
        ckpt.check_config(content.config, config, str(path))
    num_seeds = checkpoints.seeds_in(content.meta)
    params = checkpoints.replicated_params(content, make_trainer(content.config).init)
    if index is not None and not 0 <= index < num_seeds:
        raise ValueError(f"index={index}: {path} holds seeds 0..{num_seeds - 1}")
    params = jax.tree.map(lambda x: x[index], params) if index is not None else params
    if index is None:
        params = public_state(params, num_seeds)
    meta = {**content.meta, "checkpoint": str(path), "batched": num_seeds > 1}
    if index is not None:
        meta["index"] = index
    return SavedRun(content.config, params, None, meta)
