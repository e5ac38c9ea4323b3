"""The environment layer: vectorisation, auto-reset, truncation versus termination."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a3c_jax import envs
from a3c_jax.algorithms import rollout


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


def _steps_both_ways(spec, key, num_envs, num_steps):
    """The same random actions and step keys played by gymnax's own `env.step` (keys) and with
    the draws made ahead (`envs.step_draws` over the whole rollout): both transition streams."""
    step_keys = jax.random.split(key, num_steps * num_envs).reshape(num_steps, num_envs, -1)
    action_keys = jax.random.split(jax.random.fold_in(key, 1), num_steps)
    if spec.discrete:
        actions = jax.vmap(lambda k: jax.random.randint(k, (num_envs,), 0, spec.num_actions))
    else:
        actions = jax.vmap(lambda k: jax.random.normal(k, (num_envs, spec.num_actions)))
    actions = actions(action_keys)
    carry = envs.reset(spec, jax.random.fold_in(key, 2), num_envs)

    @functools.partial(jax.jit, static_argnums=0)
    def play(ahead: bool):
        keys = step_keys
        if ahead:
            keys = jax.vmap(lambda k: envs.step_draws(spec, k))(step_keys)

        def body(carry, xs):
            return envs.step_each(spec, xs[0], carry, xs[1])

        return jax.lax.scan(body, carry, (keys, actions))[1]

    return play(False), play(True)


@pytest.mark.parametrize(
    "env_name", ["CartPole-v1", "Breakout-MinAtar", "Catch-bsuite", "MemoryChain-bsuite"]
)
def test_draws_made_ahead_step_exactly_as_gymnax_steps(key, env_name):
    # Random resets (CartPole, Catch), a random step (MinAtar's), an observation of a random
    # context (MemoryChain): the stream of transitions is bitwise gymnax's own.
    spec = envs.make_env(env_name)
    assert envs.steps_as_gymnax(spec)
    by_keys, ahead = _steps_both_ways(spec, key, 4, 300)
    assert int(np.asarray(by_keys.terminated | by_keys.truncated).sum()) > 4  # resets happened
    for name, a, b in zip(by_keys._fields, by_keys, ahead, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_environments_that_step_otherwise_keep_their_own_step(key):
    # DeepSea's own `step` keeps statistics over resets: its keys go to it unchanged.
    spec = envs.make_env("DeepSea-bsuite")
    assert not envs.steps_as_gymnax(spec)
    keys = jax.random.split(key, 3)
    assert envs.step_draws(spec, keys) is keys
    by_keys, ahead = _steps_both_ways(spec, key, 3, 40)
    for name, a, b in zip(by_keys._fields, by_keys, ahead, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
