"""Checkpointing a run: save (atomic, keep the newest N), find and restore `RunnerState`s.

`checkpoint.py` is the file format; this is what a run does with it. The driver hands states
with a seed axis `[S, ...]` (S >= 1) and never touches a file name. On disk a one-seed state is
kept without the seed axis (`meta["batched"]` False), as a3c_jax has always written it, so old
checkpoints load and new ones load in older versions.

A run over several processes (`a3c_jax.launch`) keeps one file per process, in the same format,
in that process's own folder (`run_folder.RunFolder.checkpoint_dir`): each replicated array once
(parameters, optimiser state, keys, counters) and, of each array split over the devices (the
environments, replay), this process's shards stacked in device order (`meta["split"]`). Every
process writes and reads only its own file, so no filesystem needs to be shared between hosts
and nothing runs in background threads; orbax, the field's tool for multi-host checkpoints,
would need a filesystem all hosts see and brings its own threads and format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from a3c_jax.config import Config
from a3c_jax.core.types import Params, PRNGKey, RunnerState, TrainState
from a3c_jax.errors import CheckpointWriteError
from a3c_jax.runs import checkpoint_file as ckpt
from a3c_jax.runs import safe_io


def state_template(init: Callable[[PRNGKey], RunnerState], num_seeds: int) -> Any:
    """The `RunnerState` structure (shapes and dtypes only) that `init` makes for `num_seeds`
    seeds, with the seed axis `[num_seeds, ...]`; `jax.eval_shape`, nothing compiled."""
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    return jax.eval_shape(jax.vmap(init), keys)


@jax.jit
def _first_seed(state: Any) -> Any:
    """`state` `[1, ...]` without its seed axis: one program for the whole state, where an
    eager `x[0]` is one for every leaf shape (each compiled on first use)."""
    return jax.tree.map(lambda x: x[0], state)


def to_file(state: Any, num_seeds: int) -> Any:
    """`state` `[S, ...]` as a checkpoint stores it: one seed without the seed axis."""
    return _first_seed(state) if num_seeds == 1 else state


def from_file(state: Any, meta: Mapping[str, Any]) -> Any:
    """A stored state with the seed axis `[S, ...]` (added back for a one-seed file)."""
    return state if meta.get("batched") else jax.tree.map(lambda x: x[None], state)


def seeds_in(meta: Mapping[str, Any]) -> int:
    """The number of seeds a checkpoint holds (>= 1)."""
    return int(meta.get("num_seeds", 1)) if meta.get("batched") else 1


def process_arrays(state: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """This process's part of a multi-process `state`: `{key path: array}` with each replicated
    leaf once and each leaf split over processes as its local shards stacked `[n, ...]` (in
    device-id order); and the key paths of the latter."""
    arrays, split = {}, []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = jax.tree_util.keystr(path)
        if leaf.is_fully_replicated:
            arrays[name] = np.asarray(leaf.addressable_data(0))
        else:
            shards = sorted(leaf.addressable_shards, key=lambda s: s.device.id)
            arrays[name] = np.stack([np.asarray(s.data) for s in shards])
            split.append(name)
    return arrays, split


def assemble(content: ckpt.Checkpoint, like: Any, source: str) -> Any:
    """The global state of a multi-process run from this process's file (`process_arrays`);
    `like`, a state of the same run (fresh from `init`), gives each leaf's shape and sharding."""
    split = set(content.meta.get("split", ()))

    def one(path: Any, leaf: jax.Array) -> jax.Array:
        name = jax.tree_util.keystr(path)
        if name not in content.arrays:
            raise ckpt.CheckpointError(f"{source} does not fit this training state: no {name}")
        devices = sorted(leaf.sharding.addressable_devices, key=lambda d: d.id)
        data = content.arrays[name]
        pieces = list(data) if name in split else [data] * len(devices)
        arrays = [jax.device_put(p, d) for p, d in zip(pieces, devices, strict=True)]
        return jax.make_array_from_single_device_arrays(leaf.shape, leaf.sharding, arrays)

    return jax.tree_util.tree_map_with_path(one, like)


def replicated_params(content: ckpt.Checkpoint, init: Callable[[PRNGKey], RunnerState]) -> Any:
    """The parameters `[S, ...]` in one process's part of a multi-process run (replicated, so
    whole in every part): what `a3c-jax eval` needs, read in a single process."""
    prefix = ".train_state.params"
    template = state_template(init, seeds_in(content.meta)).train_state.params
    arrays = {k[len(prefix) :]: v for k, v in content.arrays.items() if k.startswith(prefix)}
    return ckpt.unflatten_state(arrays, template, source=f"{content.meta.get('process')}")


def restore(
    path: str | os.PathLike[str],
    config: Config | None = None,
    init: Callable[[PRNGKey], RunnerState] | None = None,
    like: RunnerState | None = None,
) -> tuple[ckpt.Checkpoint, RunnerState]:
    """Reads a checkpoint file into a `RunnerState` with the seed axis `[S, ...]`.

    `init` is the saved config's `Trainer.init` (built here if not given): the template of the
    arrays. A multi-process run's file needs `like`, a state of the run (`assemble`). If `config`
    is given and differs from the saved one, raises `ConfigMismatchError` naming the fields;
    damaged files and states of another shape raise `CheckpointError`.
    """
    return restore_content(ckpt.read_checkpoint(path), str(path), config, init, like)


def restore_content(
    content: ckpt.Checkpoint,
    path: str,
    config: Config | None = None,
    init: Callable[[PRNGKey], RunnerState] | None = None,
    like: RunnerState | None = None,
) -> tuple[ckpt.Checkpoint, RunnerState]:
    """`restore` of a checkpoint already read (from `path`)."""
    if config is not None:
        ckpt.check_config(content.config, config, str(path))
    if content.meta.get("processes", 1) > 1:
        if like is None or jax.process_count() != content.meta["processes"]:
            raise ckpt.CheckpointError(
                f"{path} is one process's part of a run over {content.meta['processes']} "
                "processes: resume it with python -m a3c_jax.launch and as many processes"
            )
        return content, assemble(content, like, str(path))
    if init is None:
        from a3c_jax.training.loop import make_trainer

        init = make_trainer(content.config).init
    num_seeds = seeds_in(content.meta)
    template = jax.eval_shape(lambda s: to_file(s, num_seeds), state_template(init, num_seeds))
    state = ckpt.unflatten_state(content.arrays, template, source=str(path))
    return content, from_file(state, content.meta)


def newest_readable(
    folder: str | os.PathLike[str], log: Callable[[str], None] = print
) -> tuple[Path, ckpt.Checkpoint]:
    """The newest checkpoint in `folder` that reads and verifies (its checksum), with its
    contents; a damaged newer one is skipped, saying so through `log` and which one is used.
    Raises `CheckpointError` if none verifies."""
    found = ckpt.list_checkpoints(folder)
    damaged = []
    for path in reversed(found):
        try:
            content = ckpt.read_checkpoint(path)
        except ckpt.CheckpointError as error:
            damaged.append(path.name)
            log(f"warning: skipping a damaged checkpoint: {error}")
            continue
        if damaged:
            log(f"using {path.name}, the newest checkpoint that verifies")
        return path, content
    raise ckpt.CheckpointError(
        f"{folder}: no checkpoint verifies ({', '.join(damaged) or 'none found'})"
    )


def update_of(path: Path) -> int:
    """The update in a checkpoint's name (`update_000000012.ckpt`, `abandoned_1_update_...`)."""
    return int(path.name.rsplit("update_", 1)[1].split(".")[0])


def start_timeline(folder: str | os.PathLike[str], parent: Path) -> list[Path]:
    """Makes the checkpoint `parent` in `folder` the head of the run's timeline: a resume from
    it continues there, so every checkpoint of a later update (of the timeline it leaves, or a
    damaged newer one that was skipped) is set aside, renamed `abandoned_{k}_update_N.ckpt`
    (`k` counts the timelines left). Set aside, never deleted: they can still be loaded or
    resumed by name, but a later `--resume FOLDER` never jumps back to them, and pruning
    counts only the timeline's own. Returns the new names."""
    folder = Path(folder)
    later = [p for p in ckpt.list_checkpoints(folder) if update_of(p) > update_of(parent)]
    if not later:
        return []
    taken = [int(p.name.split("_")[1]) for p in folder.glob("abandoned_*_update_*.ckpt")]
    k = max(taken, default=-1) + 1
    moved = []
    for path in later:
        target = path.with_name(f"abandoned_{k}_{path.name}")
        safe_io.check_target(target)
        os.replace(path, target)
        moved.append(target)
    return moved


def _root_of(folder: Path) -> Path:
    """The run folder above a checkpoint folder (`RUN/checkpoints[/process_i]`): the folders
    between them must be real folders, never symlinks."""
    for parent in [folder, *folder.parents]:
        if parent.name == "checkpoints":
            return parent.parent
    return folder


class Checkpointer:
    """Saves a run's states into its `checkpoints/` folder and keeps the newest `keep`.

    A save may be `provisional` (a run's first, early checkpoint): that one is deleted once the
    next one is written, so that it does not count against `keep`. The folder and the files are
    written through `safe_io` (no symlinks below the run folder)."""

    def __init__(self, folder: Path, config: Config, keep: int):
        self.folder, self.config, self.keep = Path(folder), config, keep
        self.provisional: Path | None = None
        self.root = _root_of(self.folder)
        safe_io.check_folders(self.folder / "_", self.root)  # before the run, not at its end

    def save(self, state: RunnerState, meta: Mapping[str, Any], provisional: bool = False) -> Path:
        """Writes `state` `[S, ...]` (atomically) as `update_{meta['update']}.ckpt`, with
        `meta` (and `batched`), then deletes all but the newest `keep`. Returns its path.
        Raises `CheckpointWriteError` (older checkpoints intact) if the file cannot be written."""
        num_seeds = int(meta["num_seeds"])
        path = ckpt.checkpoint_path(self.folder, int(meta["update"]))
        safe_io.make_folders(self.folder, self.root)  # UnsafePathError: a symlinked folder
        try:
            if jax.process_count() > 1:
                arrays, split = process_arrays(state)
                processes = {"processes": jax.process_count(), "process": jax.process_index()}
                meta = {**meta, "batched": True, **processes, "split": split}
                ckpt.write_atomic(path, ckpt.encode(arrays, self.config, meta))
            else:
                meta = {**meta, "batched": num_seeds > 1}
                ckpt.save_checkpoint(path, to_file(state, num_seeds), self.config, meta)
        except OSError as error:
            kept = [p.name for p in ckpt.list_checkpoints(self.folder)]
            raise CheckpointWriteError(
                f"cannot write the checkpoint {path} ({error.strerror or error}); the older "
                f"checkpoints are intact: {', '.join(kept) or 'none yet'} in {self.folder}"
            ) from error
        if self.provisional is not None and self.provisional != path:
            self.provisional.unlink(missing_ok=True)
        self.provisional = path if provisional else None
        ckpt.prune_checkpoints(self.folder, self.keep)
        return path

    def latest(self) -> Path | None:
        """The newest checkpoint in the folder, if any."""
        found = ckpt.list_checkpoints(self.folder)
        return found[-1] if found else None


# ------------------------------------------------------------------------ the store's checkpoints

ASYNC_TRAINER = "async"  # a checkpoint's meta["trainer"]: the store of an asynchronous run


def store_template(config: Config) -> tuple[TrainState, Callable[[jax.Array], Params]]:
    """The store's `TrainState` over the flat parameters `[P]` (shapes only) and `unravel`
    (`[P]` -> the networks' parameters); nothing compiled."""
    from a3c_jax import envs
    from a3c_jax.algorithms.networks import make_networks
    from a3c_jax.algorithms.optim import init_train_state, make_optimizer, unraveler

    networks = make_networks(config, envs.make_env(config.env_name))
    optimizer = make_optimizer(config)
    shapes = jax.eval_shape(networks.init, jax.random.PRNGKey(0))
    flat, unravel = unraveler(shapes)
    return jax.eval_shape(lambda p: init_train_state(optimizer, p), flat), unravel


def restore_store(content: ckpt.Checkpoint, source: str) -> TrainState:
    """The store's `TrainState` `[P]` in a checkpoint of an asynchronous run."""
    if content.meta.get("trainer") != ASYNC_TRAINER:
        raise ckpt.CheckpointError(f"{source} is not a checkpoint of an asynchronous (a3c) run")
    return ckpt.unflatten_state(content.arrays, store_template(content.config)[0], source)


def saved_params(content: ckpt.Checkpoint, source: str) -> Params:
    """The networks' parameters in a checkpoint of an asynchronous run (for `load`)."""
    return store_template(content.config)[1](restore_store(content, source).params)
