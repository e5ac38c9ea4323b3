"""Run folders over several devices: chunked training resumes bitwise, and a saved run loads
parameters ready for `evaluate`, under both parallel backends."""

import chex
import jax
import numpy as np
import pytest

import a3c_jax
from a3c_jax.runs import chunked
from a3c_jax.runs.checkpoint_file import flatten_state


@pytest.mark.parametrize("backend", ["shard_map", "pmap"])
def test_resume_over_devices_is_bitwise(tmp_path, backend):
    config = a3c_jax.Config(
        num_envs=4, n_steps=4, total_timesteps=16 * 200, num_devices=2, parallel_backend=backend
    )
    options = {"progress": False, "log": lambda _: None}
    straight = chunked.train_run(config, tmp_path / "a", chunk_updates=50, **options)
    stopped = chunked.train_run(config, tmp_path / "b", chunk_updates=50, stop_after=100, **options)
    resumed = chunked.train_run(config, tmp_path / "b", resume=True, **options)
    assert (straight.status, stopped.status, resumed.status) == ("finished", "stopped", "finished")
    a, b = flatten_state(straight.runner_state), flatten_state(resumed.runner_state)
    assert a.keys() == b.keys()
    for path in a:
        np.testing.assert_array_equal(a[path], b[path], err_msg=path)
    # The saved run loads the parameters in the one-device layout, ready for evaluate, equal to
    # the straight run's; the one-device trainer from them plays the same episodes.
    saved = a3c_jax.load(tmp_path / "b")
    key = jax.random.PRNGKey(0)
    one_device = config.replace(num_devices=1)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        saved.params, jax.eval_shape(a3c_jax.make_train(one_device), key).params
    )
    chex.assert_trees_all_equal(saved.params, a3c_jax.load(tmp_path / "a").params)
    np.testing.assert_array_equal(
        a3c_jax.evaluate(saved.config, saved.params, key, 4),
        a3c_jax.evaluate(one_device, saved.params, key, 4),
    )
