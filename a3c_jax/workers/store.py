"""The worker world's shared parts: the parameter store that actor-learner threads (A3C) or one
host learner update, the records of its updates, the gradient every worker computes, and the
loop that runs workers as threads.

A worker repeats: check out the store's parameters with their version `v` (the number of
gradients applied so far); play `n_steps` in its own environments with that copy and compute
the n-step advantage actor-critic gradient (`worker_gradient`); hand it to the store, which
applies it with one optimiser for all workers (so RMSprop's statistics are shared, as in the
A3C paper) and records its staleness: the number of other workers' gradients applied since the
checkout. Parameters, gradients and the optimiser state travel as one flat vector
(`jax.flatten_util.ravel_pytree`): a jitted call then takes one array instead of one per layer.

`run_workers` is the loop of every worker trainer (`a3c.train_async` over gymnax or host
environments); later backends (separate processes, other machines) join here.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from a3c_jax.algorithms.optim import (
    Optimizer,
    compute_gradients,
    flatten,
)
from a3c_jax.config import Config
from a3c_jax.core.types import (
    CoreState,
    LossMetrics,
    Params,
    PRNGKey,
    TrainState,
    Transition,
    UpdateMetrics,
    UpdateOutput,
)
from a3c_jax.training.loop import InitKeys, update_metrics

# A worker's private carry (its environments and its key), as the tuple of its leaves.
Carry = tuple[jax.Array, ...]


class UpdateRecord(NamedTuple):
    """What the store records about one applied gradient (and hands to `train_async`'s callback)."""

    update: int  # gradients applied before this one (0-based position in the run)
    worker: int  # the worker that computed it
    staleness: int  # gradients applied between that worker's copy of the parameters and this one
    env_steps: int  # environment steps of all updates applied so far, this one included
    wall_time: float  # seconds from the start of the workers to this update


class AsyncMetrics(NamedTuple):
    """Per-update figures of an asynchronous run, each `[num_updates]`, in the order the store
    applied the gradients (the order of `AsyncResult.metrics`)."""

    worker: np.ndarray  # int: the worker whose gradient the update applied
    staleness: np.ndarray  # int: versions applied between that worker's copy and this update
    wall_time: np.ndarray  # float: seconds from the start of the workers to this update


class AsyncResult(NamedTuple):
    """What `train_async` returns: the synchronous `TrainResult`'s fields and the asynchrony's."""

    params: Params  # final actor and critic parameters
    opt_state: optax.OptState  # the shared optimiser state, shaped as the synchronous trainer's
    metrics: UpdateMetrics  # numpy `[num_updates]` per field, as `TrainResult.metrics`
    async_metrics: AsyncMetrics
    train_state: TrainState  # params, opt_state and the update and environment-step counters
    wall_seconds: float  # from starting the workers to the last one stopping (compile excluded)
    cpu_seconds: float  # CPU time of the whole process (all its threads) in those seconds
    compile_seconds: float  # tracing and compiling (0 where `config` was compiled before)
    interrupted: bool  # True when Ctrl-C stopped the run before its budget was spent
    # Ray workers (`workers.ray_backend`): where each ran ({"worker", "node_id", "hostname",
    # "pid"} per worker) and how often Ray restarted each one's process; () for threads.
    worker_nodes: tuple[dict[str, Any], ...] = ()
    worker_restarts: tuple[int, ...] = ()
    # Seconds the Ray learner spent differentiating (data parallelism) and applying: its busy
    # fraction is `learner_seconds / wall_seconds` (the deck's "central process bottleneck").
    learner_seconds: float = float("nan")

    @property
    def num_updates(self) -> int:
        """Gradients applied."""
        return len(self.async_metrics.staleness)

    @property
    def staleness_mean(self) -> float:
        return float(np.mean(self.async_metrics.staleness)) if self.num_updates else float("nan")

    @property
    def staleness_max(self) -> int:
        return int(np.max(self.async_metrics.staleness)) if self.num_updates else 0

    @property
    def cores_busy(self) -> float:
        """`cpu_seconds / wall_seconds`: the average number of CPU cores the run kept busy (above 1
        only where workers computed at the same time)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    @property
    def updates_per_second(self) -> float:
        return self.num_updates / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    @property
    def env_steps_per_second(self) -> float:
        steps = int(self.train_state.env_steps)
        return steps / self.wall_seconds if self.wall_seconds > 0 else float("nan")


class ParameterStore:
    """The shared parameters: a `TrainState` over the flat parameter vector, its version (the
    number of gradients applied), the update budget and the record of every applied gradient.

    Thread-safe. The lock is held for bookkeeping and to enqueue the jitted optimiser step, never
    while a worker plays or differentiates. A copy of the parameters is a reference to the current
    immutable array: it cannot change under the worker that holds it.
    """

    def __init__(
        self,
        train_state: TrainState,
        apply_fn: Callable[[TrainState, jax.Array], TrainState] | None,
        num_updates: int,
        batch_size: int,
    ) -> None:
        self._lock = threading.Lock()
        self._state = train_state
        self._apply_fn = apply_fn
        self._num_updates = num_updates
        self._batch_size = batch_size
        self._claimed = 0
        self._start = time.perf_counter()
        self.version = 0
        self.records: list[UpdateRecord] = []
        self.worker_metrics: list[jax.Array] = []  # [F] per update, as the workers reported them
        self.stopping = threading.Event()

    @property
    def state(self) -> TrainState:
        """The current `TrainState` over the flat parameters `[P]`."""
        with self._lock:
            return self._state

    def start_clock(self) -> None:
        """Sets the moment `UpdateRecord.wall_time` counts from (the workers' start)."""
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since `start_clock`."""
        return time.perf_counter() - self._start

    def stop(self) -> None:
        """No update is handed out or applied after this."""
        self.stopping.set()

    def checkout(self) -> tuple[jax.Array, int] | None:
        """Claims one update of the budget and returns the parameters `[P]` with their version;
        `None` when the budget is spent or the run is stopping."""
        with self._lock:
            if self.stopping.is_set() or self._claimed >= self._num_updates:
                return None
            self._claimed += 1
            return self._state.params, self.version

    def release(self) -> None:
        """Gives back one update claimed by `checkout` whose gradient will never come (its
        worker's process died): another worker computes it instead."""
        with self._lock:
            self._claimed -= 1

    def apply(
        self, worker: int, grads: jax.Array, version: int, worker_metrics: jax.Array
    ) -> UpdateRecord | None:
        """Applies `grads` `[P]`, computed on the parameters of `version`, with the one optimiser
        (`apply_fn`); `None` (nothing applied) once the run is stopping."""
        with self._lock:
            if self.stopping.is_set():
                return None
            return self._record(self._apply_fn(self._state, grads), worker, version, worker_metrics)

    def commit(
        self, train_state: TrainState, worker: int, version: int, worker_metrics: jax.Array
    ) -> UpdateRecord | None:
        """Replaces the state by `train_state`, one update made outside the store from the
        parameters of `version` (a synchronous learner's fused gradient and optimiser step);
        `None` (nothing replaced) once the run is stopping."""
        with self._lock:
            if self.stopping.is_set():
                return None
            return self._record(train_state, worker, version, worker_metrics)

    def _record(
        self, train_state: TrainState, worker: int, version: int, worker_metrics: jax.Array
    ) -> UpdateRecord:
        """Makes `train_state` current and records its update; the caller holds the lock."""
        self._state = train_state
        record = UpdateRecord(
            update=self.version,
            worker=worker,
            staleness=self.version - version,
            env_steps=(self.version + 1) * self._batch_size,
            wall_time=self.elapsed(),
        )
        self.version += 1
        self.records.append(record)
        self.worker_metrics.append(worker_metrics)
        return record


class AsyncParts(NamedTuple):
    """The compiled pieces of an asynchronous run (`make_async_parts`)."""

    init: Callable[[PRNGKey], tuple[TrainState, list[Any]]]  # key -> store state, worker carries
    worker_step: Callable[[jax.Array, Any], tuple[Any, jax.Array, jax.Array]]
    apply: Callable[[TrainState, jax.Array], TrainState]
    unravel: Callable[[jax.Array], Params]  # [P] -> the networks' parameters
    optimizer: Optimizer
    # Releases what `init` acquired for the workers' carries (host environments); run after the
    # workers stop. gymnax carries are arrays: nothing to release.
    close: Callable[[list[Any]], None] = lambda carries: None
    # One worker's carry alone, `(key, worker) -> carry` (the `init(key)[1][worker]` that a
    # worker in its own process makes without the others': `ray_backend`).
    init_worker: Callable[[PRNGKey, int], Any] | None = None
    # Data parallelism (`ray_backend`): a worker's rollout without its gradient, `(params [P],
    # carry) -> (carry, traj [T, B], log μ(a_t|s_t) [T, B])`, and the learner's gradient of it
    # on its own parameters, `(params [P], traj, log μ) -> (grads [P], metrics [F])`
    # (`behaviour_gradient`).
    collect: Callable[[jax.Array, Any], tuple[Any, Transition, jax.Array]] | None = None
    learner_gradient: (
        Callable[[jax.Array, Transition, jax.Array], tuple[jax.Array, jax.Array]] | None
    ) = None


def worker_keys(keys: InitKeys, worker: int) -> tuple[PRNGKey, PRNGKey]:
    """The environment key and update-stream key of `worker`. Worker 0 takes the synchronous
    trainer's own (so one worker replays `make_train` of `a2c`); worker `i > 0` folds `i` into
    both."""
    if worker == 0:
        return keys.env, keys.loop
    return jax.random.fold_in(keys.env, worker), jax.random.fold_in(keys.loop, worker)


def worker_gradient(
    loss_fn: Callable[..., tuple[jax.Array, LossMetrics]],
    params: Params,
    traj: Transition,
    next_values: jax.Array,
    start_state: CoreState | None = None,
) -> tuple[jax.Array, jax.Array]:
    """A worker's gradient of one rollout `[T, B]` (`optim.compute_gradients` of the synchronous
    algorithm's `loss_fn(params, traj, next_values, None, start_state)`; `start_state`: a
    recurrent policy's hidden state at the rollout's start), flat `[P]`, and its `UpdateMetrics`
    stacked into `[F]` (`env_steps` and `learning_rate` nan: the store's to fill). Shared by the
    gymnax workers and the host-environment workers (`a3c_jax.host`)."""
    nan = jnp.full((), jnp.nan, jnp.float32)
    grads, loss_metrics = compute_gradients(loss_fn, params, traj, next_values, None, start_state)
    out = UpdateOutput(
        traj, jnp.ones(traj.reward.shape, bool), loss_metrics | {"learning_rate": nan}
    )
    metrics = update_metrics(jnp.zeros((), jnp.int32), out, nan, nan)
    return flatten(grads), jnp.stack([jnp.asarray(m, jnp.float32) for m in metrics])


def behaviour_gradient(
    loss_fn: Callable[..., tuple[jax.Array, LossMetrics]],
    params: Params,
    traj: Transition,
    next_values: jax.Array,
    behaviour_log_prob: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """`worker_gradient` of a rollout `[T, B]` that another policy played (a worker's older
    copy, `behaviour_log_prob` `[T, B]` its `log μ(a_t|s_t)`): the loss's advantages and
    targets are then V-trace's (`actor_critic.nstep_loss`); `next_values` from `params`."""

    def off_policy_loss(params, traj, next_values, valid, start_state):
        return loss_fn(params, traj, next_values, valid, start_state, behaviour_log_prob)

    return worker_gradient(off_policy_loss, params, traj, next_values)


@functools.lru_cache(maxsize=16)
def _learning_rates(optimizer: Optimizer) -> Callable[[np.ndarray], jax.Array]:
    """The schedule's rates at environment steps `[U]`, jitted once per optimiser."""
    return jax.jit(jax.vmap(optimizer.learning_rate))


def _unravel_train_state(train_state: TrainState, unravel: Callable) -> TrainState:
    """The store's flat `TrainState` with the parameters as the networks' pytree; the optimiser
    state is over the flat vector already, as in the synchronous trainer (`optim.Optimizer`).
    One jitted call (run op by op, `unravel` compiles one program per layer)."""
    return train_state._replace(params=jax.jit(unravel)(train_state.params))


def _forward_fill(x: np.ndarray) -> np.ndarray:
    """`x` `[U]` with each nan replaced by the latest earlier non-nan value (nan before any)."""
    index = np.where(np.isnan(x), 0, np.arange(len(x)))
    np.maximum.accumulate(index, out=index)
    return x[index]


def _collect_metrics(
    store: ParameterStore, optimizer: Optimizer, batch_size: int
) -> tuple[UpdateMetrics, AsyncMetrics]:
    records = store.records
    fields = UpdateMetrics._fields
    stacked = (
        np.stack(jax.device_get(store.worker_metrics))
        if records
        else np.zeros((0, len(fields)), np.float32)
    )
    columns = dict(zip(fields, stacked.T, strict=True))
    env_steps = np.array([r.env_steps for r in records], np.int64)
    columns["env_steps"] = env_steps
    # The rate each update was applied at: the schedule at the steps taken before it.
    columns["learning_rate"] = (
        np.asarray(_learning_rates(optimizer)(env_steps - batch_size))
        if records
        else np.zeros(0, np.float32)
    )
    # Where an update's rollout finished no episode, the latest finished episodes' figures
    # (the synchronous trainer's convention, here across workers in the order of the updates).
    columns["episode_return"] = _forward_fill(columns["episode_return"])
    columns["episode_length"] = _forward_fill(columns["episode_length"])
    async_metrics = AsyncMetrics(
        worker=np.array([r.worker for r in records], np.int32),
        staleness=np.array([r.staleness for r in records], np.int32),
        wall_time=np.array([r.wall_time for r in records], np.float64),
    )
    return UpdateMetrics(**columns), async_metrics


def _work(
    worker: int,
    store: ParameterStore,
    worker_step: Callable,
    carry: Any,
    callback: Callable[[UpdateRecord], bool | None] | None,
) -> None:
    """One actor-learner: copy, play and differentiate, hand over; until the budget is spent."""
    while (checkout := store.checkout()) is not None:
        params, version = checkout
        carry, grads, metrics = worker_step(params, carry)
        jax.block_until_ready(grads)  # the rollout and the gradient run here, the GIL released
        record = store.apply(worker, grads, version, metrics)
        if record is not None and callback is not None and callback(record):
            store.stop()  # the callback asked to stop (e.g. once the task is solved)


def async_result(
    store: ParameterStore,
    unravel: Callable[[jax.Array], Params],
    optimizer: Optimizer,
    batch_size: int,
    timings: tuple[float, float, float],
    interrupted: bool,
) -> AsyncResult:
    """The `AsyncResult` of a finished (or stopped) run over `store` (`unravel`: `[P]` -> the
    networks' parameters); `timings`: its wall, CPU and compile seconds."""
    wall_seconds, cpu_seconds, compile_seconds = timings
    train_state = _unravel_train_state(jax.block_until_ready(store.state), unravel)
    metrics, async_metrics = _collect_metrics(store, optimizer, batch_size)
    return AsyncResult(
        params=train_state.params,
        opt_state=train_state.opt_state,
        metrics=metrics,
        async_metrics=async_metrics,
        train_state=train_state,
        wall_seconds=wall_seconds,
        cpu_seconds=cpu_seconds,
        compile_seconds=compile_seconds,
        interrupted=interrupted,
    )


def _run_workers(
    num_workers: int,
    store: ParameterStore,
    worker_step: Callable,
    carries: list,
    callback: Callable[[UpdateRecord], bool | None] | None,
) -> tuple[float, float, bool]:
    """Runs `num_workers` threads (`_work`) on `store` until the budget is spent, the callback or
    a worker's exception stops them (that exception is raised here, with a note naming the
    worker), or Ctrl-C does. Returns the wall and CPU seconds and whether Ctrl-C stopped it."""
    failures: list[tuple[int, BaseException]] = []
    running = [num_workers]
    running_lock = threading.Lock()
    all_stopped = threading.Event()

    def run(worker: int) -> None:
        try:
            _work(worker, store, worker_step, carries[worker], callback)
        except BaseException as error:
            failures.append((worker, error))
            store.stop()
        finally:
            with running_lock:
                running[0] -= 1
                if running[0] == 0:
                    all_stopped.set()

    threads = [
        threading.Thread(target=run, args=(i,), name=f"a3c-worker-{i}", daemon=True)
        for i in range(num_workers)
    ]
    cpu_start = time.process_time()
    store.start_clock()
    interrupted = False
    for thread in threads:
        thread.start()
    try:
        while not all_stopped.wait(0.05):  # a timeout keeps the wait open to Ctrl-C
            pass
    except KeyboardInterrupt:
        interrupted = True
        store.stop()
        all_stopped.wait()
    wall_seconds = store.elapsed()
    cpu_seconds = time.process_time() - cpu_start
    for thread in threads:
        thread.join()
    if failures:
        worker, error = failures[0]
        error.add_note(f"raised in A3C worker {worker} of {num_workers}; every worker was stopped")
        raise error
    return wall_seconds, cpu_seconds, interrupted


def run_workers(
    config: Config,
    parts: AsyncParts,
    key: PRNGKey,
    compile_seconds: float,
    callback: Callable[[UpdateRecord], bool | None] | None = None,
    store: ParameterStore | None = None,
) -> AsyncResult:
    """Runs `config.num_workers` threads over `parts` (see `a3c.train_async`) until the store's
    budget is spent; returns the `AsyncResult`."""
    train_state, carries = parts.init(key)
    if store is None:
        store = ParameterStore(train_state, parts.apply, config.num_updates, config.batch_size)
    try:
        wall_seconds, cpu_seconds, interrupted = _run_workers(
            config.num_workers, store, parts.worker_step, carries, callback
        )
    finally:
        parts.close(carries)
    timings = wall_seconds, cpu_seconds, compile_seconds
    return async_result(
        store, parts.unravel, parts.optimizer, config.batch_size, timings, interrupted
    )
