"""The run folder: its layout, its JSON files and the checks before one is written.

A run folder holds:

    config.json        the resolved `Config` (every field; `a3c-jax train --config` reads it back)
    run.json           library versions, seed(s), chunking, command line, status and progress
    metrics.csv        one row per chunk of updates and per seed (`metrics_log.METRIC_COLUMNS`)
    checkpoints/       `update_000001234.ckpt`: the whole `RunnerState`, periodic and final
    tensorboard/       event files per seed (only with `tensorboard=True`)
    .a3c_jax.lock      the lock a running process holds (`run_claim`)

`RunFolder` is the one place that knows these names; the other parts take their paths from it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import stat
from pathlib import Path
from typing import Any, NamedTuple

import jax

from a3c_jax import distributed
from a3c_jax.config import Config
from a3c_jax.errors import RunDirError
from a3c_jax.runs import checkpoint_file as ckpt
from a3c_jax.runs import safe_io

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".a3c_jax.lock"
WRITTEN_BY = "a3c_jax"  # run.json's "written_by": how a folder a3c_jax wrote is recognised
# Everything a3c_jax writes at a run folder's top level (and the temporary files of atomic writes).
RUN_ENTRIES = (CONFIG_FILE, RUN_FILE, METRICS_FILE, CHECKPOINT_DIR, TENSORBOARD_DIR, LOCK_FILE)
_TEMPORARY = re.compile(r"^\.(.+)\.tmp-(\d+)$")  # `checkpoint.write_atomic`'s temporary names


def write_json(path: Path, data: dict[str, Any]) -> None:
    ckpt.write_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from the regular file `path`; `RunDirError` naming it otherwise."""
    try:
        data = json.loads(safe_io.read_regular(path).decode("utf-8"))
    except RunDirError:
        raise
    except (OSError, ValueError) as error:
        raise RunDirError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise RunDirError(f"cannot read {path}: holds a JSON {type(data).__name__}, not an object")
    return data


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
        """Writes `run.json` (marked `"written_by": "a3c_jax"`, so that `--overwrite` knows the
        folder for a3c_jax's own)."""
        if self.writes:
            write_json(self.run_file, {"written_by": WRITTEN_BY, **info})


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` holds an a3c_jax run (its `run.json` or `config.json`)."""
    folder = RunFolder(Path(path))
    return folder.run_file.is_file() or folder.config_file.is_file()


def written_by_a3c_jax(path: str | os.PathLike[str]) -> bool:
    """Whether `path/run.json` says that a3c_jax wrote the folder: its `"written_by"` mark, or
    (folders of versions before the mark) the a3c_jax version it records."""
    try:
        info = json.loads(safe_io.read_regular(Path(path) / RUN_FILE).decode("utf-8"))
    except (OSError, ValueError):  # UnsafePathError is a ValueError
        return False
    if not isinstance(info, dict):
        return False
    versions = info.get("versions")
    return info.get("written_by") == WRITTEN_BY or (
        isinstance(versions, dict) and WRITTEN_BY in versions
    )


def temporary_pid(name: str) -> int | None:
    """The process id in a temporary file name of `checkpoint.write_atomic` (`.NAME.tmp-PID`)."""
    match = _TEMPORARY.match(name)
    return int(match.group(2)) if match else None


# What a3c_jax writes, folder by folder: the names of its files (regular files only), and its
# subfolders with what they hold. `--overwrite` deletes these and nothing else, anywhere.
_Rule = tuple[re.Pattern, dict[re.Pattern, "_Rule"]]
_NOTHING = re.compile(r"(?!)")
CHECKPOINT_FILE = re.compile(r"^(update_\d+|abandoned_\d+_update_\d+)\.ckpt$")
_CHECKPOINTS: _Rule = (CHECKPOINT_FILE, {re.compile(r"^process_\d+$"): (CHECKPOINT_FILE, {})})
_TENSORBOARD: _Rule = (_NOTHING, {re.compile(r"^seed_\d+$"): (re.compile(r"^events\.out\."), {})})
_RUN: _Rule = (
    re.compile(
        "^("
        + "|".join(re.escape(n) for n in (CONFIG_FILE, RUN_FILE, METRICS_FILE, LOCK_FILE))
        + ")$"
    ),
    {
        re.compile(f"^{CHECKPOINT_DIR}$"): _CHECKPOINTS,
        re.compile(f"^{TENSORBOARD_DIR}$"): _TENSORBOARD,
    },
)


def _walk(folder: Path, rule: _Rule, prefix: str = "") -> tuple[list[Path], list[Path], list[str]]:
    """The files a3c_jax wrote below `folder` (by `rule`), its folders (innermost first), and
    every other entry (names relative to the run folder): a symlink or a special file is never
    a3c_jax's."""
    files, folders, foreign = [], [], []
    pattern, subfolders = rule
    for entry in sorted(folder.iterdir()):
        name = entry.name
        match = _TEMPORARY.match(name)
        base = match.group(1) if match else name
        try:
            mode = entry.lstat().st_mode
        except FileNotFoundError:
            continue
        sub = next((r for p, r in subfolders.items() if p.match(name)), None)
        if stat.S_ISDIR(mode) and sub is not None:
            f, d, x = _walk(entry, sub, f"{prefix}{name}/")
            files, folders, foreign = files + f, folders + d + [entry], foreign + x
        elif stat.S_ISREG(mode) and pattern.match(base):
            files.append(entry)
        else:
            foreign.append(f"{prefix}{name}" + ("/" if stat.S_ISDIR(mode) else ""))
    return files, folders, foreign


def foreign_entries(path: Path) -> list[str]:
    """The entries anywhere below the run folder `path` that a3c_jax does not write (names
    relative to it): files and folders of other names, symlinks, special files."""
    return sorted(_walk(Path(path), _RUN)[2])


def remove_own_entries(path: Path, keep: tuple[str, ...] = (LOCK_FILE,)) -> None:
    """Deletes what a3c_jax wrote below the run folder `path` (but for the top-level names in
    `keep`): its files, then its folders if they are then empty. Nothing else is touched."""
    files, folders, _ = _walk(Path(path), _RUN)
    for file in files:
        if not (file.parent == Path(path) and file.name in keep):
            file.unlink(missing_ok=True)
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def check_writable(path: Path) -> None:
    """Raises `RunDirError` unless a folder can be made at `path`: not a file, below folders
    only, in a folder this process may write to."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path}: exists and is not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"--out {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise RunDirError(f"--out {path}: cannot write in {parent} (permission denied)")
            return


def check_replaceable(path: Path, overwrite: bool) -> None:
    """Raises `RunDirError` unless a new run may be written to the folder `path` (which exists):
    it is empty (but for a lock file), or, with `overwrite`, holds an a3c_jax run and nothing
    else (`written_by_a3c_jax`, `foreign_entries`). Nothing is deleted here."""
    if not any(p.name != LOCK_FILE for p in path.iterdir()):
        return
    if not written_by_a3c_jax(path):
        raise RunDirError(
            f"--out {path}: the folder is not empty and holds no a3c_jax run (no {RUN_FILE} "
            "written by a3c_jax); --overwrite replaces only a run folder a3c_jax wrote: choose "
            "another folder"
        )
    foreign = foreign_entries(path)
    if foreign:
        raise RunDirError(
            f"--out {path}: holds a run and also {', '.join(foreign)}, which a3c_jax did not "
            "write; --overwrite replaces only what a3c_jax wrote: move them or choose another "
            "folder"
        )
    if not overwrite:
        raise RunDirError(
            f"--out {path}: already holds a run; pass --overwrite to replace it, "
            f"or --resume {path} to continue it"
        )


def prepare_new_run_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Checks that a new run may be written to `path` (`check_writable`, `check_replaceable`);
    deletes nothing (`run_claim.claim` replaces an old run once the new one has started).
    Raises `RunDirError`."""
    path = Path(path)
    check_writable(path)
    if path.is_dir():
        check_replaceable(path, overwrite)
    return path


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
