"""Run folders: training in jitted chunks with progress, metrics, checkpoints and resume.

A run folder holds:

    config.json        the resolved `Config` (every field; `a3c-jax train --config` reads it back)
    run.json           library versions, seed(s), chunking, command line, status and progress
    metrics.csv        one row per chunk of updates and per seed (`METRIC_COLUMNS`)
    checkpoints/       `update_000001234.ckpt`: the whole `RunnerState`, periodic and final
    tensorboard/       event files per seed (only with `tensorboard=True`)

`train_run` trains in chunks of `chunk_updates` updates, each chunk one call of the same jitted
`Trainer.run`, and does its host work (metrics, progress bar, checkpoints, Ctrl-C) between chunks
while the next chunk already runs. Resuming from a checkpoint replays the same compiled chunks on
the same state, so the result is bitwise that of a run that never stopped.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from a3c_jax import checkpoint as ckpt
from a3c_jax.config import Config, ConfigError
from a3c_jax.types import Params, RunnerState, TrainResult

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"

METRIC_COLUMNS = (
    "seed",  # index of the seed within the run (0 .. num_seeds - 1)
    "update",  # updates done at the end of the chunk
    "env_steps",  # environment steps of this seed at the end of the chunk
    "time_s",  # wall-clock seconds since the run started (compile included; resumes continue it)
    "episodes",  # episodes finished in the chunk
    "return_mean",  # undiscounted return over the episodes finished in the chunk (empty: none)
    "return_min",
    "return_max",
    "length_mean",
    "total_loss",  # means over the chunk's updates
    "actor_loss",
    "critic_loss",
    "entropy",
    "grad_norm",
    "learning_rate",  # at the chunk's last update
    "steps_per_second",  # environment steps of all seeds per second over the chunk
)


class RunDirError(ConfigError):
    """A run folder that cannot be used as asked (it would overwrite a run, or holds none)."""


class SavedRun(NamedTuple):
    """What `load` returns. With several seeds every array has a leading `[num_seeds]` axis
    unless `load(..., index=i)` picked one."""

    config: Config
    params: Params  # ready for `a3c_jax.evaluate(config, params, key)` (one seed)
    runner_state: RunnerState
    meta: dict[str, Any]  # update, env_steps, num_seeds, seed, time_s, status, checkpoint, ...


class RunOutcome(NamedTuple):
    """What `train_run` returns."""

    status: str  # "finished", "interrupted" (Ctrl-C) or "stopped" (stop_after)
    run_dir: Path
    runner_state: RunnerState
    update: int  # updates done (per seed)
    checkpoint: Path  # the checkpoint written last
    compile_s: float  # seconds spent compiling the chunk (0 if it was compiled already)
    train_s: float  # seconds from the first chunk's dispatch to the last chunk's metrics


# --------------------------------------------------------------------------- run folders


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` holds an a3c_jax run (its `run.json` or `config.json`)."""
    path = Path(path)
    return (path / RUN_FILE).is_file() or (path / CONFIG_FILE).is_file()


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


def default_run_dir(config: Config, root: str | os.PathLike[str] = "runs") -> Path:
    """`runs/{algo}_{env}_{YYYYmmdd-HHMMSS}` (with a suffix if that exists already)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{config.algo}_{config.env_name}_{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}_{i}"), i + 1
    return path


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


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint a run folder's newest file, or `path` itself if it is a checkpoint file."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run folder or checkpoint file")
    found = ckpt.list_checkpoints(path / CHECKPOINT_DIR)
    if not found:
        raise RunDirError(f"{path}: holds no checkpoint (looked in {path / CHECKPOINT_DIR})")
    return found[-1]


# --------------------------------------------------------------------------- state templates


def state_template(config: Config, num_seeds: int | None) -> Any:
    """The `RunnerState` structure (shapes and dtypes only) of `config` with `num_seeds` seeds
    (`None`: one seed, no seed axis); traced, never compiled."""
    from a3c_jax.train import make_trainer

    init = make_trainer(config).init
    key = jax.random.PRNGKey(0)
    if num_seeds is None:
        return jax.eval_shape(init, key)
    return jax.eval_shape(jax.vmap(init), jax.random.split(key, num_seeds))


def seed_axis(meta: dict[str, Any]) -> int | None:
    """The number of seeds along the leading axis of a checkpoint's arrays (`None`: no axis)."""
    return int(meta["num_seeds"]) if meta.get("batched") else None


def _seed_axis(runner: RunnerState, config: Config) -> int | None:
    """The number of seeds of a (possibly vmapped) runner state of `config`; `None` for an
    unbatched one (compared with the unbatched state's shapes: pmap adds a device axis)."""
    single = state_template(config, None).updates.shape
    shape = np.shape(runner.updates)
    return None if shape == single else int(shape[0])


def policy_params(config: Config, runner: RunnerState, batched: bool) -> Params:
    """The parameters of `runner` as `evaluate` takes them (with a leading seed axis if
    `batched`), with any frozen observation statistics (`wrappers.export_params`). Both device
    backends return the replicated parameters once (`parallel.spread`), so they are the
    runner's own; the environments' state has a device axis over several devices."""
    from a3c_jax import parallel, wrappers

    device_axis = parallel.num_devices(config) > 1
    return wrappers.export_params(
        runner.train_state.params, runner.env.wrapper_state, batched, device_axis
    )


def restore_checkpoint(
    path: str | os.PathLike[str], config: Config | None = None
) -> tuple[ckpt.Checkpoint, RunnerState]:
    """Reads a checkpoint file and puts its arrays back into a `RunnerState`.

    If `config` is given and differs from the saved one, raises `ConfigMismatchError` naming the
    fields. Damaged files and states of another shape raise `CheckpointError`.
    """
    content = ckpt.read_checkpoint(path)
    if config is not None:
        ckpt.check_config(content.config, config, str(path))
    template = state_template(content.config, seed_axis(content.meta))
    return content, ckpt.unflatten_state(content.arrays, template, source=str(path))


# --------------------------------------------------------------------------- Python API


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
    run_dir = prepare_new_run_dir(run_dir, overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    num_seeds = _seed_axis(runner, config)
    ckpt.unflatten_state(  # fails early, with a clear message, on a state of another config
        ckpt.flatten_state(runner), state_template(config, num_seeds), "the result to save"
    )
    update = int(np.max(jax.device_get(runner.updates)))
    env_steps = int(np.max(jax.device_get(runner.train_state.env_steps)))
    meta = {
        "update": update,
        "env_steps": env_steps,
        "num_seeds": num_seeds or 1,
        "batched": num_seeds is not None,
        "seed": seed,
        "time_s": None,
        "status": (
            "diverged"
            if np.any(jax.device_get(runner.diverged))
            else "finished"
            if budget_spent(config, env_steps)
            else "stopped"
        ),
    }
    write_json(run_dir / CONFIG_FILE, config.to_dict())
    write_json(run_dir / RUN_FILE, {"versions": versions(), "source": "a3c_jax.save", **meta})
    path = ckpt.checkpoint_path(run_dir / CHECKPOINT_DIR, update)
    ckpt.save_checkpoint(path, runner, config, meta)
    return path


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
    content, runner = restore_checkpoint(path, config)
    num_seeds = seed_axis(content.meta)
    if index is not None:
        if num_seeds is None:
            if index != 0:
                raise ValueError(f"index={index}: {path} holds one seed (use index=0 or None)")
        elif not 0 <= index < num_seeds:
            raise ValueError(f"index={index}: {path} holds seeds 0..{num_seeds - 1}")
        else:
            runner = jax.tree.map(lambda x: x[index], runner)
    meta = {**content.meta, "checkpoint": str(path)}
    batched = num_seeds is not None and index is None
    return SavedRun(content.config, policy_params(content.config, runner, batched), runner, meta)


# --------------------------------------------------------------------------- metrics


def chunk_rows(
    metrics: dict[str, np.ndarray],
    num_valid: np.ndarray,
    updates: np.ndarray,
    time_s: float,
    steps_per_second: float,
) -> list[dict[str, Any]]:
    """One `METRIC_COLUMNS` row per seed from a chunk's per-update metrics `[S, chunk]`.

    `num_valid[s]` leading updates of seed `s` ran (the rest were no-ops past the budget or after
    a divergence); `updates[s]` is its update count at the chunk's end.
    """
    rows = []
    for s in range(len(num_valid)):
        n = int(num_valid[s])
        if n == 0:
            continue
        m = {k: v[s, :n] for k, v in metrics.items()}
        counts = m["episodes"]
        finished = counts > 0
        episodes = float(np.sum(counts))

        def weighted(name: str, m=m, counts=counts, episodes=episodes) -> float:
            values = np.where(counts > 0, m[name], 0.0)  # no episodes: the carried-over mean
            return float(np.sum(values * counts) / episodes) if episodes else math.nan

        lo = m.get("episode_return_min", m["episode_return"])[finished]
        hi = m.get("episode_return_max", m["episode_return"])[finished]
        rows.append(
            {
                "seed": s,
                "update": int(updates[s]),
                "env_steps": int(m["env_steps"][-1]),
                "time_s": time_s,
                "episodes": int(episodes),
                "return_mean": weighted("episode_return"),
                "return_min": float(np.min(lo)) if lo.size else math.nan,
                "return_max": float(np.max(hi)) if hi.size else math.nan,
                "length_mean": weighted("episode_length"),
                **{
                    name: float(np.mean(m[name]))
                    for name in ("total_loss", "actor_loss", "critic_loss", "entropy", "grad_norm")
                },
                "learning_rate": float(m["learning_rate"][-1]),
                "steps_per_second": steps_per_second,
            }
        )
    return rows


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.7g}"
    return str(value)


class MetricsLog:
    """Appends rows to `metrics.csv` (flushed per chunk) and, optionally, TensorBoard."""

    def __init__(self, run_dir: Path, num_seeds: int, tensorboard: bool = False):
        self.path = run_dir / METRICS_FILE
        new = not self.path.exists()
        self.file = open(self.path, "a", newline="")  # noqa: SIM115 (closed in close())
        self.writer = csv.DictWriter(self.file, fieldnames=METRIC_COLUMNS)
        if new:
            self.writer.writeheader()
        self.tb_writers = []
        if tensorboard:
            from tensorboardX import SummaryWriter

            self.tb_writers = [
                SummaryWriter(str(run_dir / TENSORBOARD_DIR / f"seed_{s}"))
                for s in range(num_seeds)
            ]

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.writer.writerow({k: _format(v) for k, v in row.items()})
            if self.tb_writers:
                tb = self.tb_writers[row["seed"]]
                for name in METRIC_COLUMNS[4:]:
                    if not (isinstance(row[name], float) and math.isnan(row[name])):
                        tb.add_scalar(name, row[name], row["env_steps"])
        self.file.flush()
        for tb in self.tb_writers:
            tb.flush()

    def close(self) -> None:
        self.file.close()
        for tb in self.tb_writers:
            tb.close()


def read_metrics(run_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """`metrics.csv` as columns of floats (empty cells: nan)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as error:
        raise RunDirError(f"cannot read {path}: {error.strerror}") from error
    columns = rows[0].keys() if rows else METRIC_COLUMNS
    return {
        c: np.array([float(r[c]) if r[c] not in ("", None) else math.nan for r in rows])
        for c in columns
    }


def truncate_metrics(run_dir: Path, update: int) -> None:
    """Drops rows past `update` (written after the checkpoint a run resumes from)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if int(r["update"]) <= update]
    if len(kept) == len(rows):
        return
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(kept)
    ckpt.write_atomic(path, buffer.getvalue().encode())


# --------------------------------------------------------------------------- progress


class Progress:
    """A rich progress bar on a terminal (env steps, steps/s, recent return, ETA); elsewhere a
    plain line every `log_every_s` seconds. Writes to stderr."""

    def __init__(self, total_steps: int, start_steps: int, enabled: bool, log_every_s: float = 10):
        from rich.console import Console

        self.total, self.enabled, self.log_every_s = total_steps, enabled, log_every_s
        self.console = Console(stderr=True)
        self.bar = None
        self.last_log = self.last_draw = time.perf_counter()
        if enabled and self.console.is_terminal:
            from rich import progress as rp

            # Redrawn from `update` (at most 4 times a second), not by a refresh thread.
            self.bar = rp.Progress(
                rp.TextColumn("[bold]{task.description}"),
                rp.BarColumn(),
                rp.TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
                rp.TextColumn("{task.fields[rate]} steps/s"),
                rp.TextColumn("return {task.fields[ret]}"),
                rp.TimeRemainingColumn(),
                console=self.console,
                auto_refresh=False,
            )
            self.task = self.bar.add_task(
                "training", total=total_steps, completed=start_steps, rate="-", ret="-"
            )
            self.bar.start()

    def update(self, steps: int, rate: float, mean_return: float) -> None:
        ret = "-" if math.isnan(mean_return) else f"{mean_return:.1f}"
        now = time.perf_counter()
        if self.bar is not None:
            draw = now - self.last_draw >= 0.25 or steps >= self.total
            self.bar.update(self.task, completed=steps, rate=f"{rate:,.0f}", ret=ret, refresh=draw)
            if draw:
                self.last_draw = now
        elif self.enabled and now - self.last_log >= self.log_every_s:
            self.last_log = now
            self.console.print(
                f"{steps:,}/{self.total:,} env steps ({100 * steps / self.total:.0f}%), "
                f"{rate:,.0f} steps/s, return {ret}",
                highlight=False,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.refresh()
            self.bar.stop()


@contextlib.contextmanager
def _interruptible(log: Callable[[str], None]) -> Iterator[threading.Event]:
    """Within: the first Ctrl-C (SIGINT) sets the yielded event instead of raising; a second
    one raises `KeyboardInterrupt` as usual. Outside the main thread: no handler."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log("interrupted: saving a checkpoint after the current chunk (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- training


def budget_spent(config: Config, env_steps: int) -> bool:
    """Whether a seed that took `env_steps` environment steps has no further update left: a
    fixed-size update no longer fits in `total_timesteps`, or an episodic run reached it."""
    smallest_update = 1 if config.episodic else config.batch_size
    return env_steps + smallest_update > config.total_timesteps


def default_chunk_updates(num_updates: int, target_chunks: int = 50) -> int:
    """Updates per jitted chunk: about `target_chunks` chunks per run (see
    `benchmarks/progress_overhead.py` for the measured cost of chunking)."""
    return max(1, math.ceil(num_updates / target_chunks))


@functools.lru_cache(maxsize=8)
def _jitted_init(
    config: Config, num_seeds: int, batched: bool, builder: Callable
) -> Callable[[jax.Array], RunnerState]:
    from a3c_jax.train import compiler_options, make_trainer

    del builder  # part of the cache key only

    init = make_trainer(config).init
    options = compiler_options(config, num_seeds)
    return jax.jit(jax.vmap(init) if batched else init, compiler_options=options)


_COMPILED: dict[tuple, Any] = {}


def compiled_chunk(config: Config, chunk: int, batched: bool, runner: RunnerState) -> Any:
    """`Trainer.run(runner, chunk, until)` (vmapped over seeds if `batched`, `until` then `[S]`)
    compiled for `runner`'s shapes; kept for the process (the last 8), so that a resumed or
    repeated run in the same process does not compile again."""
    from a3c_jax.train import compiler_options, make_trainer

    avals = tuple(
        (x.shape, x.dtype, getattr(x, "weak_type", False)) for x in jax.tree.leaves(runner)
    )
    from a3c_jax.algorithms import ALGORITHM_BUILDERS

    builder = ALGORITHM_BUILDERS[config.algo]
    key = (config, builder, chunk, batched, jax.tree.structure(runner), avals)
    if key not in _COMPILED:
        trainer = make_trainer(config)

        def run_chunk(runner: RunnerState, until: jax.Array) -> tuple[RunnerState, Any]:
            return trainer.run(runner, chunk, until)

        jitted = jax.jit(
            jax.vmap(run_chunk) if batched else run_chunk,
            compiler_options=compiler_options(
                config, np.shape(runner.updates)[0] if batched else 1
            ),
        )
        while len(_COMPILED) >= 8:
            _COMPILED.pop(next(iter(_COMPILED)))
        until = np.zeros(np.shape(runner.updates), np.int32)
        _COMPILED[key] = jitted.lower(runner, until).compile()
    return _COMPILED[key]


@dataclasses.dataclass
class _Clock:
    offset: float  # seconds of earlier invocations (resume)
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def __call__(self) -> float:
        return self.offset + time.perf_counter() - self.start


def train_run(
    config: Config,
    run_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    num_seeds: int = 1,
    resume: bool = False,
    chunk_updates: int | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 60.0,
    keep_checkpoints: int = 3,
    stop_after: int | None = None,
    progress: bool = True,
    tensorboard: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> RunOutcome:
    """Trains `config` into the run folder `run_dir`, or continues the run there (`resume`).

    Args:
      config: the run's configuration (with `resume`: must equal the saved one, else
        `ConfigMismatchError` naming the fields that differ).
      run_dir: the run folder: new or empty (or, with `overwrite`, a run folder to replace);
        with `resume`, the run to continue.
      seed: the PRNG seed; with `num_seeds > 1`, `jax.random.split(PRNGKey(seed), num_seeds)`
        gives the seeds' keys, trained at once with `vmap`.
      chunk_updates: updates per jitted chunk (default: about 50 chunks per run; a resumed run
        keeps its own).
      checkpoint_every: updates between periodic checkpoints, rounded up to whole chunks;
        default: a checkpoint every `checkpoint_seconds` of wall-clock time (at the end of a
        chunk). A final checkpoint is always written.
      keep_checkpoints: how many of the newest checkpoints to keep.
      stop_after: stop after this many more updates (rounded up to whole chunks), checkpoint,
        and return status "stopped": `resume` continues from there.
      progress: show a progress bar (a plain line every 10 s when stderr is not a terminal).
      tensorboard: also write TensorBoard event files (needs `tensorboardX`).

    Returns the outcome; Ctrl-C stops after the running chunk with a checkpoint and status
    "interrupted". Raises `DivergenceError` (after saving the last good state) if an update
    produced a non-finite loss, gradient or parameter.
    """
    from a3c_jax.train import check_finite

    run_dir = Path(run_dir)
    clock_start = time.perf_counter()
    batched = num_seeds > 1
    if keep_checkpoints < 1:
        raise ConfigError(f"keep_checkpoints={keep_checkpoints} must be at least 1")
    if resume:
        path = find_checkpoint(run_dir)
        content, runner = restore_checkpoint(path, config)
        saved_seeds = content.meta.get("num_seeds", 1)
        if saved_seeds != num_seeds:
            raise RunDirError(
                f"--resume {run_dir}: the run has {saved_seeds} seed(s), not {num_seeds}"
            )
        check_finite(runner, checkpoint=str(path), num_seeds=num_seeds)  # stays stopped
        info = read_json(run_dir / RUN_FILE) if (run_dir / RUN_FILE).exists() else {}
        if content.meta.get("seed") is not None:
            seed = content.meta["seed"]
        chunk_updates = chunk_updates or info.get("chunk_updates")
        clock = _Clock(offset=float(content.meta.get("time_s") or 0.0), start=clock_start)
        truncate_metrics(run_dir, int(content.meta["update"]))
    else:
        prepare_new_run_dir(run_dir, overwrite)
        run_dir.mkdir(parents=True, exist_ok=True)
        clock = _Clock(offset=0.0, start=clock_start)
        info = {"created": datetime.datetime.now().isoformat(timespec="seconds")}

    num_updates = config.num_updates
    chunk = int(chunk_updates or default_chunk_updates(num_updates))
    every_chunks = math.ceil(checkpoint_every / chunk) if checkpoint_every else 0
    info.update(
        versions=versions(),
        command=sys.argv,
        seed=seed,
        num_seeds=num_seeds,
        chunk_updates=chunk,
        status="running",
    )
    write_json(run_dir / CONFIG_FILE, config.to_dict())
    write_json(run_dir / RUN_FILE, info)

    if not resume:
        key = jax.random.PRNGKey(seed)
        from a3c_jax.algorithms import ALGORITHM_BUILDERS

        init = _jitted_init(config, num_seeds, batched, ALGORITHM_BUILDERS[config.algo])
        runner = init(jax.random.split(key, num_seeds) if batched else key)
    t0 = time.perf_counter()
    compiled = compiled_chunk(config, chunk, batched, runner)
    compile_s = time.perf_counter() - t0
    log(f"compiled a chunk of {chunk} updates in {compile_s:.2f} s")

    def save_state(state: RunnerState, status: str) -> Path:
        updates, env_steps = (
            np.atleast_1d(x) for x in jax.device_get((state.updates, state.train_state.env_steps))
        )
        meta = {
            "update": int(np.max(updates)),
            "env_steps": int(np.max(env_steps)),
            "num_seeds": num_seeds,
            "batched": batched,
            "seed": seed,
            "time_s": clock(),
            "status": status,
        }
        path = ckpt.checkpoint_path(run_dir / CHECKPOINT_DIR, meta["update"])
        ckpt.save_checkpoint(path, state, config, meta)
        ckpt.prune_checkpoints(run_dir / CHECKPOINT_DIR, keep_checkpoints)
        info.update(meta, checkpoint=path.name)
        write_json(run_dir / RUN_FILE, info)
        return path

    def finished(env_steps: np.ndarray) -> bool:
        return all(budget_spent(config, int(n)) for n in env_steps)

    def per_seed(x: Any) -> np.ndarray:
        """`[S]` (`[1]` unbatched) from a counter that may carry copies per device (pmap)."""
        return np.asarray(x).reshape(num_seeds if batched else 1, -1)[:, 0]

    # Each chunk runs to the budget; on a divergence, a replay runs up to the last good update.
    full = np.full(np.shape(runner.updates), np.iinfo(np.int32).max, np.int32)
    updates, env_steps = (
        per_seed(x) for x in jax.device_get((runner.updates, runner.train_state.env_steps))
    )
    max_chunks = math.inf if stop_after is None else math.ceil(stop_after / chunk)
    logger = MetricsLog(run_dir, num_seeds, tensorboard)
    bar = Progress(config.total_timesteps, int(np.mean(env_steps)), progress)
    status, chunks_run = "finished", 0
    last_checkpoint = clock()
    try:
        with _interruptible(log) as interrupted:
            train_start = last_time = clock()
            pending = None
            if not finished(env_steps) and max_chunks > 0:
                pending = (runner, compiled(runner, full))
            while pending is not None:
                start, (runner, metrics) = pending
                chunks_run += 1
                pending = None
                if chunks_run < max_chunks and not interrupted.is_set():
                    pending = (runner, compiled(runner, full))  # runs while we log this one
                metrics, new_updates, new_env_steps, diverged = jax.device_get(
                    (
                        metrics._asdict(),
                        runner.updates,
                        runner.train_state.env_steps,
                        runner.diverged,
                    )
                )
                new_updates, new_env_steps = per_seed(new_updates), per_seed(new_env_steps)
                now = clock()
                rate = float(np.sum(new_env_steps - env_steps)) / max(now - last_time, 1e-9)
                if not batched:
                    metrics = {k: v[None] for k, v in metrics.items()}
                rows = chunk_rows(metrics, new_updates - updates, new_updates, now, rate)
                updates, env_steps, last_time = new_updates, new_env_steps, now
                logger.write(rows)
                returns = [r["return_mean"] for r in rows if not math.isnan(r["return_mean"])]
                bar.update(
                    int(np.mean(env_steps)), rate, float(np.mean(returns)) if returns else math.nan
                )
                if np.any(diverged):
                    # Replay the chunk from its start up to each seed's last good update (the
                    # same compiled chunk, so bitwise the state before the bad update).
                    good, _ = compiled(start, np.asarray(jax.device_get(runner.updates), np.int32))
                    path = save_state(good._replace(diverged=runner.diverged), "diverged")
                    try:
                        check_finite(runner, checkpoint=str(path), num_seeds=num_seeds)
                    except Exception as error:
                        info.update(error=str(error))
                        write_json(run_dir / RUN_FILE, info)
                        raise
                if finished(env_steps):
                    pending = None
                    break
                if pending is None:
                    status = "interrupted" if interrupted.is_set() else "stopped"
                    break
                due = (
                    chunks_run % every_chunks == 0
                    if every_chunks
                    else now - last_checkpoint >= checkpoint_seconds
                )
                if due:
                    save_state(runner, "running")
                    last_checkpoint = clock()
            train_s = last_time - train_start
            path = save_state(runner, status)
    finally:
        bar.close()
        logger.close()
    return RunOutcome(status, run_dir, runner, int(np.max(updates)), path, compile_s, train_s)
