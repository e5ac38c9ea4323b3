"""Asynchronous A3C: one worker replays synchronous a2c; several workers all apply their gradients
and record staleness; a failing worker stops the run; Ctrl-C returns the partial run."""

import os
import signal
import threading
import traceback

import chex
import jax
import numpy as np
import pytest

import a3c_jax
from a3c_jax import Config, ConfigError
from a3c_jax.algorithms.optim import init_train_state
from a3c_jax.workers.a3c import ParameterStore

# One configuration for the multi-worker tests, so that they share one compile (train_async
# compiles once per Config); its budget lasts well past the stopping tests' stops.
MANY = Config(algo="a3c", num_workers=3, num_envs=2, n_steps=4, total_timesteps=2 * 4 * 300)


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("a3c-worker-")]


def test_one_worker_replays_synchronous_a2c(key):
    config = Config(algo="a3c", num_workers=1, num_envs=4, n_steps=5, total_timesteps=4 * 5 * 6)
    assert config.optimizer == "rmsprop"  # the paper's optimiser: a3c's default
    result = a3c_jax.train_async(config, key)
    sync = jax.jit(a3c_jax.make_train(config.replace(algo="a2c")))(key)
    chex.assert_trees_all_close(result.params, sync.params, rtol=1e-5, atol=1e-6)
    # The store's optimiser state comes back shaped like the synchronous trainer's.
    chex.assert_trees_all_close(result.opt_state, sync.opt_state, rtol=1e-5, atol=1e-7)
    for name in ("total_loss", "actor_loss", "critic_loss", "entropy", "grad_norm"):
        np.testing.assert_allclose(
            getattr(result.metrics, name), getattr(sync.metrics, name), rtol=1e-5, err_msg=name
        )
    for name in ("env_steps", "episode_return", "episode_length", "episodes", "learning_rate"):
        np.testing.assert_allclose(
            getattr(result.metrics, name), getattr(sync.metrics, name), rtol=1e-6, err_msg=name
        )
    assert int(result.train_state.update_step) == 6
    assert int(result.train_state.env_steps) == 120
    np.testing.assert_array_equal(result.async_metrics.staleness, 0)
    np.testing.assert_array_equal(result.async_metrics.worker, 0)
    assert not result.interrupted


def test_every_workers_gradients_are_applied_with_staleness(key):
    records = []
    result = a3c_jax.train_async(MANY, key, callback=records.append)
    updates = MANY.num_updates
    assert result.num_updates == updates == int(result.train_state.update_step)
    assert int(result.train_state.env_steps) == MANY.total_timesteps
    for field in result.metrics:
        chex.assert_shape(field, (updates,))
    for field in result.async_metrics:
        chex.assert_shape(field, (updates,))
    expected_steps = MANY.batch_size * np.arange(1, updates + 1)
    np.testing.assert_array_equal(result.metrics.env_steps, expected_steps)
    assert np.all(np.isfinite(result.metrics.total_loss))
    # Every worker's gradients were applied, and the counts add up to the run.
    counts = np.bincount(result.async_metrics.worker, minlength=MANY.num_workers)
    assert counts.sum() == updates and np.all(counts > 0), counts
    # Staleness: what the callback saw, never more than the updates applied before, and some
    # gradients were applied after another worker's (workers overlap).
    assert [r.worker for r in records] == list(result.async_metrics.worker)
    assert [r.staleness for r in records] == list(result.async_metrics.staleness)
    staleness = result.async_metrics.staleness
    assert np.all(staleness >= 0) and np.all(staleness <= np.arange(updates))
    assert result.staleness_max >= 1
    assert result.staleness_mean == pytest.approx(staleness.mean())
    assert np.all(np.diff(result.async_metrics.wall_time) >= 0)
    assert result.updates_per_second > 0 and result.env_steps_per_second > 0
    # Timing: compile apart from the run, CPU time of the whole process over the run's wall time.
    assert result.compile_seconds > 0 and result.cpu_seconds > 0 and result.wall_seconds > 0
    assert result.cores_busy == pytest.approx(result.cpu_seconds / result.wall_seconds)
    assert 0 < result.cores_busy <= (os.cpu_count() or 1) + 0.5
    np.testing.assert_allclose(result.updates_per_second, updates / result.wall_seconds, rtol=1e-6)
    # The learning rate decays with the global step count, whichever worker's gradient it is.
    before = expected_steps - MANY.batch_size
    np.testing.assert_allclose(
        result.metrics.learning_rate, MANY.lr * (1 - before / MANY.total_timesteps), rtol=1e-5
    )
    # The result has the synchronous trainer's parameters and evaluates like them.
    sync_params = jax.eval_shape(
        a3c_jax.make_train(MANY.replace(algo="a2c", num_workers=1)), key
    ).params
    chex.assert_trees_all_equal_shapes_and_dtypes(result.params, sync_params)
    returns = a3c_jax.evaluate(MANY, result.params, key, num_episodes=3)
    same = a3c_jax.evaluate(
        MANY.replace(algo="a2c", num_workers=1), result.params, key, num_episodes=3
    )
    np.testing.assert_array_equal(returns, same)


def test_workers_have_their_own_environments_and_keys(key):
    # Two workers on the same parameters, each with its own key stream: different rollouts.
    parts = a3c_jax.workers.a3c.make_async_parts(MANY)
    state, carries = parts.init(key)
    assert len(carries) == MANY.num_workers
    _, _, metrics_0 = parts.worker_step(state.params, carries[0])
    _, _, metrics_1 = parts.worker_step(state.params, carries[1])
    assert not np.allclose(metrics_0, metrics_1)


def test_store_counts_staleness_in_versions():
    params = np.zeros(3, np.float32)

    def apply(state, grads):
        return state._replace(params=state.params - grads, update_step=state.update_step + 1)

    state = init_train_state(a3c_jax.workers.a3c.make_optimizer(MANY), jax.numpy.asarray(params))
    store = ParameterStore(state, apply, num_updates=3, batch_size=8)
    ones = np.ones(3, np.float32)
    (p0, v0), (_, v1) = store.checkout(), store.checkout()
    assert v0 == v1 == 0
    first = store.apply(worker=0, grads=ones, version=v0, worker_metrics=ones)
    second = store.apply(worker=1, grads=ones, version=v1, worker_metrics=ones)
    assert (first.staleness, second.staleness) == (0, 1)
    assert (first.env_steps, second.env_steps) == (8, 16)
    np.testing.assert_array_equal(store.state.params, -2 * ones)
    np.testing.assert_array_equal(p0, params)  # a worker's copy does not change under it
    assert store.checkout() is not None and store.checkout() is None  # budget of 3 spent
    store.stop()
    assert store.apply(worker=0, grads=ones, version=2, worker_metrics=ones) is None
    assert store.version == 2


def test_worker_exception_stops_every_worker_and_is_raised(key):
    seen = []

    def exploding_callback(record):
        seen.append(record)
        if record.worker == 1 and len(seen) >= 5:
            raise RuntimeError("worker 1 failed on purpose")

    with pytest.raises(RuntimeError, match="failed on purpose") as info:
        a3c_jax.train_async(MANY, key, callback=exploding_callback)
    assert "A3C worker 1" in " ".join(getattr(info.value, "__notes__", []))
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "exploding_callback" in frames and "_work" in frames
    assert len(seen) < MANY.num_updates  # stopped long before the budget
    assert not _worker_threads()


def test_ctrl_c_stops_workers_and_returns_the_partial_run(key, default_sigint):
    main = threading.main_thread().ident

    def interrupt(record):
        if record.update == 10:
            signal.pthread_kill(main, signal.SIGINT)

    result = a3c_jax.train_async(MANY, key, callback=interrupt)
    assert result.interrupted
    assert 11 <= result.num_updates < MANY.num_updates
    assert int(result.train_state.update_step) == result.num_updates
    chex.assert_tree_all_finite(result.params)
    assert not _worker_threads()


def test_config_errors_before_compiling(key):
    with pytest.raises(ConfigError, match="num_workers=0 must be a positive integer"):
        Config(algo="a3c", num_workers=0)
    with pytest.raises(ConfigError, match="num_workers=4 is only meaningful with an asynchronous"):
        Config(algo="a2c", num_workers=4)
    with pytest.raises(ConfigError, match="num_devices=2 does not apply to algo='a3c'"):
        Config(algo="a3c", num_devices=2, num_envs=2)
    with pytest.raises(ConfigError, match="fewer than num_workers=4"):
        Config(algo="a3c", num_workers=4, num_envs=1, n_steps=5, total_timesteps=15)
    with pytest.raises(ConfigError, match="train_async"):
        a3c_jax.make_train(Config(algo="a3c"))
    with pytest.raises(ConfigError, match="make_train"):
        a3c_jax.train_async(Config(algo="a2c"), key)
    assert "a3c" in a3c_jax.ALGORITHMS


@pytest.mark.slow
def test_a3c_solves_cartpole():
    # The paper's set-up (one environment per worker, t_max = 5, shared RMSprop) with 2 workers.
    # Asynchronous runs are not reproducible (the order of updates depends on the threads), so
    # the threshold has margin: 6 of 6 runs measured reached a greedy return of 500.
    config = Config(algo="a3c", num_workers=2, total_timesteps=60_000)
    result = a3c_jax.train_async(config, jax.random.PRNGKey(0))
    returns = np.asarray(a3c_jax.evaluate(config, result.params, jax.random.PRNGKey(1000), 100))
    assert returns.mean() >= 475.0, (returns.mean(), result.staleness_mean)
