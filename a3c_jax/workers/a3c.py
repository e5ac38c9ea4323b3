"""Asynchronous advantage actor-critic (A3C; Mnih et al., 2016): actor-learner threads around one
shared parameter store.

`train_async(config, key)` starts `config.num_workers` Python threads. Each worker repeats:

1. copy the shared parameters with their version `v` (the number of gradients applied so far);
2. play `n_steps` (the paper's `t_max`) in its own `num_envs` environments with that copy, with its
   own key stream, and compute the n-step advantage actor-critic gradient with the parts of the
   synchronous `a2c` update: `actor_critic.nstep_collect`, `actor_critic.nstep_loss` and
   `optim.compute_gradients`;
3. hand the gradient to the store, which applies it with `optim.apply_gradients` (one optimiser for
   all workers, so RMSprop's statistics are shared, as in the paper) and records its staleness: the
   number of other workers' gradients applied since step 1.

Host environments (`env_name="gymnasium:<id>"`) plug in through `make_async_parts`: each
worker's carry is then its own Gymnasium environments (`a3c_jax.workers.host.make_async_parts`),
stepped between calls of a jitted policy step, and its gradient is the same `worker_gradient`.

The jitted computations run with Python's GIL released, so workers play and differentiate at the
same time; the store's lock is held only to enqueue the (asynchronously dispatched) optimiser step,
so no update is ever torn and no worker waits for another's rollout. Parameters, gradients and
the optimiser state travel as one flat vector (`jax.flatten_util.ravel_pytree`): a jitted call then
takes one array instead of one per layer, and on the CPU that dispatch overhead is a large part of a
small update (measured on this project's shared 2-core CPU: the optimiser step on the 12 arrays
of the default networks took 120-275 µs a call, on one flat vector 22-48 µs).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax

from a3c_jax import envs
from a3c_jax.algorithms import actor_critic, build
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.algorithms.optim import (
    apply_gradients,
    flatten,
    init_train_state,
    make_optimizer,
    unraveler,
)
from a3c_jax.algorithms.rollout import with_initial_state
from a3c_jax.config import Config, ConfigError, registry
from a3c_jax.core.types import (
    EnvCarry,
    PRNGKey,
    TrainState,
    Transition,
)
from a3c_jax.training.loop import init_keys
from a3c_jax.training.xla import compile_ahead
from a3c_jax.workers.store import (
    AsyncParts,
    AsyncResult,
    Carry,
    ParameterStore,
    UpdateRecord,
    behaviour_gradient,
    run_workers,
    worker_gradient,
    worker_keys,
)


def make_async_parts(config: Config) -> AsyncParts:
    """The parts of `train_async` for `config`: over gymnax (`make_gymnax_async_parts`) or over
    host environments (`a3c_jax.host.make_async_parts`, for `"gymnasium:<id>"` names)."""
    if config.host_env:
        from a3c_jax.workers import host as host_train

        return host_train.make_async_parts(config)
    return make_gymnax_async_parts(config)


@functools.lru_cache(maxsize=16)
def make_gymnax_async_parts(config: Config) -> AsyncParts:
    """Builds and compiles (before any thread starts; once per `config`) the functions of
    `train_async`:

    - `init(key) -> (TrainState over [P], [carry of each worker])`;
    - `worker_step(params [P], carry) -> (carry, grads [P], metrics [F])`: one rollout of
      `n_steps` in the worker's `num_envs` environments and its n-step actor-critic gradient (a
      recurrent policy's hidden state is part of the carry: each worker keeps its own across its
      rollouts, and the loss re-runs the rollout from the state at its start), with
      the `UpdateMetrics` fields stacked into `[F]` (`env_steps` and `learning_rate` are the
      store's to fill);
    - `apply(train_state, grads [P]) -> train_state`: `optim.apply_gradients`.
    """
    spec = build.env_spec(config)  # the observation transforms (mask_velocity, frame_stack)
    networks = make_networks(config, spec)
    optimizer = make_optimizer(config)
    loss_fn = actor_critic.nstep_loss_fn(config, networks)
    shapes = jax.eval_shape(networks.init, jax.random.PRNGKey(0))
    _, unravel = unraveler(shapes)

    def reset(key: PRNGKey) -> EnvCarry:
        return with_initial_state(networks, envs.reset(spec, key, config.num_envs))

    carry_shapes = jax.eval_shape(lambda key: (reset(key), key), jax.random.PRNGKey(0))
    carry_def = jax.tree.structure(carry_shapes)

    def init(key: PRNGKey) -> tuple[TrainState, list[Carry]]:
        keys = init_keys(key)
        flat_params = flatten(networks.init(keys.params))
        carries = []
        for worker in range(config.num_workers):
            env_key, loop_key = worker_keys(keys, worker)
            env = reset(env_key)
            carries.append(tuple(jax.tree.leaves((env, loop_key))))
        return init_train_state(optimizer, flat_params), carries

    def worker_step(flat_params: jax.Array, carry: Carry) -> tuple[Carry, jax.Array, jax.Array]:
        env, key = jax.tree.unflatten(carry_def, carry)
        key, update_key = jax.random.split(key)
        params = unravel(flat_params)
        start_state = env.core_state
        env, traj, next_values = actor_critic.nstep_collect(
            spec, networks, config, params, env, update_key
        )
        grads, stacked = worker_gradient(loss_fn, params, traj, next_values, start_state)
        return tuple(jax.tree.leaves((env, key))), grads, stacked

    def apply(train_state: TrainState, grads: jax.Array) -> TrainState:
        return apply_gradients(optimizer, train_state, grads, config.batch_size)

    key = jax.random.PRNGKey(0)
    state_shapes, carries_shapes = jax.eval_shape(init, key)
    return AsyncParts(
        compile_ahead(init, key, config=config),
        compile_ahead(worker_step, state_shapes.params, carries_shapes[0], config=config),
        compile_ahead(apply, state_shapes, state_shapes.params, config=config),
        unravel,
        optimizer,
        **_ray_pieces(config, spec, networks, loss_fn, unravel, reset, carry_def),
    )


def _ray_pieces(
    config: Config,
    spec: envs.EnvSpec,
    networks: Any,
    loss_fn: Callable,
    unravel: Callable,
    reset: Callable[[PRNGKey], EnvCarry],
    carry_def: Any,
) -> dict[str, Callable]:
    """The pieces of `AsyncParts` that only Ray's workers and learner call (`ray_backend`),
    jitted and compiled where (and if) they are first called: a worker's process, the learner
    for data parallelism."""

    def init_worker(key: PRNGKey, worker: int) -> Carry:
        env_key, loop_key = worker_keys(init_keys(key), worker)
        return tuple(jax.tree.leaves((reset(env_key), loop_key)))

    def collect(flat_params: jax.Array, carry: Carry) -> tuple[Carry, Transition, jax.Array]:
        env, key = jax.tree.unflatten(carry_def, carry)
        key, update_key = jax.random.split(key)  # as worker_step: the same rollout
        params = unravel(flat_params)
        env, traj, _ = actor_critic.nstep_collect(spec, networks, config, params, env, update_key)
        pi, _, _ = actor_critic.replay_policy(networks, params, traj, None)  # feed-forward
        return tuple(jax.tree.leaves((env, key))), traj, pi.log_prob(traj.action)

    def learner_gradient(
        flat_params: jax.Array, traj: Transition, behaviour_log_prob: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        params = unravel(flat_params)
        next_values = actor_critic.bootstrap_values(spec, networks, params, traj)
        return behaviour_gradient(loss_fn, params, traj, next_values, behaviour_log_prob)

    return {
        "init_worker": jax.jit(init_worker, static_argnums=1),
        "collect": jax.jit(collect),
        "learner_gradient": jax.jit(learner_gradient),
    }


def initial_state(config: Config, key: PRNGKey) -> TrainState:
    """The store's state `[P]` that an asynchronous run of `config` from `key` starts from
    (without making any worker's environments)."""
    if config.host_env:
        from a3c_jax.workers import host as host_train

        return host_train.initial_state(config, key)
    return make_async_parts(config).init(key)[0]


def train_async(
    config: Config,
    key: PRNGKey,
    *,
    callback: Callable[[UpdateRecord], bool | None] | None = None,
    store: ParameterStore | None = None,
) -> AsyncResult:
    """Trains `config` (`algo="a3c"`) with `config.num_workers` asynchronous actor-learner threads
    until `config.num_updates` gradients (`total_timesteps` environment steps over all workers)
    have been applied to the shared parameters.

    With one worker the run is the synchronous trainer's: `train_async(c, key).params` equals
    `make_train(c.replace(algo="a2c"))(key).params` (same keys, same data, same updates).

    Args:
      config: a validated `Config` of an asynchronous algorithm.
      key: the run's key; the parameters and every worker's environments and key stream derive
        from it (`init_keys`, `worker_keys`).
      callback: called in the worker's thread after each applied gradient with its
        `UpdateRecord` (for progress or logging); returning True stops every worker after
        their current update (the result then holds the updates applied so far, with
        `interrupted=False`); an exception it raises stops the run like any worker's.
      store: the shared store to train, over `make_async_parts(config).apply` (a resumed
        run's state, or one the caller watches from `callback`: `a3c_jax.runs.worker_runs`);
        default: a new one over the initial parameters from `key`.

    Returns an `AsyncResult`. A worker's exception stops every worker and is raised here, with its
    traceback; Ctrl-C (`KeyboardInterrupt`) stops every worker and returns what was trained so far
    with `interrupted=True`.
    """
    if config.trainer != "threads":
        raise ConfigError(
            f"train_async trains the asynchronous algorithms {registry.names(asynchronous=True)}; "
            f"algo={config.algo!r} is synchronous: train it with make_train(config)"
        )
    start = time.perf_counter()
    parts = make_async_parts(config)
    compile_seconds = time.perf_counter() - start  # 0 where this config was compiled before
    return run_workers(config, parts, key, compile_seconds, callback, store)
