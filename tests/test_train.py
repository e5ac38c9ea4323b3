"""The trainer: shapes of one update for each algorithm, the whole run under jit and vmap."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import a3c_jax
from a3c_jax import Config, envs
from a3c_jax.algorithms import ALGORITHM_BUILDERS
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.algorithms.optim import init_train_state, make_optimizer

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
    # Learning rate decays linearly from lr to 0 over the environment-step budget (anneal_lr).
    np.testing.assert_allclose(
        result.metrics.learning_rate, config.lr * (1 - 32 * np.arange(10) / 320), rtol=1e-6
    )


@pytest.mark.parametrize("algo", sorted(ALGORITHM_BUILDERS))
def test_learning_rate_decays_with_environment_steps(algo, key):
    """Each update's learning rate is `lr · (1 - steps before it / total_timesteps)`, for the
    fixed-size algorithms and for the episodic ones, whose updates differ in size; with
    `anneal_lr=False` it stays `lr`."""
    config = Config(algo=algo, num_envs=4, n_steps=2, total_timesteps=400)
    result = jax.jit(a3c_jax.make_train(config))(key)
    steps = np.asarray(result.metrics.env_steps)
    updates = int(result.runner_state.train_state.update_step)
    before = np.concatenate([[0], steps[: updates - 1]])
    if config.episodic:
        assert len(set(np.diff(before).tolist())) > 1, "the test needs updates of unequal size"
    np.testing.assert_allclose(
        result.metrics.learning_rate[:updates],
        config.lr * (1 - before / config.total_timesteps),
        rtol=1e-5,
    )
    flat = make_optimizer(config.replace(anneal_lr=False)).learning_rate
    np.testing.assert_allclose([flat(0), flat(399)], config.lr, rtol=1e-7)


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
    """The episode figures of each update are those of the episodes that finished in it: on
    CartPole (reward 1 per step) the returns of the finished episodes, weighted by their count,
    plus the partial returns of the episodes still running at the end, add up to every step
    played; the same holds for lengths."""
    config = Config(num_envs=16, n_steps=32, total_timesteps=16 * 32 * 4)
    result = jax.jit(a3c_jax.make_train(config))(key)
    m = jax.tree.map(np.asarray, result.metrics)
    # A near-uniform CartPole policy ends episodes within ~10-40 steps: some must have ended.
    assert m.episodes[0] > 0
    running = result.runner_state.env
    played = int(result.runner_state.train_state.env_steps)
    finished = np.sum(m.episodes * m.episode_return)
    np.testing.assert_allclose(finished + float(np.sum(running.episode_return)), played, rtol=1e-6)
    lengths = np.sum(m.episodes * m.episode_length) + int(np.sum(running.episode_length))
    np.testing.assert_allclose(lengths, played, rtol=1e-6)
    assert np.all(m.episode_return_min <= m.episode_return)
    assert np.all(m.episode_return <= m.episode_return_max)
    assert np.all(m.episode_return_min < m.episode_return_max)  # several different episodes


def _fixed_policy(params, action: int):
    """`params` whose policy picks `action` with probability 1 - 1e-43 whatever it sees."""
    params = jax.tree.map(lambda x: x, params)
    head = params["params"]["actor_head"]
    head["kernel"] = jnp.zeros_like(head["kernel"])
    head["bias"] = jnp.where(jnp.arange(head["bias"].shape[0]) == action, 50.0, -50.0)
    return params


def _reference_greedy_returns(config: Config, params, key, num_episodes: int) -> np.ndarray:
    """Greedy returns from a plain Python loop over gymnax's own `step_env` (no auto-reset),
    taking argmax actions of the policy's logits, from the start states `evaluate` draws
    (`envs.reset` with the second half of `jax.random.split(key)`)."""
    spec = envs.make_env(config.env_name)
    networks = make_networks(config, spec)
    carry = envs.reset(spec, jax.random.split(key)[1], num_episodes)
    obs, state = carry.obs, carry.env_state
    logits = jax.jit(lambda o: networks.policy(params, o).logits)
    step = jax.jit(jax.vmap(spec.env.step_env, in_axes=(None, 0, 0, None)))
    totals, active = np.zeros(num_episodes), np.ones(num_episodes, bool)
    for _ in range(spec.max_episode_steps):
        action = jnp.asarray(np.argmax(np.asarray(logits(obs)), axis=-1), jnp.int32)
        obs, state, reward, done, _ = step(key, state, action, spec.env_params)
        totals += np.where(active, np.asarray(reward), 0.0)
        active &= ~np.asarray(done)
        if not active.any():
            break
    return totals


def test_evaluate_and_act(key):
    config = Config(num_envs=4, n_steps=4, total_timesteps=16)
    result = jax.jit(a3c_jax.make_train(config))(key)
    returns = a3c_jax.evaluate(config, result.params, key, num_episodes=7)
    chex.assert_shape(returns, (7,))
    # A policy that always pushes one way topples CartPole in 8 to 11 steps from any start.
    for action in (0, 1):
        params = _fixed_policy(result.params, action)
        returns = np.asarray(a3c_jax.evaluate(config, params, key, num_episodes=50))
        assert np.all((returns >= 8) & (returns <= 11)), returns
        sampled = a3c_jax.evaluate(config, params, key, num_episodes=50, greedy=False)
        np.testing.assert_array_equal(sampled, returns)  # probability 1 - 1e-43: the same
        act = a3c_jax.make_act(config, params)
        np.testing.assert_array_equal(act(jax.random.normal(key, (5, 4))), action)
    act = a3c_jax.make_act(config, result.params)
    obs = jax.random.normal(key, (6, 4))
    action = act(obs[0])
    chex.assert_shape(action, ())
    chex.assert_shape(act(obs), (6,))
    networks = make_networks(config, envs.make_env("CartPole-v1"))
    np.testing.assert_array_equal(
        act(obs), np.argmax(np.asarray(networks.policy(result.params, obs).logits), -1)
    )
    sampled = a3c_jax.make_act(config, result.params, greedy=False)
    chex.assert_shape(sampled(obs[0], key), ())
    with pytest.raises(ValueError, match="key"):
        sampled(obs[0])


def test_act_continuous_is_clipped(key):
    config = Config(env_name="Pendulum-v1", num_envs=4, n_steps=4, total_timesteps=16)
    params = jax.jit(a3c_jax.make_train(config))(key).params
    params = jax.tree.map(lambda x: x, params)
    params["params"]["actor_head"]["bias"] = jnp.array([50.0])  # a mean far out of bounds
    action = a3c_jax.make_act(config, params)(jnp.zeros(3))
    chex.assert_shape(action, (1,))
    np.testing.assert_allclose(action, [2.0])


def test_greedy_evaluation_matches_an_independent_loop(key):
    """`evaluate` (greedy) gives, episode by episode, the returns of a plain loop taking the
    argmax of the policy's logits; `greedy=False` samples (its returns depend on the key)."""
    config = Config(total_timesteps=16_000)  # part-trained: greedy episodes of varied lengths
    params = jax.jit(a3c_jax.make_train(config))(key).params
    eval_key = jax.random.PRNGKey(5)
    greedy = np.asarray(a3c_jax.evaluate(config, params, eval_key, num_episodes=6))
    assert len(set(greedy.tolist())) > 1 and greedy.max() > 20, greedy
    np.testing.assert_array_equal(greedy, _reference_greedy_returns(config, params, eval_key, 6))
    np.testing.assert_array_equal(greedy, a3c_jax.evaluate(config, params, eval_key, 6))
    sampled = [
        np.asarray(a3c_jax.evaluate(config, params, jax.random.PRNGKey(k), 6, greedy=False))
        for k in (5, 5, 6)
    ]
    np.testing.assert_array_equal(sampled[0], sampled[1])  # a key fixes the samples
    assert not np.array_equal(sampled[0], sampled[2])
    assert not np.array_equal(sampled[0], greedy)


def test_compiler_options_follow_the_run_length():
    """On the CPU, runs of up to `SHORT_RUN_STEPS` steps (all seeds together) compile with the
    faster-compiling options; longer ones, and callers with no config, with the faster-running."""
    from a3c_jax.training import loop

    assert jax.default_backend() == "cpu"
    short = Config(total_timesteps=loop.SHORT_RUN_STEPS)
    assert loop.compiler_options(short) == loop.SHORT_RUN_COMPILER_OPTIONS
    assert loop.compiler_options(short, num_seeds=2) == loop.CPU_COMPILER_OPTIONS
    assert loop.compiler_options(short.replace(total_timesteps=2 * loop.SHORT_RUN_STEPS)) == (
        loop.CPU_COMPILER_OPTIONS
    )
    assert loop.compiler_options() == loop.CPU_COMPILER_OPTIONS
    assert loop.SHORT_RUN_COMPILER_OPTIONS["xla_cpu_use_fusion_emitters"] is False
    # Both sets are accepted by XLA and train the same algorithm (float rounding apart).
    config = Config(num_envs=4, n_steps=4, total_timesteps=4 * 4 * 5)
    key = jax.random.PRNGKey(0)
    results = [
        jax.jit(a3c_jax.make_train(config), compiler_options=options)(key)
        for options in (loop.SHORT_RUN_COMPILER_OPTIONS, loop.CPU_COMPILER_OPTIONS)
    ]
    chex.assert_trees_all_close(results[0].params, results[1].params, rtol=1e-4, atol=1e-5)


def _reference_advantages(traj, values, next_values, gamma, lambda_) -> np.ndarray:
    """GAE(λ) `[T, B]` by a plain loop: no continuation after termination or truncation, a
    truncated step's reward gains `γ V(final observation)`, the last step bootstraps from
    `V(next_obs)`."""
    reward, values, next_values = (
        np.asarray(x, np.float64) for x in (traj.reward, values, next_values)
    )
    terminated, truncated = np.asarray(traj.terminated), np.asarray(traj.truncated)
    num_steps, batch = reward.shape
    advantages = np.zeros((num_steps, batch))
    for b in range(batch):
        gae = 0.0
        for t in reversed(range(num_steps)):
            if terminated[t, b]:
                delta, gae = reward[t, b] - values[t, b], 0.0
            elif truncated[t, b]:
                delta, gae = reward[t, b] + gamma * next_values[t, b] - values[t, b], 0.0
            else:
                following = values[t + 1, b] if t + 1 < num_steps else next_values[t, b]
                delta = reward[t, b] + gamma * following - values[t, b]
            gae = delta + gamma * lambda_ * gae
            advantages[t, b] = gae
    return advantages


def test_an_update_is_a_hand_written_loss_gradient_and_adam_step(key):
    """Two a2c updates equal, to float32 rounding, the decks' loss written out here (GAE
    advantages by a plain loop, `-mean(log π · A) + vf_coef · ½ mean((G - V)²) - ent_coef ·
    mean(H)`), its gradient, and optax's clip-then-Adam step on the parameter tree at the learning
    rate of the environment steps taken before each update."""
    import optax

    config = Config(num_envs=4, n_steps=6, total_timesteps=4 * 6 * 10)
    spec = envs.make_env(config.env_name)
    nets = make_networks(config, spec)
    algorithm = ALGORITHM_BUILDERS["a2c"](config, spec, nets, make_optimizer(config))
    update = jax.jit(algorithm.update)
    params = nets.init(key)
    state = init_train_state(make_optimizer(config), params)
    carry = envs.reset(spec, key, config.num_envs)
    tx = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(1.0, eps=config.optimizer_eps),
    )
    expected, opt_state = params, tx.init(params)
    for i, update_key in enumerate(jax.random.split(key, 2)):
        state, carry, _, out = update(state, carry, (), update_key)
        traj = out.transitions
        values = nets.value(expected, traj.obs)
        advantages = _reference_advantages(
            traj, values, nets.value(expected, traj.next_obs), config.gamma, config.gae_lambda
        )
        targets = advantages + np.asarray(values)

        def loss(p, traj=traj, advantages=advantages, targets=targets):
            pi, v = nets.apply(p, traj.obs)
            actor = -jnp.mean(pi.log_prob(traj.action) * advantages)
            critic = 0.5 * jnp.mean(jnp.square(targets - v))
            return actor + config.vf_coef * critic - config.ent_coef * jnp.mean(pi.entropy())

        grads = jax.grad(loss)(expected)
        updates, opt_state = tx.update(grads, opt_state, expected)
        lr = config.lr * (1 - i * config.batch_size / config.total_timesteps)
        expected = jax.tree.map(lambda p, u, lr=lr: p + lr * u, expected, updates)
        chex.assert_trees_all_close(state.params, expected, rtol=1e-4, atol=1e-6)
        assert not np.allclose(jax.tree.leaves(state.params)[0], jax.tree.leaves(params)[0])
    assert int(state.update_step) == 2 and int(state.env_steps) == 2 * config.batch_size
