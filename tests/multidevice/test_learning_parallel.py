"""Learning with gradient parallelism: a2c on 2 devices (4 of the 8 environments each) solves
CartPole-v1 as one device does."""

import jax
import numpy as np
import pytest

import a3c_jax

pytestmark = pytest.mark.slow


def test_a2c_on_two_devices_solves_cartpole():
    config = a3c_jax.Config(env_name="CartPole-v1", algo="a2c", num_devices=2)
    result = a3c_jax.jit_train(config)(jax.random.PRNGKey(0))
    returns = np.asarray(
        a3c_jax.evaluate(config, result.params, jax.random.PRNGKey(1000), num_episodes=100)
    )
    assert returns.mean() >= 475.0, returns.mean()
