"""A sweep over 2 forced CPU devices (gradient parallelism inside each setting) trains each
setting as plain `jit_train` on 2 devices does."""

import jax
import numpy as np

import a3c_jax


def test_sweep_on_two_devices_equals_plain_training():
    config = a3c_jax.Config(total_timesteps=2048, num_devices=2)
    result = a3c_jax.sweep(config, {"lr": [1e-3, 4e-3]}, num_seeds=2, episodes=0)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    for i, j in [(0, 0), (1, 1)]:
        plain = a3c_jax.jit_train(config.replace(**result.settings[i]))(keys[j])
        mine = jax.tree.map(lambda x, i=i, j=j: x[i, j], result.params)
        for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(mine), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    first, last = (jax.tree.leaves(result.params)[0][i, 0] for i in (0, 1))
    assert float(np.max(np.abs(np.asarray(first) - np.asarray(last)))) > 1e-3
