"""`train_async_run`: an A3C run (`asynchronous.train_async`), or any run on host environments
(`host.train.train_host`: A3C, or the synchronous learner), in a run folder.

The folder is the synchronous trainer's (`run_folder`: config.json, run.json, metrics.csv,
checkpoints/), locked while the run lasts and cleaned up after a failed start (`run_claim`),
written by the same parts (`metrics_log`, `checkpointer`, `signals`). What differs is what a
checkpoint holds and where the host works. A checkpoint holds the shared store: the `TrainState`
over the flat parameter vector `[P]` (parameters, the one optimiser's state, the update and
environment-step counters), marked `meta["trainer"] = "async"`; the workers' environments are
not saved. The host work runs from `train_async`'s callback, in the workers' threads, one at a
time (`_Watcher`): after every update it checks that the parameters are finite (the divergence
stop), every `chunk_updates` updates it writes the metrics rows and, when due, a checkpoint.
The synchronous learner on host environments keeps its parameters in the same store (one
learner, staleness 0), so its runs are written, checkpointed and resumed the same way.

A resume continues the store's parameters, optimiser state and counters (so the learning-rate
schedule and the update budget go on), with fresh environments for the workers. It is not
bitwise the run that never stopped, and cannot be: the order in which the workers' gradients
reach the store depends on how the operating system schedules the threads (and a host
environment's own state is not saved: it restarts from a reset).
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
import jax.numpy as jnp
import numpy as np

from a3c_jax.config import Config, ConfigError
from a3c_jax.core.types import TrainState, UpdateMetrics
from a3c_jax.runs import checkpoint_file as ckpt
from a3c_jax.runs import checkpoints, run_claim
from a3c_jax.runs.checkpoints import ASYNC_TRAINER, restore_store
from a3c_jax.runs.metrics_log import MetricsWriter, chunk_rows, open_writers, truncate_metrics
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
    start_timeline,
)
from a3c_jax.runs.progress import Progress
from a3c_jax.runs.run_folder import RunFolder
from a3c_jax.runs.signals import StopRequest, interruptible
from a3c_jax.training.divergence import DivergenceError
from a3c_jax.workers import trainers
from a3c_jax.workers.store import (
    AsyncResult,
    ParameterStore,
    UpdateRecord,
)


class AsyncRunOutcome(NamedTuple):
    """What `train_async_run` returns."""

    status: str  # "finished", "interrupted" (Ctrl-C, SIGTERM) or "stopped" (stop_after)
    run_dir: Path
    result: AsyncResult  # this invocation's `train_async` result (params: the final ones)
    update: int  # updates applied to the store, over every invocation of the run
    checkpoint: Path  # the checkpoint written last
    compile_s: float  # seconds compiling the workers' programs (0: compiled before)
    signal: int = 0  # the signal that interrupted the run, 0 if none

    @property
    def train_s(self) -> float:
        """Seconds from starting the workers to the last one stopping."""
        return self.result.wall_seconds

    @property
    def write_s(self) -> float:
        """Seconds writing the final checkpoint: not measured apart (in `train_s`)."""
        return 0.0


@dataclasses.dataclass
class _AsyncRun:
    """One invocation of `train_async_run`: where it writes and what it counts."""

    config: Config
    claim: run_claim.RunClaim
    seed: int
    state: TrainState  # the store's, `[P]`, at the start of this invocation
    info: dict[str, Any]  # run.json
    clock: Clock
    options: RunOptions
    saver: checkpoints.Checkpointer
    folder: RunFolder  # the claimed one (another if it was deleted: `_rescue`)

    @property
    def done(self) -> int:
        """Updates applied before this invocation."""
        return int(self.state.update_step)

    def save(self, state: TrainState, status: str, provisional: bool = False) -> Path:
        """A checkpoint of the store's `state` `[P]`; run.json follows it."""
        meta = {
            "update": int(state.update_step),
            "env_steps": int(state.env_steps),
            "num_seeds": 1,
            "seed": self.seed,
            "time_s": self.clock(),
            "status": status,
            "chunk_updates": self.options.chunk_updates,
            "trainer": ASYNC_TRAINER,
        }
        seeded = jax.tree.map(lambda x: jnp.asarray(x)[None], state)  # the saver's [S, ...]
        path = self.saver.save(seeded, meta, provisional)
        self.info.update(meta, batched=False, checkpoint=path.name)
        self.folder.write_info(self.info)
        return path


class _Watcher:
    """`train_async`'s callback: the divergence stop after every update; metrics rows, progress
    and checkpoints every `chunk_updates` updates; a stop on request (signal, `stop_after`).
    Called from the workers' threads, one at a time."""

    def __init__(self, run: _AsyncRun, store: ParameterStore, writer: MetricsWriter, bar, stop):
        self.run, self.store, self.writer, self.bar, self.stop = run, store, writer, bar, stop
        self.lock = threading.Lock()
        self.good = run.state  # the newest finite state
        self.bad: int | None = None  # the store's update that made the parameters non-finite
        self.lost = False  # the run folder was deleted or replaced
        self.reported, self.chunks, self.stop_after = 0, 0, math.inf
        self.last_time = self.last_checkpoint = run.clock()
        self.finite = jax.jit(lambda p: jnp.all(jnp.isfinite(p)))
        from a3c_jax.algorithms.optim import make_optimizer

        self.learning_rate = jax.jit(jax.vmap(make_optimizer(run.config).learning_rate))

    def __call__(self, record: UpdateRecord) -> bool:
        with self.lock:
            if self.bad is not None:
                return True
            state = self.store.state
            if not bool(self.finite(state.params)):
                self.bad = int(state.update_step)
                return True
            self.good = state
            applied = int(state.update_step) - self.run.done  # this state's updates
            if applied - self.reported >= self.run.options.chunk_updates:
                if not self.run.claim.alive():
                    self.lost = True
                    return True
                self.report(applied)
                self.checkpoint_if_due(state)
            return self.stop.is_set() or self.store.version >= self.stop_after

    def report(self, upto: int | None = None) -> None:
        """Writes the row of the updates applied since the last report, up to `upto` (the
        updates of the state about to be checkpointed; default: all applied so far)."""
        n = min(len(self.store.records), len(self.store.worker_metrics), upto or math.inf)
        if n == self.reported:
            return
        records = self.store.records[self.reported : n]
        stacked = np.stack(jax.device_get(self.store.worker_metrics[self.reported : n]))
        columns = dict(zip(UpdateMetrics._fields, stacked.T, strict=True))
        batch = self.run.config.batch_size
        steps = self.run.done * batch + np.array([r.env_steps for r in records], np.int64)
        columns["env_steps"] = steps
        columns["learning_rate"] = np.asarray(self.learning_rate(jnp.asarray(steps - batch)))
        now = self.run.clock()
        rate = len(records) * batch / max(now - self.last_time, 1e-9)
        metrics = {k: v[None] for k, v in columns.items()}  # one seed: [1, n]
        update = np.array([self.run.done + n])
        self.writer.write(chunk_rows(metrics, np.array([len(records)]), update, now, rate))
        returns = columns["episode_return"][columns["episodes"] > 0]
        self.bar.update(int(steps[-1]), rate, float(np.mean(returns)) if returns.size else math.nan)
        self.reported, self.last_time, self.chunks = n, now, self.chunks + 1

    def checkpoint_if_due(self, state: TrainState) -> None:
        """A periodic checkpoint (or the new run's early, provisional one) after a report."""
        options, now = self.run.options, self.run.clock()
        if options.checkpoint_every:
            due = self.chunks % math.ceil(options.checkpoint_every / options.chunk_updates) == 0
        else:
            due = now - self.last_checkpoint >= options.checkpoint_seconds
        first = self.chunks == 1 and self.run.saver.latest() is None
        if due or first:
            self.run.save(state, "running", provisional=not due)
            self.last_checkpoint = self.run.clock()


def _diverged(run: _AsyncRun, watcher: _Watcher) -> DivergenceError:
    """Saves the newest finite state and returns the error naming it."""
    path = run.save(watcher.good, "diverged")
    good, bad = int(watcher.good.update_step), watcher.bad
    message = (
        f"training diverged: the parameters were non-finite after update {bad} (finite after "
        f"update {good}); the workers were stopped; the last good state (update {good}) is "
        f"saved in {path}. Lower lr, keep max_grad_norm finite, or check reward_scale."
    )
    run.info.update(error=message)
    run.folder.write_info(run.info)
    return DivergenceError(message, good + 1, ("parameters",), (0,), str(path))


def _rescue(run: _AsyncRun, state: TrainState) -> Exception:
    """Saves `state` to a new folder (the run's was deleted) and returns the error naming it."""
    run.folder = rescue_folder(run.claim.path, run.config)
    run.info = {**run.info, "rescued_from": str(run.claim.path)}
    run.saver = checkpoints.Checkpointer(run.folder.checkpoint_dir, run.config, 1)
    return folder_lost(run.claim.path, int(state.update_step), run.save(state, "rescued"))


def _open_run(
    config: Config, claim: run_claim.RunClaim, seed: int, resume: bool, given: dict, log
) -> _AsyncRun:
    """The run's store state (initial, or from its newest checkpoint that verifies), its
    options (`resolve_options`) and run.json, written as the run starts."""
    folder = RunFolder(claim.path)
    if resume:
        path, content = newest_checkpoint(claim.path, log)
        check_belongs(claim.path, content.config, path)
        ckpt.check_config(content.config, config, str(path))
        state, info = restore_store(content, str(path)), folder.read_info()
        seed = content.meta.get("seed", seed)
        start_timeline(path, log)  # first: a crash between leaves metrics to cut next time
        truncate_metrics(claim.path, int(content.meta["update"]))
        clock = Clock(float(content.meta.get("time_s") or 0.0))
        log(f"resuming from {path.name}: not bitwise (the workers' order is the scheduler's)")
    else:
        state = trainers.initial_state(config, jax.random.PRNGKey(seed))
        claim.clear()
        info = {"created": datetime.datetime.now().isoformat(timespec="seconds")}
        clock = Clock(0.0)
    options = resolve_options(given, info.get("options") or {})
    chunk = options.chunk_updates or default_chunk_updates(config.num_updates)
    options = options._replace(chunk_updates=int(chunk))
    saver = checkpoints.Checkpointer(folder.checkpoint_dir, config, options.keep_checkpoints)
    run = _AsyncRun(config, claim, seed, state, info, clock, options, saver, folder)
    info.update(invocation_info(info, options), seed=seed, num_seeds=1, trainer=ASYNC_TRAINER)
    folder.write_config(config)
    folder.write_info(info)
    return run


def _train(run: _AsyncRun, stop: StopRequest, stop_after: int | None, progress: bool):
    """`train_async` (`train_host`) over the run's store, watched; returns its result, status,
    watcher and store."""
    config = run.config
    left = config.num_updates - run.done
    store = ParameterStore(run.state, trainers.store_apply(config), left, config.batch_size)
    writers = open_writers(run.folder, 1, run.options.tensorboard)
    bar = Progress(config.total_timesteps, int(run.state.env_steps), progress)
    watcher = _Watcher(run, store, writers, bar, stop)
    watcher.stop_after = math.inf if stop_after is None else stop_after
    # A new run is `train_async(config, PRNGKey(seed))`; a resumed one's workers get fresh
    # environments from keys of their own.
    invocation, key = len(run.info["commands"]) - 1, jax.random.PRNGKey(run.seed)
    key = jax.random.fold_in(key, invocation) if invocation else key
    try:
        try:
            result = trainers.train(config, key, callback=watcher, store=store)
        except DivergenceError as error:  # the host learner's: its bad update was not applied
            result, watcher.bad = None, error.update
        with watcher.lock:
            watcher.report()
        if result is not None and result.worker_nodes:
            _record_workers(run, result)
    finally:
        bar.close()
        writers.close()
    if result is None:
        status = "diverged"
    elif store.version >= left:
        status = "finished"
    else:
        status = "interrupted" if stop.is_set() or result.interrupted else "stopped"
    return result, status, watcher, store


def _record_workers(run: _AsyncRun, result: AsyncResult) -> None:
    """Ray workers in run.json (written with the final checkpoint; once per invocation): where
    each ran in this invocation, its restarts, the restarts of every invocation together, and
    the learner's busy fraction."""
    run.info["workers"] = [
        {**node, "restarts": restarts}
        for node, restarts in zip(result.worker_nodes, result.worker_restarts, strict=True)
    ]
    run.info["worker_restarts"] = run.info.get("worker_restarts", 0) + sum(result.worker_restarts)
    run.info["learner_busy"] = result.learner_seconds / max(result.wall_seconds, 1e-9)


def train_async_run(
    config: Config,
    run_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
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
) -> AsyncRunOutcome:
    """Trains `config` into the run folder `run_dir`, or continues the run there (`resume`: not
    bitwise, see the module): an asynchronous algorithm with `train_async` (gymnax or host
    environments), or a synchronous one on host environments with `train_host` (one learner).

    The options mean what they mean for `runs.train_run` (recorded in the folder, restored on
    resume); `stop_after` stops after about that many more updates (each worker finishes the
    update it is computing). Ctrl-C or SIGTERM stops the workers after their current update,
    with a checkpoint (status "interrupted"). Raises `DivergenceError`, after saving the newest
    finite state, once an update made the parameters non-finite.
    """
    options = (chunk_updates, checkpoint_every, checkpoint_seconds, keep_checkpoints, tensorboard)
    given = RunOptions(*options)._asdict()  # None: not given
    resolve_options(given, {})
    trainers.check(config)
    if resume and Path(run_dir).is_file():
        raise ConfigError(f"--resume {run_dir}: an {config.algo} run resumes from its folder")
    with interruptible(log) as stop, run_claim.claim(run_dir, overwrite, resume) as claim:
        start = time.perf_counter()
        trainers.store_apply(config)  # compiles, once per config (refuses a jitted one)
        compile_s = time.perf_counter() - start
        run = _open_run(config, claim, seed, resume, given, log)
        result, status, watcher, store = _train(run, stop, stop_after, progress)
        if watcher.bad is not None:
            raise _diverged(run, watcher)
        if watcher.lost:
            raise _rescue(run, store.state)
        final = store.state
        path = run.save(final, status)
    update = int(final.update_step)
    return AsyncRunOutcome(status, claim.path, result, update, path, compile_s, stop.signum)
