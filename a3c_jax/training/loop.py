"""`make_train(config) -> train(key)`: the whole run as one jittable, vmappable function."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from a3c_jax import envs
from a3c_jax.algorithms import build
from a3c_jax.algorithms.networks import Networks, make_networks
from a3c_jax.algorithms.optim import Optimizer, flatten, init_train_state, make_optimizer
from a3c_jax.algorithms.rollout import with_initial_state
from a3c_jax.config import Config, ConfigError, registry
from a3c_jax.core.types import (
    DIVERGED_GRADIENT,
    DIVERGED_LOSS,
    DIVERGED_PARAMS,
    Algorithm,
    Params,
    PRNGKey,
    RunnerState,
    Trainer,
    TrainResult,
    Transition,
    UpdateMetrics,
    UpdateOutput,
)
from a3c_jax.envs import wrappers
from a3c_jax.training import parallel
from a3c_jax.training.divergence import DivergenceError, check_finite  # noqa: F401 (their old home)
from a3c_jax.training.xla import (  # noqa: F401 (compiler_options is used; the rest: their old home)
    CPU_COMPILER_OPTIONS,
    SHORT_RUN_COMPILER_OPTIONS,
    SHORT_RUN_STEPS,
    compiler_options,
    enable_compilation_cache,
)


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
    loss = out.loss_metrics
    return UpdateMetrics(
        env_steps=env_steps,
        episode_return=mean_return,
        episode_return_min=lowest,
        episode_return_max=highest,
        episode_length=mean_length,
        episodes=count,
        total_loss=loss.total_loss,
        actor_loss=loss.actor_loss,
        critic_loss=loss.critic_loss,
        entropy=loss.entropy,
        grad_norm=loss.grad_norm,
        learning_rate=loss.learning_rate,
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


UpdateStep = Callable[[RunnerState], tuple[RunnerState, UpdateMetrics]]


def guarded(update_step: UpdateStep) -> UpdateStep:
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


def unguarded(update_step: UpdateStep) -> UpdateStep:
    """`update_step` counting every update, checking nothing (`make_trainer(guard=False)`: what
    `benchmarks/progress_overhead.py` prices the guard against)."""

    def step(runner: RunnerState) -> tuple[RunnerState, UpdateMetrics]:
        new, metrics = update_step(runner)
        return new._replace(updates=runner.updates + 1), metrics

    return step


def run_while(
    update_step: UpdateStep,
    runner: RunnerState,
    max_updates: int,
    keep_going: Callable[[RunnerState], jax.Array],
) -> tuple[RunnerState, UpdateMetrics]:
    """Up to `max_updates` updates while `keep_going(runner)` (budget left, not diverged): a
    `lax.while_loop` (under `vmap`, it runs until every seed stops) writing each update's metrics
    into `[max_updates]` rows. Rows after the last update repeat it, with `episodes = 0`, so
    curves against `env_steps` stay flat there. Chunks of any size can therefore be chained
    without overrunning the budget, and an update past the end costs nothing."""
    update_step = jax.jit(update_step)  # traced once: for the rows' shapes, reused by the loop
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


def run_scan(
    update_step: UpdateStep,
    runner: RunnerState,
    max_updates: int,
    keep_going: Callable[[RunnerState], jax.Array],
) -> tuple[RunnerState, UpdateMetrics]:
    """Exactly `max_updates` updates as a plain `lax.scan`, ignoring `keep_going` (no budget or
    divergence stop): the loop of `make_trainer(guard=False)`."""
    del keep_going
    return jax.lax.scan(lambda r, _: update_step(r), runner, None, length=max_updates)


def make_trainer(config: Config, *, guard: bool = True) -> Trainer:
    """Builds the pieces of the training loop for `config` (validated before anything traces).

    With `config.num_devices` > 1 the same loop runs on every device with its share of the
    environments, mapped over the devices by `parallel.spread` (gradient parallelism); the
    device count is checked here, before anything compiles. `guard=False` drops the divergence
    guard and the early stop (`unguarded`, `run_scan`): for measuring what they cost.
    """
    if config.trainer != "jit":
        raise ConfigError(
            f"algo={config.algo!r} is asynchronous: its workers are threads that apply gradients "
            "to shared parameters whenever they are ready, which no pure jitted train(key) can "
            "express; train it with a3c_jax.train_async(config, key) (algo='a2c' is its "
            "synchronous counterpart for make_train)"
        )
    count = parallel.num_devices(config)
    if count == 1:
        return _make_device_trainer(config, config, None, guard)
    local = parallel.device_config(config, count)
    return parallel.spread(_make_device_trainer(config, local, parallel.AXIS, guard), config, count)


class DeviceLoop(NamedTuple):
    """What one device's loop is made of: it runs `local`'s share of the run's environments
    and averages its gradients over the devices of `axis_name` (None: the only device)."""

    local: Config
    spec: envs.EnvSpec
    networks: Networks
    optimizer: Optimizer
    algorithm: Algorithm
    axis_name: str | None

    @classmethod
    def build(cls, config: Config, local: Config, axis_name: str | None) -> DeviceLoop:
        spec = build.env_spec(config, axis_name)
        networks = make_networks(local, spec)
        optimizer = make_optimizer(local, axis_name)
        algorithm = registry.get(config.algo).build(local, spec, networks, optimizer)
        return cls(local, spec, networks, optimizer, algorithm, axis_name)

    def init(self, key: PRNGKey) -> RunnerState:
        """The state before the first update, drawn from `key` (`init_keys`)."""
        keys = init_keys(key)
        params = self.networks.init(keys.params)
        train_state = init_train_state(self.optimizer, params)
        first_env = parallel.device_index(self.axis_name) * self.local.num_envs
        env = envs.reset(self.spec, keys.env, self.local.num_envs, first_env)
        env = with_initial_state(self.networks, env)  # recurrent policies' hidden state
        algo_state = self.algorithm.init(params, keys.algo)
        nan = jnp.full((), jnp.nan, jnp.float32)
        zero = jnp.zeros((), jnp.int32)
        return RunnerState(train_state, env, algo_state, keys.loop, nan, nan, zero, zero)

    def update_step(self, runner: RunnerState) -> tuple[RunnerState, UpdateMetrics]:
        """One update of the algorithm, its metrics, and the runner's episode figures."""
        key, update_key = jax.random.split(runner.key)
        train_state, env, algo_state, out = self.algorithm.update(
            runner.train_state, runner.env, runner.algo_state, update_key
        )
        metrics = update_metrics(
            train_state.env_steps,
            out,
            runner.last_episode_return,
            runner.last_episode_length,
            self.axis_name,
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


def _make_device_trainer(
    config: Config, local: Config, axis_name: str | None, guard: bool = True
) -> Trainer:
    """The `Trainer` of one device, which runs `local`'s share of `config`'s environments and
    averages its gradients over the devices of `axis_name` (None: the only device); its budget
    and stop test from `config`."""
    loop = DeviceLoop.build(config, local, axis_name)
    fixed_batch = loop.algorithm.fixed_batch
    # Fixed-size updates stop after `num_updates` in all; episodic ones once the
    # environment-step budget is spent.
    budget = config.num_updates if fixed_batch else int(jnp.iinfo(jnp.int32).max)
    step, run_loop = (guarded, run_while) if guard else (unguarded, run_scan)
    update_step = step(loop.update_step)

    def run(
        runner: RunnerState, num_updates: int, until: jax.Array | int | None = None
    ) -> tuple[RunnerState, UpdateMetrics]:
        until = budget if until is None else jnp.minimum(until, budget)

        def keep_going(runner: RunnerState) -> jax.Array:
            going = (runner.updates < until) & (runner.diverged == 0)
            if not fixed_batch:
                going &= runner.train_state.env_steps < config.total_timesteps
            return going

        return run_loop(update_step, runner, num_updates, keep_going)

    def train(key: PRNGKey) -> TrainResult:
        runner, metrics = run(loop.init(key), config.num_updates)
        state = runner.train_state
        params = wrappers.export_params(state.params, runner.env.wrapper_state)
        return TrainResult(params, state.opt_state, metrics, runner)

    return Trainer(loop.init, run, train)


def make_train(config: Config, *, guard: bool = True) -> Callable[[PRNGKey], TrainResult]:
    """The pure training function `train(key) -> TrainResult` for `config`.

    The whole run (`config.num_updates` updates) is one `lax.while_loop`: jit it, and `vmap` it
    over keys to train many seeds at once. `guard`: see `make_trainer`.
    """
    return make_trainer(config, guard=guard).train


def jit_train(
    config: Config, num_seeds: int | None = None, *, guard: bool = True
) -> Callable[[PRNGKey], TrainResult]:
    """`jax.jit(make_train(config))`, vmapped over `num_seeds` keys `[num_seeds, 2]` if given,
    compiled with `compiler_options(config, num_seeds)`. Over several devices the seeds go
    inside: each device trains every seed on its environments. `guard`: see `make_trainer`."""
    train = make_train(config, guard=guard)
    if num_seeds is not None and (isinstance(num_seeds, bool) or not num_seeds >= 1):
        raise ConfigError(f"jit_train: num_seeds={num_seeds!r} must be None or at least 1")
    if num_seeds is not None:
        train = jax.vmap(train)
    return jax.jit(train, compiler_options=compiler_options(config, num_seeds or 1))
