"""What every driver of a run folder shares (`chunked` for the jitted trainer, `worker_runs` for
the worker trainers): the run's options as recorded in run.json, its seeds' keys, its clock, the
checkpoint a resume starts from, and what happens when the folder is lost."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax

from a3c_jax.config import Config, ConfigError
from a3c_jax.errors import ConfigMismatchError, RunDirError, RunFolderLostError
from a3c_jax.runs import checkpoints, run_folder
from a3c_jax.runs.run_folder import RunFolder, read_json


class RunOptions(NamedTuple):
    """How a run chunks, checkpoints and logs: recorded in run.json ("options") and restored by
    a resume, where not given again (`resolve_options`)."""

    chunk_updates: int | None = None  # None: `default_chunk_updates`
    checkpoint_every: int | None = None  # None: every `checkpoint_seconds`
    checkpoint_seconds: float = 60.0
    keep_checkpoints: int = 3
    tensorboard: bool = False


def resolve_options(given: dict[str, Any], saved: dict[str, Any]) -> RunOptions:
    """The options of this invocation: those `given` (not None), else the `saved` ones of the
    run (a resume), else `RunOptions`' defaults. The two checkpoint timings go together: giving
    either replaces both saved ones."""
    out = {**RunOptions()._asdict(), **{k: v for k, v in saved.items() if k in RunOptions._fields}}
    if given.get("checkpoint_every") is not None or given.get("checkpoint_seconds") is not None:
        out.update(checkpoint_every=None, checkpoint_seconds=RunOptions().checkpoint_seconds)
    out.update({k: v for k, v in given.items() if v is not None})
    options = RunOptions(**out)
    for name in ("chunk_updates", "checkpoint_every"):
        value = getattr(options, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(f"{name}={value!r} must be a positive integer (or None)")
    if options.keep_checkpoints < 1:
        raise ConfigError(f"keep_checkpoints={options.keep_checkpoints} must be at least 1")
    if not options.checkpoint_seconds > 0:
        raise ConfigError(f"checkpoint_seconds={options.checkpoint_seconds} must be positive")
    return options


def invocation_info(info: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    """What run.json records as an invocation starts: the library versions, the run's
    `options`, its first command line (kept) and every invocation's (this one appended), and
    the status "running"."""
    command = list(sys.argv)
    return {
        "versions": run_folder.versions(),
        "command": info.get("command", command),
        "commands": [*info.get("commands", []), command],
        "options": options._asdict(),
        "status": "running",
    }


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """The keys `[num_seeds, 2]` of a run's seeds: `PRNGKey(seed)` for one seed, else
    `jax.random.split(PRNGKey(seed), num_seeds)`."""
    key = jax.random.PRNGKey(seed)
    return jax.random.split(key, num_seeds) if num_seeds > 1 else key[None]


def default_chunk_updates(num_updates: int, target_chunks: int = 50) -> int:
    """Updates per jitted chunk: about `target_chunks` chunks per run (see
    `benchmarks/progress_overhead.py` for the measured cost of chunking)."""
    return max(1, math.ceil(num_updates / target_chunks))


def resume_target(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """The run folder to resume and the checkpoint asked for: `path` is a run folder (None: its
    newest checkpoint that verifies) or a checkpoint file in one (`FOLDER/checkpoints/...`)."""
    path = Path(path)
    if not path.is_file():
        return path, None
    parent = path.parent
    if parent.name.startswith("process_"):
        parent = parent.parent
    folder = parent.parent
    if parent.name != run_folder.CHECKPOINT_DIR or not run_folder.written_by_a3c_jax(folder):
        raise RunDirError(
            f"--resume {path}: a checkpoint outside a run folder; resume a run folder (or a "
            f"checkpoint in its {run_folder.CHECKPOINT_DIR}/), or load it with a3c_jax.load"
        )
    return folder, path


@dataclasses.dataclass
class Clock:
    """Seconds a run has trained, over all its invocations."""

    offset: float  # seconds of earlier invocations (resume)
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def __call__(self) -> float:
        return self.offset + time.perf_counter() - self.start


def newest_checkpoint(run_dir: Path, log: Callable[[str], None]) -> tuple[Path, Any]:
    """The newest checkpoint of the run in `run_dir` that verifies (`newest_readable`)."""
    own = folder = RunFolder(run_dir).checkpoint_dir
    if not checkpoints.ckpt.list_checkpoints(folder) and jax.process_count() == 1:
        folder = run_dir / run_folder.CHECKPOINT_DIR / "process_0"  # a multi-process run's
    if not checkpoints.ckpt.list_checkpoints(folder):
        raise RunDirError(
            f"{run_dir}: holds no checkpoint in {own} (the run stopped before its first one, "
            "while compiling or in its first chunk): start it again with --out "
            f"{run_dir} --overwrite"
        )
    return checkpoints.newest_readable(folder, log)


def check_belongs(run_dir: Path, saved: Config, checkpoint: Path) -> None:
    """Raises `ConfigMismatchError` if the checkpoint `checkpoint` (trained with `saved`) is
    not of the run in `run_dir`: its configuration differs from the run's `config.json` (a
    checkpoint of another run, configuration or algorithm copied in). A folder without a
    `config.json` (written by an old version) is not checked."""
    folder = RunFolder(run_dir)
    if not os.path.lexists(folder.config_file):
        return
    run_config = Config.from_dict(read_json(folder.config_file), source=str(folder.config_file))
    differences = saved.diff(run_config)
    if differences:
        listed = ", ".join(
            f"{name}: checkpoint {a!r}, run {b!r}" for name, (a, b) in differences.items()
        )
        raise ConfigMismatchError(
            f"--resume {run_dir}: {checkpoint.name} is not a checkpoint of this run (its "
            f"configuration differs from {folder.config_file}: {listed}); remove it, or "
            "resume the run it belongs to"
        )


def start_timeline(checkpoint: Path, log: Callable[[str], None]) -> None:
    """A resume from `checkpoint` continues the run's timeline there: the checkpoints of later
    updates beside it are set aside (`checkpoints.start_timeline`), saying so through `log`."""
    moved = checkpoints.start_timeline(checkpoint.parent, checkpoint)
    if moved:
        log(
            f"resuming from {checkpoint.name} starts a new timeline: set aside the later "
            f"checkpoints as {', '.join(p.name for p in moved)} (kept, never resumed by default)"
        )


def rescue_folder(lost: Path, config: Config) -> RunFolder:
    """A new run folder in the temporary directory for the state of a run whose folder `lost`
    was deleted (its config.json written)."""
    folder = RunFolder(Path(tempfile.mkdtemp(prefix=f"a3c_jax-rescued-{lost.name}-")))
    folder.write_config(config)
    return folder


def folder_lost(lost: Path, update: int, checkpoint: Path) -> RunFolderLostError:
    """The error of a run stopped because its folder `lost` was deleted or replaced."""
    return RunFolderLostError(
        f"the run folder {lost} was deleted or replaced during training: stopped; the state at "
        f"update {update} is saved in {checkpoint} (resume it with a3c-jax train --resume "
        f"{checkpoint.parent.parent})"
    )
