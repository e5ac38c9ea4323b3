"""A Brax environment under gradient parallelism: one a2c update with its 4 environments split
over 2 forced CPU devices equals the update of one device playing all 4."""

import importlib.util

import jax
import numpy as np
import pytest

import a3c_jax

if importlib.util.find_spec("brax") is None:
    pytest.skip('Brax is not installed (pip install "a3c_jax[brax]")', allow_module_level=True)


def test_one_update_is_the_same_on_one_and_two_devices():
    # Clipping off, and Adam's ε large, so that the step is about lr · gradient: rounding
    # differences of the gradient's sum over devices stay rounding differences.
    config = a3c_jax.Config(
        env_name="brax:inverted_pendulum",
        num_envs=4,
        n_steps=8,
        total_timesteps=4 * 8,
        max_grad_norm=float("inf"),
        optimizer_eps=1.0,
        lr=0.1,
        normalize_obs=True,
    )
    key = jax.random.PRNGKey(0)
    single = jax.jit(a3c_jax.make_train(config))(key)
    double = jax.jit(a3c_jax.make_train(config.replace(num_devices=2)))(key)
    # Each environment played the same steps wherever it ran: [D, B/D, O] -> [B, O].
    np.testing.assert_allclose(
        np.asarray(double.runner_state.env.obs).reshape(4, -1),
        single.runner_state.env.obs,
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(double.metrics.total_loss, single.metrics.total_loss, rtol=1e-4)
    assert float(single.metrics.grad_norm[0]) > 1e-3  # the update moved the parameters
    trained = double.runner_state.train_state.params, single.runner_state.train_state.params
    for a, b in zip(*map(jax.tree.leaves, trained), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
