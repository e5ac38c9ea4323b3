"""The run folder: its layout, its JSON files and the checks before one is written.

A run folder holds:

    config.json        the resolved `Config` (every field; `a3c-jax train --config` reads it back)
    run.json           library versions, seed(s), chunking, command line, status and progress
    metrics.csv        one row per chunk of updates and per seed (`metrics_log.METRIC_COLUMNS`)
    checkpoints/       `update_000001234.ckpt`: the whole `RunnerState`, periodic and final
    tensorboard/       event files per seed (only with `tensorboard=True`)

`RunFolder` is the one place that knows these names; the other parts take their paths from it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import jax

from a3c_jax import checkpoint as ckpt
from a3c_jax import distributed
from a3c_jax.config import Config, ConfigError

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"


class RunDirError(ConfigError):
    """A run folder that cannot be used as asked (it would overwrite a run, or holds none)."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    ckpt.write_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunDirError(f"cannot read {path}: {error}") from error


def versions() -> dict[str, str]:
    """The versions of a3c_jax and the libraries a run's numbers depend on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("a3c_jax", "jax", "jaxlib", "flax", "optax", "gymnax"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "unknown"
    return out


class RunFolder(NamedTuple):
    """The paths of one run folder and its JSON files (`config.json`, `run.json`).

    In a run over several processes (`a3c_jax.launch`) process 0 alone writes the folder's
    files (`writes`); each process keeps its own checkpoints, in `checkpoints/process_{i}/`.
    """

    path: Path

    @property
    def writes(self) -> bool:
        """Whether this process writes the folder's shared files (config, run.json, metrics)."""
        return distributed.is_output_process()

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        """`checkpoints/`, or this process's `checkpoints/process_{i}/` in a multi-process run."""
        if jax.process_count() == 1:
            return self.path / CHECKPOINT_DIR
        return self.path / CHECKPOINT_DIR / f"process_{jax.process_index()}"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    def write_config(self, config: Config) -> None:
        if self.writes:
            write_json(self.config_file, config.to_dict())

    def read_info(self) -> dict[str, Any]:
        """`run.json` (empty if the run has none: a folder written by an older a3c_jax)."""
        return read_json(self.run_file) if self.run_file.exists() else {}

    def write_info(self, info: dict[str, Any]) -> None:
        if self.writes:
            write_json(self.run_file, info)


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` holds an a3c_jax run (its `run.json` or `config.json`)."""
    folder = RunFolder(Path(path))
    return folder.run_file.is_file() or folder.config_file.is_file()


def prepare_new_run_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Checks that a new run may be written to `path`, emptying it if `overwrite`.

    A folder that exists and is not empty is never touched without `overwrite`; with it, only a
    folder that holds an a3c_jax run is emptied (never an unrelated one). Raises `RunDirError`.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not is_run_dir(path):
            raise RunDirError(
                f"--out {path}: the folder is not empty and holds no a3c_jax run; "
                "choose another folder"
            )
        if not overwrite:
            raise RunDirError(
                f"--out {path}: already holds a run; pass --overwrite to replace it, "
                f"or --resume {path} to continue it"
            )
        shutil.rmtree(path)
    return path


def create(path: str | os.PathLike[str], overwrite: bool = False) -> RunFolder:
    """A new run folder at `path` (`prepare_new_run_dir`, then created; by process 0 alone)."""
    folder = RunFolder(Path(path))
    if folder.writes:
        prepare_new_run_dir(path, overwrite).mkdir(parents=True, exist_ok=True)
    return folder


def default_run_dir(config: Config, root: str | os.PathLike[str] = "runs") -> Path:
    """`runs/{algo}_{env}_{YYYYmmdd-HHMMSS}` (with a suffix if that exists already)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{config.algo}_{config.env_name}_{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}_{i}"), i + 1
    return path


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint a run folder's newest file, or `path` itself if it is a checkpoint file."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run folder or checkpoint file")
    folder = RunFolder(path)
    found = ckpt.list_checkpoints(folder.checkpoint_dir)
    if not found and jax.process_count() == 1:  # a multi-process run: process 0's part
        found = ckpt.list_checkpoints(path / CHECKPOINT_DIR / "process_0")
    if not found:
        raise RunDirError(f"{path}: holds no checkpoint (looked in {folder.checkpoint_dir})")
    return found[-1]
