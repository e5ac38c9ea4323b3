"""`make_train(config) -> train(key)`: the whole run as one jittable, vmappable function."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from a3c_jax import envs, parallel, wrappers
from a3c_jax.algorithms import ALGORITHM_BUILDERS
from a3c_jax.config import Config, ConfigError
from a3c_jax.networks import make_networks
from a3c_jax.optim import flatten, init_train_state, make_optimizer
from a3c_jax.presets import ASYNCHRONOUS_ALGORITHMS
from a3c_jax.types import (
    DIVERGED_GRADIENT,
    DIVERGED_LOSS,
    DIVERGED_PARAMS,
    Params,
    PRNGKey,
    RunnerState,
    TrainResult,
    Transition,
    UpdateMetrics,
    UpdateOutput,
)


class Trainer(NamedTuple):
    """The training loop in pieces, for callers that run it in chunks (progress, checkpoints).

    `init(key) -> RunnerState`; `run(runner_state, num_updates, until=None) -> (runner_state,
    metrics)` with metrics `[num_updates]` (num_updates static): it stops early once the budget
    is spent, `until` updates are done in all (a traced int, per seed under `vmap`) or the run
    diverged, so chunks of any size can be chained (see `_run_while`); `train(key) ->
    TrainResult` is the whole run.
    """

    init: Callable[[PRNGKey], RunnerState]
    run: Callable[..., tuple[RunnerState, UpdateMetrics]]
    train: Callable[[PRNGKey], TrainResult]


def episode_stats(
    traj: Transition,
    valid: jax.Array,
    last_return: jax.Array,
    last_length: jax.Array,
    axis_name: str | None = None,
) -> tuple[jax.Array, ...]:
    """Mean, lowest and highest return and mean length of the episodes that ended in `traj`
    `[T, B]` (real steps only), and their count; `last_return` (and `last_length`) `[]` where none
    ended. With `axis_name`, over the episodes of every device."""
    ended = traj.done & valid
    done = ended.astype(jnp.float32)
    sums = (
        jnp.sum(done),
        jnp.sum(traj.episode_return * done),
        jnp.sum(traj.episode_length.astype(jnp.float32) * done),
    )
    lowest = jnp.min(jnp.where(ended, traj.episode_return, jnp.inf))
    highest = jnp.max(jnp.where(ended, traj.episode_return, -jnp.inf))
    if axis_name is not None:
        sums = jax.lax.psum(sums, axis_name)
        lowest = jax.lax.pmin(lowest, axis_name)
        highest = jax.lax.pmax(highest, axis_name)
    count, total_return, total_length = sums
    denominator = jnp.maximum(count, 1.0)
    mean_return = total_return / denominator
    mean_length = total_length / denominator
    any_done = count > 0
    return (
        jnp.where(any_done, mean_return, last_return),
        jnp.where(any_done, lowest, last_return),
        jnp.where(any_done, highest, last_return),
        jnp.where(any_done, mean_length, last_length),
        count,
    )


def update_metrics(
    env_steps: jax.Array,
    out: UpdateOutput,
    last_return: jax.Array,
    last_length: jax.Array,
    axis_name: str | None = None,
) -> UpdateMetrics:
    """The `UpdateMetrics` of one update that reported `out`, after `env_steps` steps in all;
    episode figures fall back to `last_return` and `last_length` where no episode ended."""
    mean_return, lowest, highest, mean_length, count = episode_stats(
        out.transitions, out.valid, last_return, last_length, axis_name
    )
    loss_metrics = out.loss_metrics
    return UpdateMetrics(
        env_steps=env_steps,
        episode_return=mean_return,
        episode_return_min=lowest,
        episode_return_max=highest,
        episode_length=mean_length,
        episodes=count,
        total_loss=loss_metrics["total_loss"],
        actor_loss=loss_metrics["actor_loss"],
        critic_loss=loss_metrics["critic_loss"],
        entropy=loss_metrics["entropy"],
        grad_norm=loss_metrics["grad_norm"],
        learning_rate=loss_metrics["learning_rate"],
    )


class InitKeys(NamedTuple):
    """The keys a run's start is drawn from: one split of the run's key."""

    loop: PRNGKey  # the key stream of the updates: each update splits one key off it
    params: PRNGKey
    env: PRNGKey
    algo: PRNGKey


def init_keys(key: PRNGKey) -> InitKeys:
    """Splits a run's `key` into the keys of its parameters, environments, algorithm state and
    update stream (`make_trainer` and `train_async` alike: one A3C worker replays `a2c`)."""
    return InitKeys(*jax.random.split(key, 4))


def divergence(metrics: UpdateMetrics, params: Params) -> jax.Array:
    """`[]` int32: 0 if the update's losses, gradient norm and new parameters are all finite,
    else the bits (`DIVERGED_LOSS`, `DIVERGED_GRADIENT`, `DIVERGED_PARAMS`) of those that are
    not. One fused pass over the parameters; no host round trip."""
    losses = jnp.stack([metrics.total_loss, metrics.actor_loss, metrics.critic_loss])
    params_ok = jnp.all(jnp.isfinite(flatten(params)))
    return (
        jnp.where(jnp.all(jnp.isfinite(losses)), 0, DIVERGED_LOSS)
        | jnp.where(jnp.isfinite(metrics.grad_norm), 0, DIVERGED_GRADIENT)
        | jnp.where(params_ok, 0, DIVERGED_PARAMS)
    ).astype(jnp.int32)


def guarded(
    update_step: Callable[[RunnerState], tuple[RunnerState, UpdateMetrics]],
) -> Callable[[RunnerState], tuple[RunnerState, UpdateMetrics]]:
    """The divergence guard around one update: counts the update in `updates` if its losses,
    gradient norm and new parameters are all finite; else records in `diverged` which were not
    (the loops below then skip every later update).

    The bad update's result is kept (a rollback would cost a select over the whole state every
    update: +10% run time on the default CartPole config here); `runs.train_run` recovers the
    last good state by replaying the chunk up to it (`Trainer.run(..., until=...)`)."""

    def step(runner: RunnerState) -> tuple[RunnerState, UpdateMetrics]:
        new, metrics = update_step(runner)
        bad = divergence(metrics, new.train_state.params)
        return new._replace(updates=runner.updates + (bad == 0), diverged=bad), metrics

    return step


def _run_while(
    update_step: Callable[[RunnerState], tuple[RunnerState, UpdateMetrics]],
    runner: RunnerState,
    max_updates: int,
    keep_going: Callable[[RunnerState], jax.Array],
) -> tuple[RunnerState, UpdateMetrics]:
    """Up to `max_updates` updates while `keep_going(runner)` (budget left, not diverged): a
    `lax.while_loop` (under `vmap`, it runs until every seed stops) writing each update's metrics
    into `[max_updates]` rows. Rows after the last update repeat it, with `episodes = 0`, so
    curves against `env_steps` stay flat there. Chunks of any size can therefore be chained
    without overrunning the budget, and an update past the end costs nothing."""
    _, template = jax.eval_shape(update_step, runner)
    rows = jax.tree.map(lambda x: jnp.zeros((max_updates, *x.shape), x.dtype), template)

    def cond(state: tuple[jax.Array, RunnerState, UpdateMetrics]) -> jax.Array:
        i, runner, _ = state
        return (i < max_updates) & keep_going(runner)

    def body(state: tuple[jax.Array, RunnerState, UpdateMetrics]):
        i, runner, rows = state
        runner, metrics = update_step(runner)
        rows = jax.tree.map(lambda r, m: r.at[i].set(m), rows, metrics)
        return i + 1, runner, rows

    count, runner, rows = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), runner, rows))
    index = jnp.arange(max_updates)
    rows = jax.tree.map(lambda r: r[jnp.clip(jnp.minimum(index, count - 1), 0)], rows)
    rows = rows._replace(episodes=jnp.where(index < count, rows.episodes, 0.0))
    return runner, rows


def make_trainer(config: Config) -> Trainer:
    """Builds the pieces of the training loop for `config` (validated before anything traces).

    With `config.num_devices` > 1 the same loop runs on every device with its share of the
    environments, mapped over the devices by `parallel.spread` (gradient parallelism); the
    device count is checked here, before anything compiles.
    """
    if config.algo in ASYNCHRONOUS_ALGORITHMS:
        raise ConfigError(
            f"algo={config.algo!r} is asynchronous: its workers are threads that apply gradients "
            "to shared parameters whenever they are ready, which no pure jitted train(key) can "
            "express; train it with a3c_jax.train_async(config, key) (algo='a2c' is its "
            "synchronous counterpart for make_train)"
        )
    count = parallel.num_devices(config)
    if count == 1:
        return _make_device_trainer(config, config, None)
    local = parallel.device_config(config, count)
    return parallel.spread(_make_device_trainer(config, local, parallel.AXIS), config, count)


def _make_device_trainer(config: Config, local: Config, axis_name: str | None) -> Trainer:
    """The loop of one device, which runs `local`'s share of `config`'s environments and
    averages its gradients over the devices of `axis_name` (None: the only device)."""
    spec = wrappers.make_env(config, axis_name)
    networks = make_networks(local, spec)
    optimizer = make_optimizer(local, axis_name)
    algorithm = ALGORITHM_BUILDERS[config.algo](local, spec, networks, optimizer)

    def init(key: PRNGKey) -> RunnerState:
        keys = init_keys(key)
        params = networks.init(keys.params)
        train_state = init_train_state(optimizer, params)
        first_env = parallel.device_index(axis_name) * local.num_envs
        env = envs.reset(spec, keys.env, local.num_envs, first_env)
        algo_state = algorithm.init(params, keys.algo)
        nan = jnp.full((), jnp.nan, jnp.float32)
        zero = jnp.zeros((), jnp.int32)
        return RunnerState(train_state, env, algo_state, keys.loop, nan, nan, zero, zero)

    def update_step(runner: RunnerState) -> tuple[RunnerState, UpdateMetrics]:
        key, update_key = jax.random.split(runner.key)
        train_state, env, algo_state, out = algorithm.update(
            runner.train_state, runner.env, runner.algo_state, update_key
        )
        metrics = update_metrics(
            train_state.env_steps,
            out,
            runner.last_episode_return,
            runner.last_episode_length,
            axis_name,
        )
        runner = runner._replace(
            train_state=train_state,
            env=env,
            algo_state=algo_state,
            key=key,
            last_episode_return=metrics.episode_return,
            last_episode_length=metrics.episode_length,
        )
        return runner, metrics

    def run(
        runner: RunnerState, num_updates: int, until: jax.Array | int | None = None
    ) -> tuple[RunnerState, UpdateMetrics]:
        # Fixed-size updates stop after `num_updates` in all; episodic ones once the
        # environment-step budget is spent.
        budget = config.num_updates if algorithm.fixed_batch else jnp.iinfo(jnp.int32).max
        until = budget if until is None else jnp.minimum(until, budget)

        def keep_going(runner: RunnerState) -> jax.Array:
            going = (runner.updates < until) & (runner.diverged == 0)
            if not algorithm.fixed_batch:
                going &= runner.train_state.env_steps < config.total_timesteps
            return going

        return _run_while(guarded(update_step), runner, num_updates, keep_going)

    def train(key: PRNGKey) -> TrainResult:
        runner, metrics = run(init(key), config.num_updates)
        return TrainResult(
            params=wrappers.export_params(runner.train_state.params, runner.env.wrapper_state),
            opt_state=runner.train_state.opt_state,
            metrics=metrics,
            runner_state=runner,
        )

    return Trainer(init, run, train)


def make_train(config: Config) -> Callable[[PRNGKey], TrainResult]:
    """The pure training function `train(key) -> TrainResult` for `config`.

    The whole run (`config.num_updates` updates) is one `lax.while_loop`: jit it, and `vmap` it
    over keys to train many seeds at once.
    """
    return make_trainer(config).train


# XLA's CPU backend spends most of a short run compiling. Backend optimisation level 1 cut the
# compile of the default training loop from 4.0 s to 3.3 s here, at equal run time.
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
# Short runs also use XLA's older loop emitter instead of its MLIR fusion emitters: measured on
# this project's 2-core CPU, the default CartPole-v1 loop then compiled in 1.1-1.6 s instead of
# 1.8-2.9 s, while its kernels ran 0-25% slower up to 512 environments and 40% slower at 2,048.
# Compile is then the larger cost up to about a million environment steps.
SHORT_RUN_STEPS = 1_000_000
SHORT_RUN_COMPILER_OPTIONS = {**CPU_COMPILER_OPTIONS, "xla_cpu_use_fusion_emitters": False}


def compiler_options(config: Config | None = None, num_seeds: int = 1) -> dict | None:
    """The options every a3c_jax `jax.jit` compiles with. On accelerators, XLA's defaults. On the
    CPU, `CPU_COMPILER_OPTIONS`, or `SHORT_RUN_COMPILER_OPTIONS` (faster to compile, a little
    slower to run) for a run of `config` over `num_seeds` seeds that plays at most
    `SHORT_RUN_STEPS` environment steps in all."""
    if jax.default_backend() != "cpu":
        return None
    if config is not None and config.total_timesteps * num_seeds <= SHORT_RUN_STEPS:
        return SHORT_RUN_COMPILER_OPTIONS
    return CPU_COMPILER_OPTIONS


def jit_train(config: Config, num_seeds: int | None = None) -> Callable[[PRNGKey], TrainResult]:
    """`jax.jit(make_train(config))`, vmapped over `num_seeds` keys `[num_seeds, 2]` if given,
    compiled with `compiler_options(config, num_seeds)`. Over several devices the seeds go
    inside: each device trains every seed on its environments."""
    train = make_train(config)
    if num_seeds is not None:
        train = jax.vmap(train)
    return jax.jit(train, compiler_options=compiler_options(config, num_seeds or 1))


class DivergenceError(RuntimeError):
    """Training stopped because an update produced a non-finite loss, gradient or parameter.

    `update` is the 1-based index of that update, `quantities` names what was not finite,
    `seeds` lists the seed indices affected (`(0,)` for an unbatched run), `checkpoint` the file
    holding the last good state (after update `update - 1`), if one was written."""

    def __init__(
        self,
        message: str,
        update: int,
        quantities: tuple[str, ...],
        seeds: tuple[int, ...],
        checkpoint: str | None = None,
    ):
        super().__init__(message)
        self.update, self.quantities, self.seeds, self.checkpoint = (
            update,
            quantities,
            seeds,
            checkpoint,
        )


_QUANTITIES = (
    (DIVERGED_LOSS, "loss"),
    (DIVERGED_GRADIENT, "gradient norm"),
    (DIVERGED_PARAMS, "parameters"),
)


def check_finite(
    state: RunnerState | TrainResult, checkpoint: str | None = None, num_seeds: int | None = None
) -> None:
    """Raises `DivergenceError` if the divergence guard stopped training in `state` (a
    `RunnerState` or `TrainResult`, one seed or vmapped over seeds); else returns None.

    The message names the first bad update, the non-finite quantities and the seeds. Give
    `num_seeds` where the flags also carry a device axis (`parallel_backend="pmap"`)."""
    runner = state.runner_state if isinstance(state, TrainResult) else state
    codes, updates = (
        np.asarray(x).reshape(num_seeds or -1, -1)[:, 0] if num_seeds else np.atleast_1d(x)
        for x in jax.device_get((runner.diverged, runner.updates))
    )
    bad = np.flatnonzero(codes)
    if bad.size == 0:
        return
    first = int(bad[np.argmin(updates[bad])])
    update = int(updates[first]) + 1
    names = tuple(name for bit, name in _QUANTITIES if codes[first] & bit)
    seeds = tuple(int(i) for i in bad)
    where = f"seed {', '.join(map(str, seeds))}: " if codes.shape[0] > 1 else ""
    message = (
        f"training diverged: {where}update {update} produced a non-finite "
        f"{' and '.join(names)}; later updates were skipped"
    )
    if checkpoint:
        message += f"; the last good state (update {update - 1}) is saved in {checkpoint}"
    message += ". Lower lr, keep max_grad_norm finite, or check reward_scale."
    raise DivergenceError(message, update, names, seeds, checkpoint)


def enable_compilation_cache(path: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache (default `~/.cache/a3c_jax/xla`, or
    `$A3C_JAX_CACHE_DIR`): a repeated start then loads the compiled loop instead of compiling it."""
    path = (
        path
        or os.environ.get("A3C_JAX_CACHE_DIR")
        or os.path.join(os.path.expanduser("~"), ".cache", "a3c_jax", "xla")
    )
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
