"""The trainer: shapes of one update for each algorithm, the whole run under jit and vmap."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import a3c_jax
from a3c_jax import Config, envs
from a3c_jax.algorithms import ALGORITHM_BUILDERS
from a3c_jax.networks import make_networks
from a3c_jax.optim import init_train_state, make_optimizer

TINY = {"num_envs": 4, "n_steps": 5, "total_timesteps": 4 * 5 * 3}


@pytest.mark.parametrize("algo", sorted(ALGORITHM_BUILDERS))
@pytest.mark.parametrize("env_name", ["CartPole-v1", "Pendulum-v1"])
def test_one_update_shapes(algo, env_name, key):
    config = Config(env_name=env_name, algo=algo, **TINY)
    spec = envs.make_env(env_name)
    nets = make_networks(config, spec)
    optimizer = make_optimizer(config)
    params = nets.init(key)
    state = init_train_state(optimizer, params)
    carry = envs.reset(spec, key, config.num_envs)
    algorithm = ALGORITHM_BUILDERS[algo](config, spec, nets, optimizer)
    update = jax.jit(algorithm.update)
    algo_state = algorithm.init(params, key)
    new_state, new_carry, new_algo_state, out = update(state, carry, algo_state, key)
    traj, metrics = out.transitions, out.loss_metrics
    T = spec.max_episode_steps if config.episodic else config.n_steps
    B = config.num_envs
    assert algorithm.fixed_batch != config.episodic
    chex.assert_shape(out.valid, (T, B))
    chex.assert_shape(traj.obs, (T, B, *spec.obs_shape))
    chex.assert_shape(traj.action, (T, B, *spec.action_shape))
    chex.assert_shape([traj.reward, traj.terminated, traj.truncated], (T, B))
    chex.assert_trees_all_equal_shapes(new_state.params, params)
    chex.assert_trees_all_equal_shapes(new_carry, carry)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_algo_state, algo_state)
    assert int(new_state.update_step) == 1
    assert int(new_state.env_steps) == int(out.valid.sum())
    if not config.episodic:
        assert int(new_state.env_steps) == config.batch_size
    for name in (
        "total_loss",
        "actor_loss",
        "critic_loss",
        "entropy",
        "grad_norm",
        "learning_rate",
    ):
        chex.assert_shape(metrics[name], ())
        assert np.isfinite(metrics[name])
    # A gradient step was taken.
    diffs = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params, new_state.params)
    assert max(jax.tree.leaves(diffs)) > 0


def test_train_result_and_metrics(key):
    config = Config(num_envs=8, n_steps=4, total_timesteps=8 * 4 * 10)
    result = jax.jit(a3c_jax.make_train(config))(key)
    assert config.num_updates == 10
    for field in result.metrics:
        chex.assert_shape(field, (10,))
    np.testing.assert_array_equal(result.metrics.env_steps, 32 * np.arange(1, 11))
    assert int(result.runner_state.train_state.update_step) == 10
    assert np.all(np.isfinite(result.metrics.total_loss))
    # Learning rate decays linearly from lr towards 0 (anneal_lr).
    lr = np.asarray(result.metrics.learning_rate)
    np.testing.assert_allclose(lr[0], config.lr, rtol=1e-6)
    assert np.all(np.diff(lr) < 0)


def test_vmap_over_seeds_gives_different_runs(key):
    config = Config(num_envs=8, n_steps=8, total_timesteps=8 * 8 * 20)
    many = jax.jit(jax.vmap(a3c_jax.make_train(config)))(jax.random.split(key, 4))
    for field in many.metrics:
        chex.assert_shape(field, (4, 20))
    losses = np.asarray(many.metrics.total_loss)
    assert len({tuple(np.round(row, 6)) for row in losses}) == 4
    first_kernels = np.asarray(many.params["params"]["actor_head"]["kernel"])
    assert not np.allclose(first_kernels[0], first_kernels[1])


def test_vmapped_seed_equals_single_run(key):
    config = Config(num_envs=8, n_steps=8, total_timesteps=8 * 8 * 5)
    keys = jax.random.split(key, 2)
    many = jax.jit(jax.vmap(a3c_jax.make_train(config)))(keys)
    one = jax.jit(a3c_jax.make_train(config))(keys[1])
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x[1], many.params), one.params, rtol=1e-4, atol=1e-5
    )


def test_episode_return_metric_counts_finished_episodes(key):
    config = Config(num_envs=16, n_steps=32, total_timesteps=16 * 32 * 2)
    result = jax.jit(a3c_jax.make_train(config))(key)
    # A near-uniform CartPole policy ends episodes within ~10-40 steps: some must have ended.
    assert float(result.metrics.episodes[0]) > 0
    assert 5 < float(result.metrics.episode_return[0]) < 100
    np.testing.assert_allclose(result.metrics.episode_return, result.metrics.episode_length)


def test_evaluate_and_act(key):
    config = Config(num_envs=4, n_steps=4, total_timesteps=16)
    result = jax.jit(a3c_jax.make_train(config))(key)
    returns = a3c_jax.evaluate(config, result.params, key, num_episodes=7)
    chex.assert_shape(returns, (7,))
    assert np.all((returns >= 1) & (returns <= 500))
    act = a3c_jax.make_act(config, result.params)
    obs = jnp.zeros(4)
    action = act(obs)
    chex.assert_shape(action, ())
    assert int(action) in (0, 1)
    chex.assert_shape(act(jnp.zeros((3, 4))), (3,))
    sampled = a3c_jax.make_act(config, result.params, greedy=False)
    chex.assert_shape(sampled(obs, key), ())
    with pytest.raises(ValueError, match="key"):
        sampled(obs)


def test_act_continuous_is_clipped(key):
    config = Config(env_name="Pendulum-v1", num_envs=4, n_steps=4, total_timesteps=16)
    params = jax.jit(a3c_jax.make_train(config))(key).params
    params = jax.tree.map(lambda x: x, params)
    params["params"]["actor_head"]["bias"] = jnp.array([50.0])  # a mean far out of bounds
    action = a3c_jax.make_act(config, params)(jnp.zeros(3))
    chex.assert_shape(action, (1,))
    np.testing.assert_allclose(action, [2.0])


def test_greedy_evaluation_is_deterministic_given_key(key):
    config = Config(num_envs=4, n_steps=4, total_timesteps=16)
    params = jax.jit(a3c_jax.make_train(config))(key).params
    a = a3c_jax.evaluate(config, params, key, num_episodes=5)
    b = a3c_jax.evaluate(config, params, key, num_episodes=5)
    np.testing.assert_array_equal(a, b)


def test_compiler_options_follow_the_run_length():
    """On the CPU, runs of up to `SHORT_RUN_STEPS` steps (all seeds together) compile with the
    faster-compiling options; longer ones, and callers with no config, with the faster-running."""
    from a3c_jax import train

    assert jax.default_backend() == "cpu"
    short = Config(total_timesteps=train.SHORT_RUN_STEPS)
    assert train.compiler_options(short) == train.SHORT_RUN_COMPILER_OPTIONS
    assert train.compiler_options(short, num_seeds=2) == train.CPU_COMPILER_OPTIONS
    assert train.compiler_options(short.replace(total_timesteps=2 * train.SHORT_RUN_STEPS)) == (
        train.CPU_COMPILER_OPTIONS
    )
    assert train.compiler_options() == train.CPU_COMPILER_OPTIONS
    assert train.SHORT_RUN_COMPILER_OPTIONS["xla_cpu_use_fusion_emitters"] is False
    # Both sets are accepted by XLA and train the same algorithm (float rounding apart).
    config = Config(num_envs=4, n_steps=4, total_timesteps=4 * 4 * 5)
    key = jax.random.PRNGKey(0)
    results = [
        jax.jit(a3c_jax.make_train(config), compiler_options=options)(key)
        for options in (train.SHORT_RUN_COMPILER_OPTIONS, train.CPU_COMPILER_OPTIONS)
    ]
    chex.assert_trees_all_close(results[0].params, results[1].params, rtol=1e-4, atol=1e-5)
