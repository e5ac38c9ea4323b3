"""Training on host environments: synchronous A2C over a Gymnasium vector environment
(`train_host`), and the parts of A3C's workers on host environments (`make_async_parts`, run
by `a3c.train_async`).

Both act with one jitted policy step per environment step (`host_rollout.rollout`, the only
loop that crosses host and device) and learn with the gymnax trainers' own jitted pieces: A2C's
gradient step is `actor_critic.nstep_learn` (`nstep_loss` through `optim.gradient_step`), an A3C
worker's gradient is `store.worker_gradient` of the same loss, applied through the shared
`store.ParameterStore` by `optim.apply_gradients`. Every jitted function is compiled once
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

from a3c_jax import envs
from a3c_jax.algorithms import actor_critic
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.algorithms.optim import (
    Optimizer,
    apply_gradients,
    flatten,
    init_train_state,
    make_optimizer,
    unraveler,
)
from a3c_jax.config import Config, ConfigError
from a3c_jax.core.distributions import Distribution
from a3c_jax.core.types import Params, PRNGKey, TrainState, Transition, UpdateMetrics
from a3c_jax.training.divergence import DivergenceError, diverged_quantities
from a3c_jax.training.loop import divergence, init_keys
from a3c_jax.training.xla import compile_side_by_side
from a3c_jax.workers import host_rollout
from a3c_jax.workers.store import (
    AsyncParts,
    AsyncResult,
    ParameterStore,
    UpdateRecord,
    async_result,
    behaviour_gradient,
    worker_gradient,
    worker_keys,
)


def check_host_config(config: Config) -> None:
    """`ConfigError` unless the host learner trains `config` (`Config.trainer == "host"`)."""
    if config.trainer != "host":
        raise ConfigError(
            f"algo={config.algo!r} on env_name={config.env_name!r} is not trained by the host "
            "learner (a synchronous algorithm on a 'gymnasium:<id>' environment): train it with "
            "a3c_jax.train(config)"
        )


def traj_shapes(spec: envs.EnvSpec, num_steps: int, num_envs: int) -> Transition:
    """The abstract `Transition` `[T, B, ...]` that `host_rollout.rollout` returns for `spec`."""

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


def split_noise(
    policy: Distribution, num_envs: int, num_steps: int, loop_key: PRNGKey
) -> tuple[PRNGKey, jax.Array]:
    """One update's split of the loop key (the synchronous trainer's): the next loop key and the
    noise `[T, B, ...]` of the rollout's actions (`host_rollout.action_noise` of `policy`,
    the abstract distribution of one observation)."""
    loop_key, update_key = jax.random.split(loop_key)
    return loop_key, host_rollout.action_noise(policy, update_key, num_envs, num_steps)


LearnFn = Callable[[TrainState, Transition], tuple[TrainState, Params, jax.Array, jax.Array]]


class HostParts(NamedTuple):
    """What every host run of one `Config` shares, over the flat parameters `[P]` (the store's
    form, `asynchronous.ParameterStore`), compiled once (`make_parts`): A3C's workers use
    `gradient` and `apply` (`learn` is None), the synchronous learner `learn` (they are None)."""

    spec: envs.EnvSpec
    unravel: Callable[[jax.Array], Params]  # [P] -> the networks' parameters (traced)
    optimizer: Optimizer
    # `unravel` compiled: a rollout's one call, so that each step's `act` takes the networks'
    # arrays (an `unravel` inside `act` copies them at every step, which costs more).
    layers: Callable[[jax.Array], Params]
    # The run's key -> (TrainState [P], each of the W workers' environment keys and update-stream
    # keys, two W-tuples): `init_keys` and `worker_keys` in one program (the synchronous learner
    # is worker 0 of W = 1), so no key is split outside a compiled program.
    init: Callable[[PRNGKey], tuple[TrainState, tuple[PRNGKey, ...], tuple[PRNGKey, ...]]]
    # key -> (key, the next rollout's action noise [T, B, ...]) (`split_noise`)
    next_noise: Callable[[PRNGKey], tuple[PRNGKey, jax.Array]]
    # (params, [B, O...], the rollout's noise [T, B, ...], step t) -> [B] actions
    act: host_rollout.StepActFn
    # A3C's worker: ([P], traj [T, B]) -> (grads [P], metrics [F]).
    gradient: Callable[[jax.Array, Transition], tuple[jax.Array, jax.Array]] | None
    apply: Callable[[TrainState, jax.Array], TrainState] | None  # A3C's store: (state, [P])
    # The synchronous learner's update, one call: (state, traj) -> (state, its `layers`,
    # metrics [F], divergence code []); gradient and optimiser fused. The next rollout's noise
    # comes from `next_noise` (its random-number generator compiled once, not in here too).
    learn: LearnFn | None
    # Data parallelism (Ray workers, `store.AsyncParts.collect`), jitted, compiled where first
    # called: ([P], traj) -> log π(a_t|s_t) [T, B] of the acting policy; the learner's
    # ([P], traj, log μ [T, B]) -> (grads [P], metrics [F]) (`store.behaviour_gradient`).
    log_prob: Callable[[jax.Array, Transition], jax.Array] | None = None
    learner_gradient: Callable[..., tuple[jax.Array, jax.Array]] | None = None


def make_parts(config: Config) -> HostParts:
    """Builds and compiles the jitted pieces of host runs of `config` (`HostParts`), ahead, for
    the shapes of one rollout, so no step recompiles; once per `config` (the vector
    environment's mode aside: the programs are the same)."""
    if not config.host_env:
        raise ConfigError(
            f"env_name={config.env_name!r} is not a host environment ('gymnasium:<id>')"
        )
    return _make_parts(config.replace(vector_env="sync"))


@functools.lru_cache(maxsize=16)
def _make_parts(config: Config) -> HostParts:
    spec = envs.make_env(config.env_name)
    networks = make_networks(config, spec)
    optimizer = make_optimizer(config)
    shapes = jax.eval_shape(networks.init, jax.random.PRNGKey(0))
    one_obs = jax.ShapeDtypeStruct((1, *spec.obs_shape), jnp.float32)
    policy = jax.eval_shape(networks.policy, shapes, one_obs)
    next_noise = functools.partial(split_noise, policy, config.num_envs, config.n_steps)
    _, unravel = unraveler(shapes)
    loss_fn = actor_critic.nstep_loss_fn(config, networks)
    act = host_rollout.make_step_act(spec, networks)

    init, gradient, apply, learn = _learner_fns(config, spec, networks, optimizer, unravel, loss_fn)
    key = jax.random.PRNGKey(0)
    state, _, _ = jax.eval_shape(init, key)
    _, noise = jax.eval_shape(next_noise, key)
    step = jax.ShapeDtypeStruct((), jnp.int32)
    obs = jax.ShapeDtypeStruct((config.num_envs, *spec.obs_shape), jnp.float32)
    traj = traj_shapes(spec, config.n_steps, config.num_envs)
    a3c = config.asynchronous
    programs = {
        "layers": (unravel, state.params),
        "init": (init, key),
        "next_noise": (next_noise, key),
        "act": (act, shapes, obs, noise, step),
        **(
            {"gradient": (gradient, state.params, traj), "apply": (apply, state, state.params)}
            if a3c
            else {"learn": (learn, state, traj)}
        ),
    }

    compiled = compile_side_by_side(programs, config)
    rest = {field: compiled.get(field) for field in HostParts._fields[3:-2]}
    return HostParts(
        spec,
        unravel,
        optimizer,
        **rest,
        **_data_pieces(spec, networks, unravel, loss_fn),
    )


def _learner_fns(
    config: Config,
    spec: envs.EnvSpec,
    networks: Any,
    optimizer: Optimizer,
    unravel: Callable,
    loss_fn: Callable,
) -> tuple[Callable, Callable, Callable, Callable]:
    """`init`, `gradient`, `apply` and `learn` of `HostParts`, before they are compiled."""
    num_workers = config.num_workers if config.asynchronous else 1

    def init(key: PRNGKey) -> tuple[TrainState, tuple[PRNGKey, ...], tuple[PRNGKey, ...]]:
        keys = init_keys(key)
        state = init_train_state(optimizer, flatten(networks.init(keys.params)))
        env_keys, loop_keys = zip(*(worker_keys(keys, w) for w in range(num_workers)), strict=True)
        return state, env_keys, loop_keys

    def gradient(flat_params: jax.Array, traj: Transition) -> tuple[jax.Array, jax.Array]:
        params = unravel(flat_params)
        next_values = actor_critic.bootstrap_values(spec, networks, params, traj)
        return worker_gradient(loss_fn, params, traj, next_values)

    def apply(train_state: TrainState, grads: jax.Array) -> TrainState:
        return apply_gradients(optimizer, train_state, grads, config.batch_size)

    def learn(
        train_state: TrainState, traj: Transition
    ) -> tuple[TrainState, Params, jax.Array, jax.Array]:
        grads, metrics = gradient(train_state.params, traj)
        train_state = apply(train_state, grads)
        bad = divergence(UpdateMetrics(*metrics), train_state.params)
        return train_state, unravel(train_state.params), metrics, bad

    return init, gradient, apply, learn


def _data_pieces(
    spec: envs.EnvSpec, networks: Any, unravel: Callable, loss_fn: Callable
) -> dict[str, Callable]:
    """The pieces of data parallelism (`ray_backend`): the behaviour policy's log-probabilities
    of a trajectory, and the learner's V-trace-corrected gradient of it."""

    def log_prob(flat_params: jax.Array, traj: Transition) -> jax.Array:
        pi, _, _ = actor_critic.replay_policy(networks, unravel(flat_params), traj, None)
        return pi.log_prob(traj.action)

    def learner_gradient(
        flat_params: jax.Array, traj: Transition, behaviour_log_prob: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        params = unravel(flat_params)
        next_values = actor_critic.bootstrap_values(spec, networks, params, traj)
        return behaviour_gradient(loss_fn, params, traj, next_values, behaviour_log_prob)

    return {"log_prob": jax.jit(log_prob), "learner_gradient": jax.jit(learner_gradient)}


def initial_state(config: Config, key: PRNGKey) -> TrainState:
    """The initial store state `[P]` of a host run of `config` from its key."""
    return make_parts(config).init(key)[0]


def train_host(
    config: Config,
    key: PRNGKey,
    *,
    callback: Callable[[UpdateRecord], bool | None] | None = None,
    store: ParameterStore | None = None,
) -> AsyncResult:
    """Trains `config`, a synchronous n-step algorithm (`a2c`, `nstep_da2c`, `online_ac`), on its
    host environment (`env_name="gymnasium:<id>"`): one learner over a Gymnasium vector
    environment of `num_envs` environments (`vector_env="sync"`: stepped in this thread;
    `"async"`: one process each), one gradient step per rollout of `n_steps`, until
    `config.num_updates` updates are done.

    Keys as the synchronous trainer's (`init_keys`): the parameters from its `params` key, the
    environments seeded from its `env` key, each update's action keys split off its `loop` key,
    so one A3C worker replays this with one environment.

    `callback(record)` runs after each update (as in `a3c.train_async`); returning True stops the
    run there. `store`: the parameter store to train (a resumed run's, or one the caller
    watches from `callback`: `a3c_jax.runs.worker_runs`); default: a new one from `key`. The
    synchronous learner keeps its parameters in a store too, so both kinds of host run share
    one checkpoint format.

    Returns an `AsyncResult` (the same type as `a3c.train_async`; here every update is worker 0's,
    with staleness 0). Ctrl-C stops the run and returns what was trained with
    `interrupted=True`; an update whose loss, gradient or parameters are not finite is not
    applied and raises `DivergenceError`. Environment state (Gymnasium's own) is never saved: a
    new run starts from fresh resets.
    """
    check_host_config(config)
    start = time.perf_counter()
    parts = make_parts(config)
    state, env_keys, loop_keys = parts.init(key)
    if store is None:
        store = ParameterStore(state, None, config.num_updates, config.batch_size)
    compile_seconds = time.perf_counter() - start
    host_envs = host_rollout.HostEnvs(parts.spec, config.num_envs, config.vector_env)
    try:
        wall_seconds, cpu_seconds, interrupted = _learner_loop(
            parts, host_envs, (env_keys[0], loop_keys[0]), store, callback
        )
    finally:
        host_envs.close()
    timings = wall_seconds, cpu_seconds, compile_seconds
    return async_result(
        store, parts.unravel, parts.optimizer, config.batch_size, timings, interrupted
    )


def _learner_loop(
    parts: HostParts,
    host_envs: host_rollout.HostEnvs,
    keys: tuple[PRNGKey, PRNGKey],
    store: ParameterStore,
    callback: Callable[[UpdateRecord], bool | None] | None,
) -> tuple[float, float, bool]:
    """Rollouts and gradient steps on `store` until its budget is spent (or the callback or
    Ctrl-C stops them); returns the loop's wall and CPU seconds (resets excluded) and whether
    Ctrl-C stopped it. `keys`: the environments' key and the update stream's. A non-finite update
    raises `DivergenceError` (not applied)."""
    interrupted = False
    cpu_start = time.process_time()
    store.start_clock()
    try:
        env_key, loop_key = keys
        carry = host_rollout.reset(host_envs, env_key)
        loop_key, noise = parts.next_noise(loop_key)
        params = parts.layers(store.state.params)  # the one learner's: always the store's
        cpu_start = time.process_time()
        store.start_clock()  # the loop alone
        while (checkout := store.checkout()) is not None:
            _, version = checkout
            carry, traj = host_rollout.rollout(host_envs, parts.act, params, carry, noise)
            loop_key, noise = parts.next_noise(loop_key)
            state, params, metrics, bad = parts.learn(store.state, traj)
            if int(bad):
                store.stop()
                _raise_diverged(int(store.state.update_step), int(bad))
            record = store.commit(state, 0, version, metrics)
            if record is not None and callback is not None and callback(record):
                store.stop()  # the callback asked to stop
    except KeyboardInterrupt:
        interrupted = True
    return store.elapsed(), time.process_time() - cpu_start, interrupted


def _raise_diverged(update: int, code: int) -> None:
    names = diverged_quantities(code)
    raise DivergenceError(
        f"training diverged: update {update + 1} produced a non-finite {' and '.join(names)} "
        f"and was not applied. Lower lr, keep max_grad_norm finite, or check reward_scale.",
        update + 1,
        names,
        (0,),
    )


class HostWorker:
    """One A3C worker's carry: its own environments, their episode state, its key stream and the
    action noise of its next rollout."""

    def __init__(
        self,
        host_envs: host_rollout.HostEnvs,
        carry: host_rollout.HostCarry,
        keys: tuple[PRNGKey, jax.Array],
    ):
        self.host_envs = host_envs
        self.carry = carry
        self.key, self.noise = keys


def make_async_parts(config: Config) -> AsyncParts:
    """`train_async`'s parts over host environments (`store.AsyncParts`): each worker's
    carry is a `HostWorker` whose `num_envs` environments `init` creates and resets (worker `i`
    seeded from `worker_keys(keys, i)`), and `close` closes. `worker_step` plays `n_steps` in
    them (`host_rollout.rollout`, acting on the worker's copy of the parameters) and returns the
    gradient of `nstep_loss` (`store.worker_gradient`); the GIL is released while the
    jitted pieces run and while C-backed environments (ale-py) step."""
    parts = make_parts(config)
    lock = threading.Lock()

    def init(key: PRNGKey) -> tuple[TrainState, list[HostWorker]]:
        state, env_keys, loop_keys = parts.init(key)
        workers = []
        try:
            for env_key, loop_key in zip(env_keys, loop_keys, strict=True):
                host_envs = host_rollout.HostEnvs(parts.spec, config.num_envs, "sync")
                carry = host_rollout.reset(host_envs, env_key)
                workers.append(HostWorker(host_envs, carry, parts.next_noise(loop_key)))
        except BaseException:
            close(workers)
            raise
        return state, workers

    def worker_step(
        flat_params: jax.Array, worker: HostWorker
    ) -> tuple[HostWorker, jax.Array, jax.Array]:
        worker.carry, traj = host_rollout.rollout(
            worker.host_envs,
            parts.act,
            parts.layers(flat_params),
            worker.carry,
            worker.noise,
        )
        worker.key, worker.noise = parts.next_noise(worker.key)
        grads, metrics = parts.gradient(flat_params, traj)
        return worker, grads, metrics

    def close(workers: list[HostWorker]) -> None:
        with lock:
            for worker in workers:
                worker.host_envs.close()

    return AsyncParts(
        init,
        worker_step,
        parts.apply,
        parts.unravel,
        parts.optimizer,
        close,
        *_ray_worker_pieces(config, parts),
        parts.learner_gradient,
    )


def _ray_worker_pieces(config: Config, parts: HostParts) -> tuple[Callable, Callable]:
    """`init_worker` and `collect` of `AsyncParts`: what a Ray worker of a host run calls."""

    def init_worker(key: PRNGKey, worker: int) -> HostWorker:
        _, env_keys, loop_keys = parts.init(key)
        host_envs = host_rollout.HostEnvs(parts.spec, config.num_envs, "sync")
        carry = host_rollout.reset(host_envs, env_keys[worker])
        return HostWorker(host_envs, carry, parts.next_noise(loop_keys[worker]))

    def collect(
        flat_params: jax.Array, worker: HostWorker
    ) -> tuple[HostWorker, Transition, jax.Array]:
        worker.carry, traj = host_rollout.rollout(
            worker.host_envs, parts.act, parts.layers(flat_params), worker.carry, worker.noise
        )
        worker.key, worker.noise = parts.next_noise(worker.key)
        return worker, traj, parts.log_prob(flat_params, traj)

    return init_worker, collect
