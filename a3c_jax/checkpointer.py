"""Checkpointing a run: save (atomic, keep the newest N), find and restore `RunnerState`s.

`checkpoint.py` is the file format; this is what a run does with it. The driver hands states
with a seed axis `[S, ...]` (S >= 1) and never touches a file name. On disk a one-seed state is
kept without the seed axis (`meta["batched"]` False), as a3c_jax has always written it, so old
checkpoints load and new ones load in older versions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax

from a3c_jax import checkpoint as ckpt
from a3c_jax.config import Config
from a3c_jax.types import PRNGKey, RunnerState


def state_template(init: Callable[[PRNGKey], RunnerState], num_seeds: int) -> Any:
    """The `RunnerState` structure (shapes and dtypes only) that `init` makes for `num_seeds`
    seeds, with the seed axis `[num_seeds, ...]`; `jax.eval_shape`, nothing compiled."""
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    return jax.eval_shape(jax.vmap(init), keys)


def to_file(state: Any, num_seeds: int) -> Any:
    """`state` `[S, ...]` as a checkpoint stores it: one seed without the seed axis."""
    return jax.tree.map(lambda x: x[0], state) if num_seeds == 1 else state


def from_file(state: Any, meta: Mapping[str, Any]) -> Any:
    """A stored state with the seed axis `[S, ...]` (added back for a one-seed file)."""
    return state if meta.get("batched") else jax.tree.map(lambda x: x[None], state)


def seeds_in(meta: Mapping[str, Any]) -> int:
    """The number of seeds a checkpoint holds (>= 1)."""
    return int(meta.get("num_seeds", 1)) if meta.get("batched") else 1


def restore(
    path: str | os.PathLike[str],
    config: Config | None = None,
    init: Callable[[PRNGKey], RunnerState] | None = None,
) -> tuple[ckpt.Checkpoint, RunnerState]:
    """Reads a checkpoint file into a `RunnerState` with the seed axis `[S, ...]`.

    `init` is the saved config's `Trainer.init` (built here if not given): the template of the
    arrays. If `config` is given and differs from the saved one, raises `ConfigMismatchError`
    naming the fields; damaged files and states of another shape raise `CheckpointError`.
    """
    content = ckpt.read_checkpoint(path)
    if config is not None:
        ckpt.check_config(content.config, config, str(path))
    if init is None:
        from a3c_jax.train import make_trainer

        init = make_trainer(content.config).init
    num_seeds = seeds_in(content.meta)
    template = jax.eval_shape(lambda s: to_file(s, num_seeds), state_template(init, num_seeds))
    state = ckpt.unflatten_state(content.arrays, template, source=str(path))
    return content, from_file(state, content.meta)


class Checkpointer:
    """Saves a run's states into its `checkpoints/` folder and keeps the newest `keep`."""

    def __init__(self, folder: Path, config: Config, keep: int):
        self.folder, self.config, self.keep = Path(folder), config, keep

    def save(self, state: RunnerState, meta: Mapping[str, Any]) -> Path:
        """Writes `state` `[S, ...]` (atomically) as `update_{meta['update']}.ckpt`, with
        `meta` (and `batched`), then deletes all but the newest `keep`. Returns its path."""
        num_seeds = int(meta["num_seeds"])
        path = ckpt.checkpoint_path(self.folder, int(meta["update"]))
        meta = {**meta, "batched": num_seeds > 1}
        ckpt.save_checkpoint(path, to_file(state, num_seeds), self.config, meta)
        ckpt.prune_checkpoints(self.folder, self.keep)
        return path

    def latest(self) -> Path | None:
        """The newest checkpoint in the folder, if any."""
        found = ckpt.list_checkpoints(self.folder)
        return found[-1] if found else None
