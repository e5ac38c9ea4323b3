"""`train_run`: training in a run folder, in chunks (`save` and `load` live in `saving`).

`train_run` trains in chunks of `chunk_updates` updates, each chunk one call of the same compiled
`Trainer.run` (`compiled.compiled_chunk`), and does its host work between chunks while the next
chunk already runs. The host work belongs to small parts, each with one job, that this driver
only calls: `run_folder` (layout, config.json and run.json), `run_claim` (the folder's lock and
the clean-up after a failed start), `metrics_log` (metrics.csv and TensorBoard writers),
`progress` (the bar), `checkpointer` (save, keep-N, restore) and `signals` (Ctrl-C, SIGTERM).
The driver's states always carry the seed axis `[S, ...]` (S >= 1). Resuming from a checkpoint
replays the same compiled chunks on the same state, so the result is bitwise that of a run that
never stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from a3c_jax import distributed
from a3c_jax.config import Config, ConfigError
from a3c_jax.core.types import RunnerState, Trainer
from a3c_jax.runs import checkpoints, run_claim
from a3c_jax.runs.metrics_log import (  # noqa: F401 (METRIC_COLUMNS, read_metrics: runs' API)
    METRIC_COLUMNS,
    MetricsWriter,
    MetricsWriters,
    chunk_rows,
    open_writers,
    read_metrics,
    truncate_metrics,
)
from a3c_jax.runs.options import (
    Clock,
    RunOptions,
    check_belongs,
    default_chunk_updates,
    folder_lost,
    invocation_info,
    newest_checkpoint,
    rescue_folder,
    resolve_options,
    resume_target,
    seed_keys,
    start_timeline,
)
from a3c_jax.runs.progress import Progress
from a3c_jax.runs.run_folder import (  # noqa: F401 (runs' API since before the split)
    CONFIG_FILE,
    RUN_FILE,
    RunDirError,
    RunFolder,
    default_run_dir,
    find_checkpoint,
    prepare_new_run_dir,
    read_json,
)
from a3c_jax.runs.saving import (  # noqa: F401 (runs' API since before the split)
    SavedRun,
    budget_spent,
    load,
    per_seed,
    policy_params,
    public_state,
    save,
    seed_axis,
)
from a3c_jax.runs.signals import StopRequest, interruptible
from a3c_jax.training import memory_estimate
from a3c_jax.training.compiled import compiled_chunk, compiled_chunk_ahead, compiled_init
from a3c_jax.training.divergence import check_finite


class RunOutcome(NamedTuple):
    """What `train_run` returns."""

    status: str  # "finished", "interrupted" (Ctrl-C, SIGTERM) or "stopped" (stop_after)
    run_dir: Path
    runner_state: RunnerState  # one seed: no seed axis; several: `[num_seeds, ...]`
    update: int  # updates done (per seed)
    checkpoint: Path  # the checkpoint written last
    compile_s: float  # seconds compiling the chunk (new run: and the initial state, at once)
    train_s: float  # seconds from the first chunk's dispatch to the last chunk's metrics
    write_s: float = 0.0  # seconds writing the final checkpoint
    signal: int = 0  # the signal that interrupted the run (SIGINT, SIGTERM), 0 if none


# --------------------------------------------------------------------------- the chunk loop


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
    clock: Clock
    saver: checkpoints.Checkpointer | None = None
    options: RunOptions = dataclasses.field(default_factory=RunOptions)
    claim: run_claim.RunClaim | None = None

    def meta(self, state: RunnerState, status: str) -> dict[str, Any]:
        """A checkpoint's metadata: `state`'s progress and `status`."""
        updates, env_steps = (
            per_seed(x, self.num_seeds)
            for x in distributed.fetch((state.updates, state.train_state.env_steps))
        )
        return {
            "update": int(np.max(updates)),
            "env_steps": int(np.max(env_steps)),
            "num_seeds": self.num_seeds,
            "seed": self.seed,
            "time_s": self.clock(),
            "status": status,
            "chunk_updates": self.chunk,
            "parent": self.info.get("parent"),  # the checkpoint this invocation resumed from
        }

    def save(self, state: RunnerState, status: str, provisional: bool = False) -> Path:
        """A checkpoint of `state` with its progress and `status`; run.json follows it."""
        meta = self.meta(state, status)
        path = self.saver.save(state, meta, provisional)
        self.info.update(meta, batched=self.num_seeds > 1, checkpoint=path.name)
        self.folder.write_info(self.info)
        return path


def _new_run(
    config: Config, claim: run_claim.RunClaim, trainer: Trainer, seed: int, num_seeds: int
) -> _Run:
    """A new run's initial state; only once it is made is an old run in the folder replaced."""
    info = {"created": datetime.datetime.now().isoformat(timespec="seconds")}
    runner = compiled_init(trainer, config, num_seeds)(seed_keys(seed, num_seeds))
    claim.clear()
    return _Run(config, RunFolder(claim.path), seed, num_seeds, 0, runner, info, Clock(0.0))


def _resumed_run(
    config: Config,
    run_dir: Path,
    trainer: Trainer,
    seed: int,
    num_seeds: int,
    checkpoint: Path | None,
    log: Callable[[str], None],
) -> _Run:
    """The run in `run_dir` at `checkpoint` (None: the newest that verifies)."""
    if checkpoint is None:
        checkpoint, content = newest_checkpoint(run_dir, log)
    else:
        content = checkpoints.ckpt.read_checkpoint(checkpoint)
    check_belongs(run_dir, content.config, checkpoint)
    like = None
    if jax.process_count() > 1:  # the shapes and shardings of this run's global arrays
        like = compiled_init(trainer, config, num_seeds)(seed_keys(seed, num_seeds))
    content, runner = checkpoints.restore_content(
        content, str(checkpoint), config, trainer.init, like
    )
    saved_seeds = content.meta.get("num_seeds", 1)
    if saved_seeds != num_seeds:
        raise RunDirError(f"--resume {run_dir}: the run has {saved_seeds} seed(s), not {num_seeds}")
    check_finite(runner, checkpoint=str(checkpoint), num_seeds=num_seeds)  # stays stopped
    folder = RunFolder(run_dir)
    info = folder.read_info()
    seed = seed if content.meta.get("seed") is None else content.meta["seed"]
    start_timeline(checkpoint, log)  # first: a crash between leaves metrics to cut next time
    if folder.writes:
        truncate_metrics(run_dir, int(content.meta["update"]))
    info["parent"] = checkpoint.name
    clock = Clock(float(content.meta.get("time_s") or 0.0))
    chunk = int(content.meta.get("chunk_updates") or info.get("chunk_updates") or 0)
    return _Run(config, folder, seed, num_seeds, chunk, runner, info, clock)


class _Schedule(NamedTuple):
    """When the loop stops early and checkpoints."""

    max_chunks: float  # chunks to run in this invocation (inf: to the end)
    every_chunks: int  # a checkpoint every this many chunks (0: by wall-clock time)
    checkpoint_seconds: float
    first: bool = False  # an early checkpoint after the first chunk (a new run has none yet)


def _due(schedule: _Schedule, chunks_run: int, seconds_since: float) -> bool:
    """Whether a periodic checkpoint is due after `chunks_run` chunks."""
    every = schedule.every_chunks
    return chunks_run % every == 0 if every else seconds_since >= schedule.checkpoint_seconds


class _Chunk:
    """One call of the compiled chunk, run (and waited for) in a daemon thread, so that the main
    thread waits in Python, where signal handlers run: the first Ctrl-C or SIGTERM is
    acknowledged at once and a second one aborts at once, even in a chunk of many seconds (on
    CPU the computation runs inline, in the calling thread). Same program, same inputs: the
    results are bitwise those of a call in the main thread."""

    def __init__(self, compiled: Any, *args: Any):
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(compiled, args), daemon=True)
        self.thread.start()

    def _run(self, compiled: Any, args: tuple) -> None:
        try:
            self.value = jax.block_until_ready(compiled(*args))
        except BaseException as error:  # re-raised in the caller's thread
            self.error = error
        finally:
            self.done.set()

    def result(self) -> Any:
        while not self.done.wait(0.1):  # a timed wait: signal handlers run between the waits
            pass
        if self.error is not None:
            raise self.error
        return self.value


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
        pending = (run.runner, _Chunk(compiled, run.runner, budget_left))
    while pending is not None:
        start, chunk = pending
        run.runner, metrics = chunk.result()
        chunks_run += 1
        pending = None
        if chunks_run < schedule.max_chunks and not stop.is_set():
            pending = (run.runner, _Chunk(compiled, run.runner, budget_left))  # runs while we log
        metrics, updates, env_steps, diverged = distributed.fetch(
            (
                metrics._asdict(),
                run.runner.updates,
                run.runner.train_state.env_steps,
                run.runner.diverged,
            )
        )
        _check_folder(run)
        env_steps = per_seed(env_steps, run.num_seeds)
        now = run.clock()
        report(metrics, per_seed(updates, run.num_seeds), env_steps, now)
        if np.any(diverged):
            _save_last_good(run, compiled, start)
        if finished(env_steps):
            return "finished", now - train_start
        if pending is None:
            return ("interrupted" if stop.is_set() else "stopped"), now - train_start
        due = _due(schedule, chunks_run, now - last_checkpoint)
        if due or (schedule.first and chunks_run == 1):
            run.save(run.runner, "running", provisional=not due)
            last_checkpoint = run.clock()
    return "finished" if finished(env_steps) else "stopped", 0.0


def _check_folder(run: _Run) -> None:
    """Raises `RunFolderLostError` if the run folder was deleted or replaced, after saving the
    state to a new folder in the temporary directory (named in the message)."""
    if run.claim is None or run.claim.alive():
        return
    run.folder = rescue_folder(run.claim.path, run.config)
    run.info = {**run.info, "rescued_from": str(run.claim.path)}
    run.saver = checkpoints.Checkpointer(run.folder.checkpoint_dir, run.config, 1)
    path = run.save(run.runner, "rescued")
    raise folder_lost(run.claim.path, run.info["update"], path)


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
    run: _Run, compiled: Any, schedule: _Schedule, progress: bool, stop: StopRequest
) -> tuple[str, float, Path, float]:
    """`_chunk_loop` with its metrics writers and progress bar open, then the final checkpoint.
    Returns the status, the training seconds, that checkpoint and the seconds writing it."""
    writes = run.folder.writes  # process 0 of a multi-process run; the only one otherwise
    tensorboard = run.options.tensorboard
    writers = open_writers(run.folder, run.num_seeds, tensorboard) if writes else MetricsWriters([])
    start_steps = per_seed(distributed.fetch(run.runner.train_state.env_steps), run.num_seeds)
    bar = Progress(run.config.total_timesteps, int(np.mean(start_steps)), progress and writes)
    try:
        report = _Reporter(run, writers, bar)
        status, train_s = _chunk_loop(run, compiled, schedule, report, stop)
        write_start = time.perf_counter()
        path = run.save(run.runner, status)
        return status, train_s, path, time.perf_counter() - write_start
    finally:
        bar.close()
        writers.close()


def _begin(run: _Run, given: dict[str, Any]) -> None:
    """Settles the run's options (`resolve_options`), chunk size and checkpointer, and writes
    config.json and run.json (the original command line kept, this one appended)."""
    config = run.config
    run.options = resolve_options(given, run.info.get("options") or {})
    chunk = run.options.chunk_updates or run.chunk or default_chunk_updates(config.num_updates)
    run.chunk = int(chunk)
    run.options = run.options._replace(chunk_updates=run.chunk)
    run.saver = checkpoints.Checkpointer(
        run.folder.checkpoint_dir, config, run.options.keep_checkpoints
    )
    run.info.update(invocation_info(run.info, run.options))
    run.info.update(seed=run.seed, num_seeds=run.num_seeds, chunk_updates=run.chunk)
    run.folder.write_config(config)
    run.folder.write_info(run.info)


def _start(
    config: Config,
    trainer: Trainer,
    claim: run_claim.RunClaim,
    resume: tuple[bool, Path | None],
    seeds: tuple[int, int],
    given: dict[str, Any],
    log: Callable[[str], None],
) -> tuple[_Run, Any, float]:
    """The run's state (new, or from its checkpoint) and compiled chunk; returns them and the
    seconds compiling."""
    seed, num_seeds = seeds
    if resume[0]:
        run = _resumed_run(config, claim.path, trainer, seed, num_seeds, resume[1], log)
        t0, ahead = time.perf_counter(), None
    else:
        t0 = time.perf_counter()  # the chunk compiles while the initial state compiles and runs
        chunk = int(given["chunk_updates"] or default_chunk_updates(config.num_updates))
        ahead = compiled_chunk_ahead(trainer, config, chunk, seed_keys(seed, num_seeds))
        run = _new_run(config, claim, trainer, seed, num_seeds)
    run.claim = claim
    _begin(run, given)
    compiled = ahead.result() if ahead else compiled_chunk(trainer, config, run.chunk, run.runner)
    return run, compiled, time.perf_counter() - t0


def _schedule(run: _Run, stop_after: int | None, new: bool) -> _Schedule:
    every = run.options.checkpoint_every
    return _Schedule(
        math.inf if stop_after is None else math.ceil(stop_after / run.chunk),
        math.ceil(every / run.chunk) if every else 0,
        run.options.checkpoint_seconds,
        first=new,
    )


def train_run(
    config: Config,
    run_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    num_seeds: int = 1,
    resume: bool = False,
    chunk_updates: int | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    keep_checkpoints: int | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    tensorboard: bool | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> RunOutcome:
    """Trains `config` into the run folder `run_dir`, or continues the run there (`resume`).

    `run_dir`: new or empty (with `overwrite`, a folder of an a3c_jax run to replace once the new
    run has started); with `resume`, the run (or a checkpoint in its `checkpoints/`). The folder
    is locked while the run lasts (`run_claim`). `config` must equal a resumed run's.
    `num_seeds > 1`: `jax.random.split(PRNGKey(seed), num_seeds)`, trained at once with `vmap`.
    `chunk_updates` (default: about 50 chunks), `checkpoint_every` (updates, rounded up to whole
    chunks; default: every `checkpoint_seconds`, 60), `keep_checkpoints` (3) and `tensorboard`
    are recorded in the folder; a resume keeps them unless given again. A new run also
    checkpoints after its first chunk; a final checkpoint is always written. `stop_after`: stop
    after this many more updates (whole chunks), status "stopped".

    Returns the outcome; Ctrl-C or SIGTERM stops after the running chunk with a checkpoint and
    status "interrupted". Raises `DivergenceError` (after saving the last good state) if an
    update produced a non-finite loss, gradient or parameter; `RunFolderLostError` if the folder
    is deleted meanwhile. A new run that fails before its first checkpoint leaves nothing.
    """
    from a3c_jax.training.loop import make_trainer

    options = (chunk_updates, checkpoint_every, checkpoint_seconds, keep_checkpoints, tensorboard)
    given = RunOptions(*options)._asdict()  # None: not given
    resolve_options(given, {})  # bad values stop here, before anything is built
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 1):
        raise ConfigError(f"stop_after={stop_after!r} must be a positive integer (or None)")
    clock_start = time.perf_counter()
    memory_estimate.check_fits(config, num_seeds)
    trainer = make_trainer(config)  # the one trainer of this run; checks the devices
    folder, checkpoint = resume_target(run_dir) if resume else (Path(run_dir), None)
    # The signal handlers first: once the folder is locked, SIGTERM leaves a checkpoint.
    with interruptible(log) as stop, run_claim.claim(folder, overwrite, resume) as claim:
        for orphan in claim.removed_orphans:
            log(f"removed {orphan.name}, left by a process that was killed while writing")
        seeds, target = (seed, num_seeds), (resume, checkpoint)
        run, compiled, compile_s = _start(config, trainer, claim, target, seeds, given, log)
        run.clock.start = clock_start
        what = "a chunk" if resume else "the initial state and a chunk"
        log(f"compiled {what} of {run.chunk} updates in {compile_s:.2f} s")
        schedule = _schedule(run, stop_after, new=not resume)
        status, train_s, path, write_s = _observed_loop(run, compiled, schedule, progress, stop)
    update = int(np.max(per_seed(distributed.fetch(run.runner.updates), num_seeds)))
    state = public_state(run.runner, num_seeds)
    timing = (compile_s, train_s, write_s)
    return RunOutcome(status, claim.path, state, update, path, *timing, stop.signum)
