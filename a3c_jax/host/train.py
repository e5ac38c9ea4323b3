"""Training on host environments: synchronous A2C over a Gymnasium vector environment
(`train_host`), and the parts of A3C's workers (`make_async_parts`, run by
`asynchronous.train_async`).

Both act with one jitted policy step per environment step (`rollout.rollout`, the only loop that
crosses host and device) and learn with the gymnax trainers' own jitted pieces: A2C's gradient
step is `actor_critic.nstep_learn` (`nstep_loss` through `optim.gradient_step`), an A3C worker's
gradient is `asynchronous.worker_gradient` of the same loss, applied through the shared
`asynchronous.ParameterStore` by `optim.apply_gradients`. Every jitted function is compiled once
per `Config`, ahead of time, for the shapes of one rollout, so no step recompiles (a compiled
function refuses other shapes rather than compiling again).
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
from jax.flatten_util import ravel_pytree

from a3c_jax import envs
from a3c_jax.algorithms import actor_critic, registry
from a3c_jax.asynchronous import (
    AsyncMetrics,
    AsyncParts,
    AsyncResult,
    UpdateRecord,
    train_async,
    worker_gradient,
    worker_keys,
)
from a3c_jax.config import Config, ConfigError
from a3c_jax.divergence import DivergenceError, diverged_quantities
from a3c_jax.host import rollout, spaces
from a3c_jax.networks import Networks, make_networks
from a3c_jax.optim import Optimizer, apply_gradients, flatten, init_train_state, make_optimizer
from a3c_jax.train import InitKeys, divergence, init_keys, update_metrics
from a3c_jax.types import Params, PRNGKey, TrainState, Transition, UpdateMetrics
from a3c_jax.xla import compile_ahead

# Algorithms a host environment trains: the fixed-length n-step ones (episodic ones restart every
# environment at each update, which a stream of host steps does not do) and A3C.
HOST_ALGORITHMS = ("a2c", "nstep_da2c", "online_ac", *registry.names(asynchronous=True))


def check_host_config(config: Config) -> None:
    """`ConfigError` unless `config` trains a host environment with a host algorithm."""
    if not spaces.is_host_env(config.env_name):
        raise ConfigError(
            f"env_name={config.env_name!r} is a gymnax environment: train it with "
            "make_train(config) (or train_async for a3c); train_host is for 'gymnasium:<id>'"
        )
    if config.algo not in HOST_ALGORITHMS:
        raise ConfigError(
            f"algo={config.algo!r} does not train on host environments; choose one of "
            f"{HOST_ALGORITHMS} (episodic algorithms restart every environment at each update)"
        )


def traj_shapes(spec: envs.EnvSpec, num_steps: int, num_envs: int) -> Transition:
    """The abstract `Transition` `[T, B, ...]` that `rollout.rollout` returns for `spec`."""

    def array(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((num_steps, num_envs, *shape), dtype)

    obs = array(spec.obs_shape, jnp.float32)
    action = array(spec.action_shape, jnp.int32 if spec.discrete else jnp.float32)
    flag = array((), jnp.bool_)
    return Transition(
        obs=obs,
        action=action,
        reward=array((), jnp.float32),
        terminated=flag,
        truncated=flag,
        next_obs=obs,
        episode_return=array((), jnp.float32),
        episode_length=array((), jnp.int32),
    )


def split_keys(num_envs: int, num_steps: int, loop_key: PRNGKey) -> tuple[PRNGKey, jax.Array]:
    """One update's keys off the loop key (the synchronous trainer's split): the next loop key
    and the rollout's action keys `[T, B]` (`rollout.action_keys`)."""
    loop_key, update_key = jax.random.split(loop_key)
    return loop_key, rollout.action_keys(update_key, num_envs, num_steps)


class HostParts(NamedTuple):
    """What every host run of one `Config` shares, compiled once (`make_parts`)."""

    spec: envs.EnvSpec
    networks: Networks
    optimizer: Optimizer
    init: Callable[[PRNGKey], TrainState]  # key (`init_keys(key).params`) -> fresh TrainState
    next_keys: Callable[[PRNGKey], tuple[PRNGKey, jax.Array]]  # key -> (key, [T, B] act keys)
    act: Callable[[Params, jax.Array, jax.Array], jax.Array]  # (params, [B, O...], keys) -> [B]
    # (train_state, traj [T, B], last return [], last length [], loop key) -> (state, metrics,
    # divergence, the next rollout's `next_keys`): one call per update, the keys included.
    learn: Callable[..., tuple[TrainState, UpdateMetrics, jax.Array, PRNGKey, jax.Array]]


@functools.lru_cache(maxsize=16)
def make_parts(config: Config) -> HostParts:
    """Builds and compiles the jitted pieces of a synchronous host run of `config`."""
    check_host_config(config)
    spec = envs.make_env(config.env_name)
    networks = make_networks(config, spec)
    optimizer = make_optimizer(config)
    key = jax.random.PRNGKey(0)

    def init(params_key: PRNGKey) -> TrainState:
        return init_train_state(optimizer, networks.init(params_key))

    next_keys = functools.partial(split_keys, config.num_envs, config.n_steps)

    def learn(
        train_state: TrainState,
        traj: Transition,
        last_return: jax.Array,
        last_length: jax.Array,
        loop_key: PRNGKey,
    ) -> tuple[TrainState, UpdateMetrics, jax.Array, PRNGKey, jax.Array]:
        train_state, out = actor_critic.nstep_learn(
            spec, networks, config, optimizer, train_state, traj
        )
        metrics = update_metrics(train_state.env_steps, out, last_return, last_length)
        bad = divergence(metrics, train_state.params)
        return train_state, metrics, bad, *next_keys(loop_key)

    state = jax.eval_shape(init, key)
    _, act_keys = jax.eval_shape(next_keys, key)
    act_keys = jax.ShapeDtypeStruct(act_keys.shape[1:], act_keys.dtype)  # one step's [B]
    obs = jax.ShapeDtypeStruct((config.num_envs, *spec.obs_shape), jnp.float32)
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    traj = traj_shapes(spec, config.n_steps, config.num_envs)
    return HostParts(
        spec,
        networks,
        optimizer,
        compile_ahead(init, key, config=config),
        compile_ahead(next_keys, key, config=config),
        compile_ahead(rollout.make_act(spec, networks), state.params, obs, act_keys, config=config),
        compile_ahead(learn, state, traj, scalar, scalar, key, config=config),
    )


def train_host(
    config: Config,
    key: PRNGKey,
    *,
    callback: Callable[[UpdateRecord], bool | None] | None = None,
) -> AsyncResult:
    """Trains `config` on its host environment (`env_name="gymnasium:<id>"`).

    `algo="a3c"`: `train_async` (each of `num_workers` threads with its own `num_envs`
    environments). The n-step synchronous algorithms (`a2c`, `nstep_da2c`, `online_ac`): one
    learner over a Gymnasium vector environment of `num_envs` environments (`vector_env="sync"`:
    stepped in this thread; `"async"`: one process each), one gradient step per rollout of
    `n_steps`, until `config.num_updates` updates are done.

    Keys as the synchronous trainer's (`init_keys`): the parameters from its `params` key, the
    environments seeded from its `env` key, each update's action keys split off its `loop` key,
    so one A3C worker replays this with one environment.

    `callback(record)` runs after each update (as in `train_async`); returning True stops the
    run there.

    Returns an `AsyncResult` (the same type as `train_async`; here every update is worker 0's,
    with staleness 0). Ctrl-C stops the run and returns what was trained with
    `interrupted=True`; a non-finite loss, gradient or parameter raises `DivergenceError`.
    Environment state (Gymnasium's own) is never saved: a new run starts from fresh resets.
    """
    check_host_config(config)
    if config.asynchronous:
        return train_async(config, key, callback=callback)
    start = time.perf_counter()
    parts = make_parts(config.replace(vector_env="sync"))  # compiled alike for both
    compile_seconds = time.perf_counter() - start
    host_envs = rollout.HostEnvs(parts.spec, config.num_envs, config.vector_env)
    try:
        run = _learner_loop(config, parts, host_envs, init_keys(key), callback)
    finally:
        host_envs.close()
    train_state = jax.block_until_ready(run.train_state)
    return AsyncResult(
        params=train_state.params,
        opt_state=train_state.opt_state,
        metrics=_stack(run.rows),
        async_metrics=AsyncMetrics(
            worker=np.zeros(len(run.records), np.int32),
            staleness=np.zeros(len(run.records), np.int32),
            wall_time=np.array([r.wall_time for r in run.records], np.float64),
        ),
        train_state=train_state,
        wall_seconds=run.wall_seconds,
        cpu_seconds=run.cpu_seconds,
        compile_seconds=compile_seconds,
        interrupted=run.interrupted,
    )


class _LearnerRun(NamedTuple):
    """What the learner's loop leaves: the state, each update's metrics and record, its wall and
    CPU seconds (the loop alone, resets excluded) and whether Ctrl-C stopped it."""

    train_state: TrainState
    rows: list[UpdateMetrics]
    records: list[UpdateRecord]
    wall_seconds: float
    cpu_seconds: float
    interrupted: bool


def _learner_loop(
    config: Config,
    parts: HostParts,
    host_envs: rollout.HostEnvs,
    keys: InitKeys,
    callback: Callable[[UpdateRecord], bool | None] | None,
) -> _LearnerRun:
    """`config.num_updates` rollouts and gradient steps (fewer if the callback or Ctrl-C stops
    them); a non-finite loss, gradient or parameter raises `DivergenceError`."""
    train_state = parts.init(keys.params)
    rows: list[UpdateMetrics] = []
    records: list[UpdateRecord] = []
    interrupted = False
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    try:
        carry = rollout.reset(host_envs, keys.env)
        loop_key, act_keys = parts.next_keys(keys.loop)
        cpu_start, wall_start = time.process_time(), time.perf_counter()  # the loop alone
        last_return = last_length = np.float32(np.nan)
        for update in range(config.num_updates):
            carry, traj = rollout.rollout(
                host_envs, parts.act, train_state.params, carry, np.asarray(act_keys)
            )
            train_state, metrics, bad, loop_key, act_keys = parts.learn(
                train_state, traj, last_return, last_length, loop_key
            )
            if int(bad):
                _raise_diverged(update, int(bad))
            rows.append(metrics)
            last_return, last_length = metrics.episode_return, metrics.episode_length
            steps = (update + 1) * config.batch_size
            records.append(UpdateRecord(update, 0, 0, steps, time.perf_counter() - wall_start))
            if callback is not None and callback(records[-1]):
                break  # the callback asked to stop
    except KeyboardInterrupt:
        interrupted = True
    wall_seconds = time.perf_counter() - wall_start
    cpu_seconds = time.process_time() - cpu_start
    return _LearnerRun(train_state, rows, records, wall_seconds, cpu_seconds, interrupted)


def _stack(rows: list[UpdateMetrics]) -> UpdateMetrics:
    """Per-update metrics as numpy `[U]` per field."""
    if not rows:
        return UpdateMetrics(*(np.zeros(0, np.float32) for _ in UpdateMetrics._fields))
    host = jax.device_get(rows)
    return UpdateMetrics(*(np.stack(column) for column in zip(*host, strict=True)))


def _raise_diverged(update: int, code: int) -> None:
    names = diverged_quantities(code)
    raise DivergenceError(
        f"training diverged: update {update + 1} produced a non-finite {' and '.join(names)}. "
        "Lower lr, keep max_grad_norm finite, or check reward_scale.",
        update + 1,
        names,
        (0,),
    )


class HostWorker:
    """One A3C worker's carry: its own environments, their episode state, its key stream and the
    action keys of its next rollout."""

    def __init__(
        self,
        host_envs: rollout.HostEnvs,
        carry: rollout.HostCarry,
        keys: tuple[PRNGKey, jax.Array],
    ):
        self.host_envs = host_envs
        self.carry = carry
        self.key, self.act_keys = keys


@functools.lru_cache(maxsize=16)
def _compiled_worker(config: Config) -> tuple[Any, ...]:
    """The jitted pieces of a host A3C worker, over the flat parameters `[P]`: the policy step,
    the key stream, the gradient of a rollout and the store's optimiser step."""
    spec = envs.make_env(config.env_name)
    networks = make_networks(config, spec)
    optimizer = make_optimizer(config)
    next_keys = functools.partial(split_keys, config.num_envs, config.n_steps)
    shapes = jax.eval_shape(networks.init, jax.random.PRNGKey(0))
    _, unravel = ravel_pytree(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))
    loss_fn = functools.partial(actor_critic.nstep_loss, config=config, networks=networks)
    act = rollout.make_act(spec, networks)

    def act_flat(flat_params: jax.Array, obs: jax.Array, keys: jax.Array) -> jax.Array:
        return act(unravel(flat_params), obs, keys)

    def gradient(
        flat_params: jax.Array, traj: Transition, loop_key: PRNGKey
    ) -> tuple[jax.Array, jax.Array, PRNGKey, jax.Array]:
        params = unravel(flat_params)
        next_values = actor_critic.bootstrap_values(spec, networks, params, traj)
        return *worker_gradient(loss_fn, params, traj, next_values), *next_keys(loop_key)

    def apply(train_state: TrainState, grads: jax.Array) -> TrainState:
        return apply_gradients(optimizer, train_state, grads, config.batch_size)

    def init_flat(params_key: PRNGKey) -> TrainState:
        return init_train_state(optimizer, flatten(networks.init(params_key)))

    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(init_flat, key)
    _, act_keys = jax.eval_shape(next_keys, key)
    act_keys = jax.ShapeDtypeStruct(act_keys.shape[1:], act_keys.dtype)  # one step's [B]
    obs = jax.ShapeDtypeStruct((config.num_envs, *spec.obs_shape), jnp.float32)
    traj = traj_shapes(spec, config.n_steps, config.num_envs)
    return (
        spec,
        unravel,
        optimizer,
        compile_ahead(next_keys, key, config=config),
        compile_ahead(init_flat, key, config=config),
        compile_ahead(act_flat, state.params, obs, act_keys, config=config),
        compile_ahead(gradient, state.params, traj, key, config=config),
        compile_ahead(apply, state, state.params, config=config),
    )


def make_async_parts(config: Config) -> AsyncParts:
    """`train_async`'s parts over host environments (`asynchronous.AsyncParts`): each worker's
    carry is a `HostWorker` whose `num_envs` environments `init` creates and resets (worker `i`
    seeded from `worker_keys(keys, i)`), and `close` closes. `worker_step` plays `n_steps` in
    them (`rollout.rollout`, acting on the worker's copy of the parameters) and returns the
    gradient of `nstep_loss` (`asynchronous.worker_gradient`); the GIL is released while the
    jitted pieces run and while C-backed environments (ale-py) step."""
    check_host_config(config)
    spec, unravel, optimizer, next_keys, init_flat, act, gradient, apply = _compiled_worker(config)
    lock = threading.Lock()

    def init(key: PRNGKey) -> tuple[TrainState, list[HostWorker]]:
        keys = init_keys(key)
        workers = []
        try:
            for worker in range(config.num_workers):
                env_key, loop_key = worker_keys(keys, worker)
                host_envs = rollout.HostEnvs(spec, config.num_envs, "sync")
                carry = rollout.reset(host_envs, env_key)
                workers.append(HostWorker(host_envs, carry, next_keys(loop_key)))
        except BaseException:
            close(workers)
            raise
        return init_flat(keys.params), workers

    def worker_step(
        flat_params: jax.Array, worker: HostWorker
    ) -> tuple[HostWorker, jax.Array, jax.Array]:
        worker.carry, traj = rollout.rollout(
            worker.host_envs, act, flat_params, worker.carry, np.asarray(worker.act_keys)
        )
        grads, metrics, worker.key, worker.act_keys = gradient(flat_params, traj, worker.key)
        return worker, grads, metrics

    def close(workers: list[HostWorker]) -> None:
        with lock:
            for worker in workers:
                worker.host_envs.close()

    return AsyncParts(init, worker_step, apply, unravel, optimizer, close)
