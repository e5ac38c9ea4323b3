"""`train_run`: training in a run folder, in chunks (`save` and `load` live in `saving`).

`train_run` trains in chunks of `chunk_updates` updates, each chunk one call of the same compiled
`Trainer.run` (`compiled.compiled_chunk`), and does its host work between chunks while the next
chunk already runs. The host work belongs to small parts, each with one job, that this driver
only calls: `run_folder` (layout, config.json and run.json), `metrics_log` (metrics.csv and
TensorBoard writers), `progress` (the bar), `checkpointer` (save, keep-N, restore) and `signals`
(Ctrl-C). The driver's states always carry the seed axis `[S, ...]` (S >= 1). Resuming from a
checkpoint replays the same compiled chunks on the same state, so the result is bitwise that of a
run that never stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from a3c_jax import checkpointer, distributed, run_folder
from a3c_jax.compiled import compiled_chunk, compiled_chunk_ahead, compiled_init
from a3c_jax.config import Config, ConfigError
from a3c_jax.divergence import check_finite
from a3c_jax.metrics_log import (  # noqa: F401 (METRIC_COLUMNS, read_metrics: runs' API)
    METRIC_COLUMNS,
    MetricsWriter,
    MetricsWriters,
    chunk_rows,
    open_writers,
    read_metrics,
    truncate_metrics,
)
from a3c_jax.progress import Progress
from a3c_jax.run_folder import (  # noqa: F401 (runs' API since before the split)
    CONFIG_FILE,
    RUN_FILE,
    RunDirError,
    RunFolder,
    default_run_dir,
    find_checkpoint,
    prepare_new_run_dir,
    read_json,
)
from a3c_jax.saving import (  # noqa: F401 (runs' API since before the split)
    SavedRun,
    budget_spent,
    load,
    per_seed,
    policy_params,
    public_state,
    save,
    seed_axis,
)
from a3c_jax.signals import interruptible
from a3c_jax.types import RunnerState, Trainer


class RunOutcome(NamedTuple):
    """What `train_run` returns."""

    status: str  # "finished", "interrupted" (Ctrl-C) or "stopped" (stop_after)
    run_dir: Path
    runner_state: RunnerState  # one seed: no seed axis; several: `[num_seeds, ...]`
    update: int  # updates done (per seed)
    checkpoint: Path  # the checkpoint written last
    compile_s: float  # seconds compiling the chunk (new run: and the initial state, at once)
    train_s: float  # seconds from the first chunk's dispatch to the last chunk's metrics
    write_s: float = 0.0  # seconds writing the final checkpoint


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """The keys `[num_seeds, 2]` of a run's seeds: `PRNGKey(seed)` for one seed, else
    `jax.random.split(PRNGKey(seed), num_seeds)`."""
    key = jax.random.PRNGKey(seed)
    return jax.random.split(key, num_seeds) if num_seeds > 1 else key[None]


def default_chunk_updates(num_updates: int, target_chunks: int = 50) -> int:
    """Updates per jitted chunk: about `target_chunks` chunks per run (see
    `benchmarks/progress_overhead.py` for the measured cost of chunking)."""
    return max(1, math.ceil(num_updates / target_chunks))


# --------------------------------------------------------------------------- the chunk loop


@dataclasses.dataclass
class _Clock:
    offset: float  # seconds of earlier invocations (resume)
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def __call__(self) -> float:
        return self.offset + time.perf_counter() - self.start


@dataclasses.dataclass
class _Run:
    """One invocation of `train_run`: where it writes and what it carries between chunks."""

    config: Config
    folder: RunFolder
    seed: int
    num_seeds: int
    chunk: int
    runner: RunnerState  # [S, ...]
    info: dict[str, Any]  # run.json
    clock: _Clock
    saver: checkpointer.Checkpointer | None = None

    def save(self, state: RunnerState, status: str) -> Path:
        """A checkpoint of `state` with its progress and `status`; run.json follows it."""
        updates, env_steps = (
            per_seed(x, self.num_seeds)
            for x in distributed.fetch((state.updates, state.train_state.env_steps))
        )
        meta = {
            "update": int(np.max(updates)),
            "env_steps": int(np.max(env_steps)),
            "num_seeds": self.num_seeds,
            "seed": self.seed,
            "time_s": self.clock(),
            "status": status,
            "chunk_updates": self.chunk,
        }
        path = self.saver.save(state, meta)
        self.info.update(meta, batched=self.num_seeds > 1, checkpoint=path.name)
        self.folder.write_info(self.info)
        return path


def _new_run(
    config: Config, run_dir: Path, trainer: Trainer, seed: int, num_seeds: int, overwrite: bool
) -> _Run:
    folder = run_folder.create(run_dir, overwrite)
    info = {"created": datetime.datetime.now().isoformat(timespec="seconds")}
    runner = compiled_init(trainer, config, num_seeds)(seed_keys(seed, num_seeds))
    return _Run(config, folder, seed, num_seeds, 0, runner, info, _Clock(0.0))


def _resumed_run(
    config: Config, run_dir: Path, trainer: Trainer, seed: int, num_seeds: int
) -> _Run:
    path = find_checkpoint(run_dir)
    like = None
    if jax.process_count() > 1:  # the shapes and shardings of this run's global arrays
        like = compiled_init(trainer, config, num_seeds)(seed_keys(seed, num_seeds))
    content, runner = checkpointer.restore(path, config, trainer.init, like)
    saved_seeds = content.meta.get("num_seeds", 1)
    if saved_seeds != num_seeds:
        raise RunDirError(f"--resume {run_dir}: the run has {saved_seeds} seed(s), not {num_seeds}")
    check_finite(runner, checkpoint=str(path), num_seeds=num_seeds)  # stays stopped
    folder = RunFolder(run_dir)
    info = folder.read_info()
    seed = seed if content.meta.get("seed") is None else content.meta["seed"]
    if folder.writes:
        truncate_metrics(run_dir, int(content.meta["update"]))
    clock = _Clock(float(content.meta.get("time_s") or 0.0))
    chunk = int(content.meta.get("chunk_updates") or info.get("chunk_updates") or 0)
    return _Run(config, folder, seed, num_seeds, chunk, runner, info, clock)


class _Schedule(NamedTuple):
    """When the loop stops early and checkpoints."""

    max_chunks: float  # chunks to run in this invocation (inf: to the end)
    every_chunks: int  # a checkpoint every this many chunks (0: by wall-clock time)
    checkpoint_seconds: float


def _chunk_loop(
    run: _Run,
    compiled: Any,
    schedule: _Schedule,
    report: Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray, float], None],
    stop: Any,
) -> tuple[str, float]:
    """Runs chunks until the budget is spent, `schedule.max_chunks` ran or `stop` is set; each
    chunk's metrics go to `report` while the next chunk runs. Returns the status and the
    training seconds; the final checkpoint is the caller's."""
    budget_left = np.full(np.shape(run.runner.updates), np.iinfo(np.int32).max, np.int32)

    def finished(env_steps: np.ndarray) -> bool:
        return all(budget_spent(run.config, int(n)) for n in env_steps)

    env_steps = per_seed(distributed.fetch(run.runner.train_state.env_steps), run.num_seeds)
    train_start = last_checkpoint = run.clock()
    pending, chunks_run = None, 0
    if not finished(env_steps) and schedule.max_chunks > 0:
        pending = (run.runner, compiled(run.runner, budget_left))
    while pending is not None:
        start, (run.runner, metrics) = pending
        chunks_run += 1
        pending = None
        if chunks_run < schedule.max_chunks and not stop.is_set():
            pending = (run.runner, compiled(run.runner, budget_left))  # runs while we log
        metrics, updates, env_steps, diverged = distributed.fetch(
            (
                metrics._asdict(),
                run.runner.updates,
                run.runner.train_state.env_steps,
                run.runner.diverged,
            )
        )
        env_steps = per_seed(env_steps, run.num_seeds)
        now = run.clock()
        report(metrics, per_seed(updates, run.num_seeds), env_steps, now)
        if np.any(diverged):
            _save_last_good(run, compiled, start)
        if finished(env_steps):
            return "finished", now - train_start
        if pending is None:
            return ("interrupted" if stop.is_set() else "stopped"), now - train_start
        every = schedule.every_chunks
        due = (
            chunks_run % every == 0
            if every
            else now - last_checkpoint >= schedule.checkpoint_seconds
        )
        if due:
            run.save(run.runner, "running")
            last_checkpoint = run.clock()
    return "finished" if finished(env_steps) else "stopped", 0.0


def _save_last_good(run: _Run, compiled: Any, start: RunnerState) -> None:
    """After a divergence: replays the chunk from `start` up to each seed's last good update
    (the same compiled chunk, so bitwise the state before the bad update), saves it, and raises
    `DivergenceError` naming that checkpoint."""
    until = np.asarray(distributed.fetch(run.runner.updates), np.int32)
    good, _ = compiled(start, until)
    path = run.save(good._replace(diverged=run.runner.diverged), "diverged")
    try:
        check_finite(run.runner, checkpoint=str(path), num_seeds=run.num_seeds)
    except Exception as error:
        run.info.update(error=str(error))
        run.folder.write_info(run.info)
        raise


class _Reporter:
    """Turns each chunk's metrics into rows for the writers and a line of progress."""

    def __init__(self, run: _Run, writers: MetricsWriter, bar: Progress):
        self.writers, self.bar = writers, bar
        self.updates, self.env_steps = (
            per_seed(x, run.num_seeds)
            for x in distributed.fetch((run.runner.updates, run.runner.train_state.env_steps))
        )
        self.last_time = run.clock()

    def __call__(
        self, metrics: dict[str, np.ndarray], updates: np.ndarray, env_steps: np.ndarray, now: float
    ) -> None:
        rate = float(np.sum(env_steps - self.env_steps)) / max(now - self.last_time, 1e-9)
        rows = chunk_rows(metrics, updates - self.updates, updates, now, rate)
        self.updates, self.env_steps, self.last_time = updates, env_steps, now
        self.writers.write(rows)
        returns = [r["return_mean"] for r in rows if not math.isnan(r["return_mean"])]
        mean_return = float(np.mean(returns)) if returns else math.nan
        self.bar.update(int(np.mean(env_steps)), rate, mean_return)


def _observed_loop(
    run: _Run,
    compiled: Any,
    schedule: _Schedule,
    progress: bool,
    tensorboard: bool,
    log: Callable[[str], None],
) -> tuple[str, float, Path, float]:
    """`_chunk_loop` with its metrics writers, progress bar and Ctrl-C handler open, then the
    final checkpoint. Returns the status, the training seconds, that checkpoint and the seconds
    writing it."""
    writes = run.folder.writes  # process 0 of a multi-process run; the only one otherwise
    writers = open_writers(run.folder, run.num_seeds, tensorboard) if writes else MetricsWriters([])
    start_steps = per_seed(distributed.fetch(run.runner.train_state.env_steps), run.num_seeds)
    bar = Progress(run.config.total_timesteps, int(np.mean(start_steps)), progress and writes)
    try:
        with interruptible(log) as stop:
            report = _Reporter(run, writers, bar)
            status, train_s = _chunk_loop(run, compiled, schedule, report, stop)
            write_start = time.perf_counter()
            path = run.save(run.runner, status)
            return status, train_s, path, time.perf_counter() - write_start
    finally:
        bar.close()
        writers.close()


def _begin(run: _Run, chunk_updates: int | None, keep_checkpoints: int) -> None:
    """Settles the run's chunk size and checkpointer and writes config.json and run.json."""
    config = run.config
    run.chunk = int(chunk_updates or run.chunk or default_chunk_updates(config.num_updates))
    run.saver = checkpointer.Checkpointer(run.folder.checkpoint_dir, config, keep_checkpoints)
    run.info.update(
        versions=run_folder.versions(),
        command=sys.argv,
        seed=run.seed,
        num_seeds=run.num_seeds,
        chunk_updates=run.chunk,
        status="running",
    )
    run.folder.write_config(config)
    run.folder.write_info(run.info)


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
    from a3c_jax.train import make_trainer

    if keep_checkpoints < 1:
        raise ConfigError(f"keep_checkpoints={keep_checkpoints} must be at least 1")
    clock_start = time.perf_counter()
    trainer = make_trainer(config)  # the one trainer of this run
    ahead = None
    if resume:
        run = _resumed_run(config, Path(run_dir), trainer, seed, num_seeds)
        t0 = time.perf_counter()
    else:
        t0 = time.perf_counter()  # the chunk compiles while the initial state compiles and runs
        chunk = int(chunk_updates or default_chunk_updates(config.num_updates))
        ahead = compiled_chunk_ahead(trainer, config, chunk, seed_keys(seed, num_seeds))
        run = _new_run(config, Path(run_dir), trainer, seed, num_seeds, overwrite)
    run.clock.start = clock_start
    _begin(run, chunk_updates, keep_checkpoints)
    compiled = ahead.result() if ahead else compiled_chunk(trainer, config, run.chunk, run.runner)
    compile_s = time.perf_counter() - t0
    what = "a chunk" if resume else "the initial state and a chunk"
    log(f"compiled {what} of {run.chunk} updates in {compile_s:.2f} s")
    schedule = _Schedule(
        math.inf if stop_after is None else math.ceil(stop_after / run.chunk),
        math.ceil(checkpoint_every / run.chunk) if checkpoint_every else 0,
        checkpoint_seconds,
    )
    status, train_s, path, write_s = _observed_loop(
        run, compiled, schedule, progress, tensorboard, log
    )
    update = int(np.max(per_seed(distributed.fetch(run.runner.updates), num_seeds)))
    state = public_state(run.runner, num_seeds)
    return RunOutcome(status, run.folder.path, state, update, path, compile_s, train_s, write_s)
