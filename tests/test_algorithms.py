"""The decks' algorithms beyond A2C: episodic rollouts and their masking, the replay buffer,
Monte-Carlo and one-step targets, and the budgeted loop of episodic algorithms."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import a3c_jax
from a3c_jax import envs
from a3c_jax.algorithms import actor_critic
from a3c_jax.algorithms.actor_critic import advantages_and_targets, episode_collect, nstep_loss
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.core import replay
from a3c_jax.core.types import Transition


@pytest.fixture(scope="module")
def episodes():
    """Four CartPole episodes played by an untrained policy (lengths differ)."""
    config = a3c_jax.Config(algo="da2c", num_envs=4)
    spec = envs.make_env(config.env_name)
    nets = make_networks(config, spec)
    params = nets.init(jax.random.PRNGKey(0))
    collect = jax.jit(functools.partial(episode_collect, spec, nets, config))
    carry = envs.reset(spec, jax.random.PRNGKey(2), config.num_envs)
    _, traj, valid, next_values = collect(params, carry, jax.random.PRNGKey(3))
    return config, spec, nets, params, traj, valid, next_values


def test_rollout_episodes_valid_is_each_first_episode(episodes):
    _, spec, _, _, traj, valid, _ = episodes
    valid, done = np.asarray(valid), np.asarray(traj.done)
    chex.assert_shape(valid, (spec.max_episode_steps, 4))
    lengths = valid.sum(0)
    assert len(set(lengths.tolist())) > 1, "the test needs episodes of different lengths"
    for b, length in enumerate(lengths):
        # Valid is a prefix that ends exactly at the first `done`.
        assert valid[:length, b].all() and not valid[length:, b].any()
        assert done[length - 1, b] and not done[: length - 1, b].any()
        # The episode's own bookkeeping agrees: its return is the sum of its valid rewards.
        assert int(traj.episode_length[length - 1, b]) == length
        np.testing.assert_allclose(
            traj.episode_return[length - 1, b], np.asarray(traj.reward)[:length, b].sum()
        )


def test_padded_steps_change_nothing(episodes):
    """Garbage in every padded step leaves the loss and its gradient exactly as they were, and
    the masked loss equals the step-weighted mean of each episode's loss computed alone."""
    config, _, nets, params, traj, valid, next_values = episodes
    config = config.replace(ent_coef=0.01)  # every term of the loss in play
    loss = jax.jit(
        jax.value_and_grad(
            functools.partial(nstep_loss, config=config, networks=nets), has_aux=True
        )
    )
    (reference, _), reference_grads = loss(params, traj, next_values, valid)

    keys = iter(jax.random.split(jax.random.PRNGKey(7), 10))

    def garble(x):
        noise = jax.random.normal(next(keys), x.shape) * 10.0
        if x.dtype == bool:
            noise = noise > 0
        mask = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
        return jnp.where(mask, x, noise.astype(x.dtype))

    garbled = Transition(*(garble(x) for x in traj))
    (loss_value, _), grads = loss(params, garbled, garble(next_values), valid)
    assert float(loss_value) == float(reference)
    chex.assert_trees_all_close(grads, reference_grads, rtol=0, atol=0)

    # Each episode alone, unpadded [L, 1]; combined by its number of steps.
    lengths = np.asarray(valid).sum(0)
    total = 0.0
    for b, length in enumerate(lengths):
        alone = jax.tree.map(lambda x, b=b, n=length: x[:n, b : b + 1], traj)
        value, _ = nstep_loss(
            params, alone, next_values[:length, b : b + 1], config=config, networks=nets
        )
        total += float(value) * length
    np.testing.assert_allclose(float(reference), total / lengths.sum(), rtol=1e-5)


def test_monte_carlo_targets(episodes):
    """da2c's λ = 1 targets are the decks' backward loop R <- r + γ R from R = 0 at the end."""
    config, _, nets, params, traj, valid, next_values = episodes
    values = nets.value(params, traj.obs)
    _, targets = advantages_and_targets(traj, values, next_values, config, valid)
    rewards = np.asarray(traj.reward)
    for b, length in enumerate(np.asarray(valid).sum(0)):
        assert bool(traj.terminated[length - 1, b])  # an untrained CartPole policy falls
        expected, ret = [], 0.0
        for t in reversed(range(length)):
            ret = rewards[t, b] + config.gamma * ret
            expected.append(ret)
        np.testing.assert_allclose(targets[:length, b], expected[::-1], rtol=1e-5)


def test_one_step_targets_for_online_ac(key):
    """online_ac: n_steps = 1, advantage r + γ V(s') - V(s), no bootstrap after termination."""
    config = a3c_jax.Config(algo="online_ac")
    assert config.n_steps == 1
    traj = Transition(
        obs=jnp.zeros((1, 3, 4)),
        action=jnp.zeros((1, 3), jnp.int32),
        reward=jnp.array([[1.0, 2.0, 3.0]]),
        terminated=jnp.array([[False, True, False]]),
        truncated=jnp.array([[False, False, True]]),
        next_obs=jnp.zeros((1, 3, 4)),
        episode_return=jnp.zeros((1, 3)),
        episode_length=jnp.zeros((1, 3), jnp.int32),
    )
    values = jnp.array([[0.5, 0.5, 0.5]])
    next_values = jnp.array([[2.0, 9.0, 4.0]])
    advantages, targets = advantages_and_targets(traj, values, next_values, config)
    g = config.gamma
    np.testing.assert_allclose(targets, [[1 + g * 2.0, 2.0, 3 + g * 4.0]], rtol=1e-6)
    np.testing.assert_allclose(advantages, targets - values, rtol=1e-6)


class TestReplayBuffer:
    def _items(self, start, n):
        values = jnp.arange(start, start + n, dtype=jnp.float32)
        return replay.Experience(values[:, None], values, values > 1e9, -values[:, None])

    def test_adds_only_valid_rows_in_order(self):
        buffer = replay.replay_init((1,), capacity=8)
        valid = jnp.array([True, False, True, True, False])
        buffer = jax.jit(replay.replay_add)(buffer, self._items(0, 5), valid)
        assert int(buffer.size) == 3 and int(buffer.position) == 3
        np.testing.assert_array_equal(buffer.data.reward[:3], [0.0, 2.0, 3.0])
        np.testing.assert_array_equal(buffer.data.next_obs[:3, 0], [-0.0, -2.0, -3.0])

    def test_wraps_around_and_keeps_the_newest(self):
        buffer = replay.replay_init((1,), capacity=4)
        add = jax.jit(replay.replay_add)
        buffer = add(buffer, self._items(0, 3), jnp.ones(3, bool))
        buffer = add(buffer, self._items(3, 3), jnp.ones(3, bool))  # overwrites 0 and 1
        assert int(buffer.size) == 4 and int(buffer.position) == 2
        assert sorted(np.asarray(buffer.data.reward).tolist()) == [2.0, 3.0, 4.0, 5.0]
        # More new rows than capacity in one call: the last `capacity` survive.
        buffer = add(buffer, self._items(10, 7), jnp.ones(7, bool))
        assert sorted(np.asarray(buffer.data.reward).tolist()) == [13.0, 14.0, 15.0, 16.0]

    def test_samples_only_filled_slots(self, key):
        buffer = replay.replay_init((1,), capacity=100)
        buffer = replay.replay_add(buffer, self._items(1, 5), jnp.ones(5, bool))
        batch = jax.jit(replay.replay_sample, static_argnums=2)(buffer, key, 500)
        chex.assert_shape(batch.obs, (500, 1))
        assert set(np.asarray(batch.reward).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_ac_replay_buffer_holds_every_played_step(key):
    config = a3c_jax.Config(algo="ac_replay", num_envs=4, total_timesteps=2_000)
    trainer = a3c_jax.make_trainer(config)
    runner = jax.jit(trainer.init)(key)
    runner, metrics = jax.jit(trainer.run, static_argnums=1)(runner, 3)
    played = int(runner.train_state.env_steps)
    assert int(runner.algo_state.size) == min(played, config.replay_capacity)
    np.testing.assert_array_equal(np.diff(metrics.env_steps) > 0, True)


def test_episodic_run_stops_at_its_budget(key):
    """da2c's loop ends once total_timesteps are spent; later metric rows repeat the last
    update with no episodes, so curves stay flat."""
    config = a3c_jax.Config(algo="da2c", num_envs=4, total_timesteps=300)
    result = jax.jit(a3c_jax.make_train(config))(key)
    steps = np.asarray(result.metrics.env_steps)
    chex.assert_shape(steps, (config.num_updates,))
    played = int(result.runner_state.train_state.env_steps)
    updates = int(result.runner_state.train_state.update_step)
    assert 300 <= played < 300 + 4 * 500
    assert updates < config.num_updates
    assert steps[updates - 1] == played and (steps[updates:] == played).all()
    assert (np.asarray(result.metrics.episodes)[updates:] == 0).all()
    # Every update of da2c finishes exactly one episode per environment.
    np.testing.assert_array_equal(np.asarray(result.metrics.episodes)[:updates], 4)


def test_episodic_algorithms_vmap_over_seeds(key):
    config = a3c_jax.Config(algo="ac_replay", num_envs=2, total_timesteps=200)
    results = jax.jit(jax.vmap(a3c_jax.make_train(config)))(jax.random.split(key, 3))
    played = np.asarray(results.runner_state.train_state.env_steps)
    chex.assert_shape(played, (3,))
    assert (played >= 200).all()


def test_bootstrap_values_where_the_returns_read_them(key):
    """`bootstrap_values` gives the full critic pass's values at truncated steps and at the last
    step (all that the returns read), and the loss is then the full pass's, to float tolerance."""
    config = a3c_jax.Config(num_envs=6, n_steps=8)
    spec = envs.make_env("CartPole-v1")
    networks = make_networks(config, spec)
    params = networks.init(key)
    carry = envs.reset(spec, key, config.num_envs)
    # Environments 0-2 are 3, 5 and 8 steps from CartPole's time limit: they truncate in the
    # rollout unless they fall first (near-upright starts and 8 steps: they do not).
    limit = spec.max_episode_steps
    time = carry.env_state.time.at[:3].set(jnp.array([limit - 3, limit - 5, limit - 8]))
    carry = carry._replace(env_state=carry.env_state.replace(time=time))
    carry, traj, next_values = jax.jit(
        functools.partial(actor_critic.nstep_collect, spec, networks, config)
    )(params, carry, key)
    full = networks.value(params, traj.next_obs)
    truncated = np.asarray(traj.truncated)
    assert truncated[:, :3].sum(axis=0).tolist() == [1, 1, 1] and not truncated[:, 3:].any()
    read = truncated.copy()
    read[-1] = True
    np.testing.assert_allclose(np.asarray(next_values)[read], np.asarray(full)[read], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(next_values)[~read], 0.0)
    loss_fn = functools.partial(nstep_loss, config=config, networks=networks)
    chex.assert_trees_all_close(
        jax.grad(loss_fn, has_aux=True)(params, traj, next_values),
        jax.grad(loss_fn, has_aux=True)(params, traj, full),
        rtol=1e-5,
        atol=1e-6,
    )


class ReplayVariantsTest(chex.TestCase):
    """The replay buffer's pure functions give the same buffer and samples with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_add_then_sample(self):
        values = jnp.arange(7, dtype=jnp.float32)
        items = replay.Experience(values[:, None], values, values > 4, -values[:, None])
        valid = jnp.array([True, True, False, True, True, True, True])

        def add_and_sample(buffer, items, valid, key):
            buffer = replay.replay_add(buffer, items, valid)
            return buffer, replay.replay_sample(buffer, key, 64)

        buffer, batch = self.variant(add_and_sample)(
            replay.replay_init((1,), 4), items, valid, jax.random.PRNGKey(1)
        )
        # 6 valid rows into 4 slots: the newest 4 (3, 4, 5, 6) survive, the next write at 2.
        assert int(buffer.size) == 4 and int(buffer.position) == 2
        assert sorted(np.asarray(buffer.data.reward).tolist()) == [3.0, 4.0, 5.0, 6.0]
        assert set(np.asarray(batch.reward).tolist()) == {3.0, 4.0, 5.0, 6.0}
        np.testing.assert_array_equal(batch.next_obs[:, 0], -batch.reward)
        np.testing.assert_array_equal(batch.terminated, batch.reward > 4)
