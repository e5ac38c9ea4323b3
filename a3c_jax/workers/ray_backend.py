"""A3C beyond one process: the workers as Ray actors, on one machine or a cluster's many
(`Config.workers="ray"`, `Config.trainer == "ray"`).

Each worker is an actor (`RolloutWorker`, one CPU, its own process) holding its own
environments (a gymnax vector or a Gymnasium vector environment), its own key stream
(`store.worker_keys`, as a thread worker's) and the jitted CPU programs of its part
(`a3c.make_async_parts`). The learner, in the calling process, holds the parameters and the one
optimiser's state for all workers (as in the paper), in the same `ParameterStore` the threads
update, so run folders, metrics, checkpoints and `--resume` work unchanged. It repeats: wait for
whichever worker's result is ready (`ray.wait`), apply it, and send the new parameters to that
worker alone (put in the object store once per version, not copied per worker). Every message
carries the parameter version it was computed from, so the store records each update's
staleness as for threads.

What a worker sends is `Config.parallelism`, the second deck's two choices:

- "gradients" (A3C): the gradient `[P]` of its rollout on its copy of the parameters; the
  learner only applies it.
- "data": the rollout `[T, B]` with its behaviour policy's log-probabilities `log μ(a_t|s_t)`;
  the learner differentiates it on its own, newer parameters with V-trace's advantages and
  targets (IMPALA; `actor_critic.nstep_loss`), one rollout per update.

Faults: Ray restarts a worker whose process died (killed, out of memory, a crashing environment
library) up to `Config.max_worker_restarts` times; the restarted process makes fresh
environments, runs the task its predecessor died in (on the parameters that task was sent),
then gets the current parameters with its next one; the restart is counted
(`AsyncResult.worker_restarts`, run.json). A worker that died more often is dropped, and its
claimed update handed to another. An exception raised by a worker's own code (not a dead
process) stops the run, as a thread worker's does. Ctrl-C stops the learner; the actors are
killed on the way out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a3c_jax.config import Config, ConfigError
from a3c_jax.core.types import PRNGKey
from a3c_jax.workers import a3c
from a3c_jax.workers.store import (
    AsyncParts,
    AsyncResult,
    ParameterStore,
    UpdateRecord,
    async_result,
)

CONNECT_TIMEOUT_S = 5.0  # for an address that does not answer


def require_ray() -> None:
    """`ConfigError` naming the extra to install where Ray is missing."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "workers='ray' needs Ray, which is not installed here: pip install "
            '"a3c_jax[ray]" (on every machine of the cluster, with the same versions)'
        )


class RolloutWorker:
    """One worker in its own process (a Ray actor): its environments, key stream and compiled
    programs, built from the run's config, key and its index (so a restarted process rebuilds
    itself from its constructor's arguments)."""

    def __init__(self, config: dict[str, Any], key: np.ndarray, worker: int) -> None:
        import ray

        jax.config.update("jax_platforms", "cpu")  # the learner may hold the accelerator
        self.worker = worker
        self.config = Config.from_dict(config)
        self.parts = a3c.make_async_parts(self.config)
        run_key = jnp.asarray(key)
        with warnings.catch_warnings():  # Ray's property warns about its own internals
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = ray.get_runtime_context().was_current_actor_reconstructed
        if restarted:
            # Restarted after its process died: new episodes, not the first process's again.
            run_key = jax.random.fold_in(run_key, os.getpid())
        self.carry = self.parts.init_worker(run_key, worker)

    def info(self) -> dict[str, Any]:
        """Where this worker runs: its index, Ray node id, host name and process id."""
        import ray

        return {
            "worker": self.worker,
            "node_id": ray.get_runtime_context().get_node_id(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }

    def gradient(self, params: np.ndarray, version: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        """Gradient parallelism: one rollout on `params` `[P]` (of `version`) and its
        gradient; returns `(version, its process id, grads [P], metrics [F])`."""
        self.carry, grads, metrics = self.parts.worker_step(jnp.asarray(params), self.carry)
        return version, os.getpid(), np.asarray(grads), np.asarray(metrics)

    def trajectory(self, params: np.ndarray, version: int) -> tuple[int, int, Any, np.ndarray]:
        """Data parallelism: one rollout on `params` `[P]` (of `version`); returns `(version,
        its process id, traj [T, B] as numpy, log μ(a_t|s_t) [T, B])`."""
        self.carry, traj, log_prob = self.parts.collect(jnp.asarray(params), self.carry)
        traj, log_prob = jax.device_get((traj, log_prob))
        return version, os.getpid(), traj, log_prob


@contextlib.contextmanager
def connected(config: Config) -> Iterator[Any]:
    """Ray, connected for the run: the instance this process already joined (left running
    after), else a new local one (`ray_address="local"`) or the cluster at `config.ray_address`
    (both shut down after). An address that does not answer raises `ConfigError` within
    `CONNECT_TIMEOUT_S` seconds; so does a cluster with fewer CPUs than `num_workers`."""
    require_ray()
    import ray

    started = not ray.is_initialized()
    if started:
        address = None if config.ray_address == "local" else config.ray_address
        if address not in (None, "auto"):
            _check_answers(address)
        try:
            ray.init(address=address, include_dashboard=False)
        except ConnectionError as error:
            raise ConfigError(
                f"ray_address={address!r}: no Ray cluster to join ({error}); start one with "
                "`ray start --head`, or leave ray_address unset for a local Ray instance"
            ) from error
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < config.num_workers:
            raise ConfigError(
                f"num_workers={config.num_workers}: the Ray cluster has {cpus} CPUs and each "
                f"worker takes one; lower num_workers to at most {cpus} or add machines "
                "(`ray start --address=...` on each)"
            )
        yield ray
    finally:
        if started:
            ray.shutdown()


def _check_answers(address: str) -> None:
    """`ConfigError` unless something accepts a TCP connection at `address` ("HOST:PORT" or
    "ray://HOST:PORT") within `CONNECT_TIMEOUT_S` (Ray's own attempt waits far longer)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            f"ray_address={address!r}: nothing answers there ({reason}); start the head node "
            "with `ray start --head` and give its address, or leave ray_address unset for a "
            "local Ray instance"
        ) from error


def start_workers(ray: Any, config: Config, key: PRNGKey) -> list[Any]:
    """`config.num_workers` `RolloutWorker` actors, one CPU each, spread over the cluster's
    nodes, restarted by Ray up to `config.max_worker_restarts` times each. A task whose
    worker's process died is run again by the restarted process (`max_task_retries=-1`), on
    the parameters it was sent (its result is then the staler for it)."""
    actor = ray.remote(num_cpus=1, max_restarts=config.max_worker_restarts, max_task_retries=-1)(
        RolloutWorker
    )
    key_data = np.asarray(jax.random.key_data(key))
    return [
        actor.options(scheduling_strategy="SPREAD").remote(config.to_dict(), key_data, w)
        for w in range(config.num_workers)
    ]


def _result(
    ray: Any,
    task: Any,
    worker: int,
    workers: list[Any],
    store: ParameterStore,
    lost: set[int],
    config: Config,
) -> tuple[Any, ...] | None:
    """What `worker`'s `task` returned: `(version, pid, *payload)`; None when the worker is gone
    for good (restarted too often: its update goes to whichever worker asks next). Raises what
    the worker's own code raised, with a note naming it; `RuntimeError` once every worker is
    gone."""
    try:
        return ray.get(task)
    except ray.exceptions.RayActorError as error:  # restarted too often: gone
        store.release()
        lost.add(worker)
        if len(lost) == len(workers) and not store.stopping.is_set():
            raise RuntimeError(
                f"every Ray worker's process died more than max_worker_restarts="
                f"{config.max_worker_restarts} times; the run stopped"
            ) from error
        return None
    except ray.exceptions.RayTaskError as error:  # its own code raised
        cause = error.as_instanceof_cause()
        cause.add_note(f"raised in Ray worker {worker} of {len(workers)}; every worker was stopped")
        raise cause from None


def _apply(
    parts: AsyncParts, store: ParameterStore, worker: int, version: int, payload: list, data: bool
) -> UpdateRecord | None:
    """Applies a worker's result to `store`: its gradient, or (data parallelism) the learner's
    V-trace-corrected gradient of its trajectory; waits for the new parameters."""
    if data:
        traj, log_prob = payload
        grads, metrics = parts.learner_gradient(store.state.params, traj, log_prob)
    else:
        grads, metrics = payload
    record = store.apply(worker, grads, version, metrics)
    jax.block_until_ready(store.state.params)
    return record


def _learner_loop(
    ray: Any,
    config: Config,
    parts: AsyncParts,
    workers: list[Any],
    nodes: list[dict[str, Any]],
    store: ParameterStore,
    callback: Callable[[UpdateRecord], bool | None] | None,
) -> tuple[float, float, bool, list[int], float]:
    """Hands out updates of `store`'s budget to `workers` and applies their results as they
    come (`ray.wait`), until the budget is spent, the callback stops it or Ctrl-C does.

    A result from another process than the worker's last (its `nodes` entry, updated here) is
    a restart. Returns the wall and CPU seconds of the learner's process, whether Ctrl-C
    stopped it, each worker's restarts, and the seconds the learner was busy (differentiating
    and applying)."""
    data = config.parallelism == "data"
    method = "trajectory" if data else "gradient"
    pending: dict[Any, int] = {}  # task -> worker
    restarts = [0] * len(workers)
    lost: set[int] = set()
    shared: list[Any] = [None, -1]  # the newest parameters in the object store, their version

    def dispatch(worker: int) -> None:
        checkout = store.checkout()
        if checkout is None:
            return
        params, version = checkout
        if shared[1] != version:  # once per version, whichever workers read it
            shared[:] = [ray.put(np.asarray(params)), version]
        pending[getattr(workers[worker], method).remote(shared[0], version)] = worker

    interrupted, busy = False, 0.0
    cpu_start = time.process_time()
    store.start_clock()
    try:
        for worker in range(len(workers)):
            dispatch(worker)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.1)
            for task in ready:
                worker = pending.pop(task)
                result = _result(ray, task, worker, workers, store, lost, config)
                if result is None:
                    continue
                version, pid, *payload = result
                if pid != nodes[worker]["pid"]:  # Ray restarted its process
                    restarts[worker] += 1
                    nodes[worker] = ray.get(workers[worker].info.remote())
                start = time.perf_counter()
                record = _apply(parts, store, worker, version, payload, data)
                busy += time.perf_counter() - start
                if record is not None and callback is not None and callback(record):
                    store.stop()  # the callback asked to stop
                dispatch(worker)
    except KeyboardInterrupt:
        interrupted = True
        store.stop()
    return store.elapsed(), time.process_time() - cpu_start, interrupted, restarts, busy


def train_ray(
    config: Config,
    key: PRNGKey,
    *,
    callback: Callable[[UpdateRecord], bool | None] | None = None,
    store: ParameterStore | None = None,
) -> AsyncResult:
    """Trains `config` (`workers="ray"`) with `config.num_workers` Ray actors around one
    learner in this process, until `config.num_updates` updates have been applied.

    Args and result as `a3c.train_async` (the same keys: worker `i`'s environments and stream
    come from `worker_keys(init_keys(key), i)`); the result also says where each worker ran
    (`worker_nodes`) and how often Ray restarted it (`worker_restarts`). `compile_seconds`
    counts the workers' start (their processes, imports and compiles) too. Not reproducible:
    the order in which results reach the learner is the cluster's.
    """
    if config.trainer != "ray":
        raise ConfigError(f"train_ray trains workers='ray' configs; got workers={config.workers!r}")
    start = time.perf_counter()
    parts = a3c.make_async_parts(config)
    if store is None:
        store = ParameterStore(
            a3c.initial_state(config, key), parts.apply, config.num_updates, config.batch_size
        )
    with connected(config) as ray:
        workers = start_workers(ray, config, key)
        try:
            nodes = ray.get([w.info.remote() for w in workers])  # each one started
            compile_seconds = time.perf_counter() - start
            wall, cpu, interrupted, restarts, busy = _learner_loop(
                ray, config, parts, workers, nodes, store, callback
            )
        finally:
            for worker in workers:
                ray.kill(worker)
    timings = wall, cpu, compile_seconds
    result = async_result(
        store, parts.unravel, parts.optimizer, config.batch_size, timings, interrupted
    )
    return result._replace(
        worker_nodes=tuple(nodes), worker_restarts=tuple(restarts), learner_seconds=busy
    )
