"""The environment layer: vectorisation, auto-reset, truncation versus termination."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from a3c_jax import envs, rollout


def test_spec_of_discrete_and_continuous():
    cartpole = envs.make_env("CartPole-v1")
    assert cartpole.discrete and cartpole.num_actions == 2 and cartpole.obs_shape == (4,)
    assert cartpole.max_episode_steps == 500
    pendulum = envs.make_env("Pendulum-v1")
    assert not pendulum.discrete and pendulum.action_shape == (1,)
    np.testing.assert_allclose(pendulum.action_high, [2.0])
    assert envs.make_env("Breakout-MinAtar").obs_shape == (10, 10, 4)


def test_reset_and_step_shapes(key):
    spec = envs.make_env("CartPole-v1")
    carry = envs.reset(spec, key, 5)
    chex.assert_shape(carry.obs, (5, 4))
    carry, tr = envs.step(spec, key, carry, jnp.zeros(5, jnp.int32))
    chex.assert_shape([tr.obs, tr.next_obs], (5, 4))
    chex.assert_shape([tr.reward, tr.terminated, tr.truncated, tr.episode_return], (5,))
    assert carry.obs.dtype == jnp.float32


def test_minatar_observations_are_float(key):
    spec = envs.make_env("Breakout-MinAtar")
    carry = envs.reset(spec, key, 2)
    assert carry.obs.dtype == jnp.float32 and carry.obs.shape == (2, 10, 10, 4)


def _run(spec, key, num_envs, steps, action):
    carry = envs.reset(spec, key, num_envs)

    def policy(params, obs, key):
        return jnp.full(
            (obs.shape[0], *spec.action_shape),
            action,
            jnp.float32 if not spec.discrete else jnp.int32,
        )

    policy = rollout.stateless(policy)
    return jax.jit(lambda c, k: rollout.rollout(spec, policy, None, c, k, steps))(carry, key)


def test_termination_resets_and_records_episode(key):
    # Always pushing right topples CartPole within a few dozen steps: a termination.
    spec = envs.make_env("CartPole-v1")
    _, traj = _run(spec, key, 3, 60, 1)
    term = np.asarray(traj.terminated)
    assert term.any(axis=0).all()
    assert not np.asarray(traj.truncated).any()
    for b in range(3):
        t = int(np.argmax(term[:, b]))
        # The episode lasted t+1 steps, each rewarded 1, and the next one starts afresh.
        assert int(traj.episode_length[t, b]) == t + 1
        assert float(traj.episode_return[t, b]) == t + 1
        assert int(traj.episode_length[t + 1, b]) == 1
        # next_obs is the final (terminal) observation, not the reset one.
        assert abs(float(traj.next_obs[t, b, 2])) > 0.2 or abs(float(traj.next_obs[t, b, 0])) > 2.4
        # ... and the following step starts from a fresh reset state.
        assert np.abs(np.asarray(traj.obs[t + 1, b])).max() <= 0.05


def test_time_limit_is_truncation_not_termination(key):
    # Pendulum never terminates; its 200-step limit is a truncation.
    spec = envs.make_env("Pendulum-v1")
    _, traj = _run(spec, key, 2, 205, 0.0)
    trunc = np.asarray(traj.truncated)
    assert not np.asarray(traj.terminated).any()
    np.testing.assert_array_equal(np.nonzero(trunc[:, 0])[0], [199])
    np.testing.assert_array_equal(traj.episode_length[199], [200, 200])
    # final_observation is the observation the 200th action led to; the next obs is a reset one.
    assert not np.allclose(traj.next_obs[199], traj.obs[200])
    np.testing.assert_allclose(traj.next_obs[198], traj.obs[199])
