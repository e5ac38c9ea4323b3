"""Run folders over several devices: chunked training resumes bitwise, and a saved run loads
parameters ready for `evaluate`, under both parallel backends."""

import jax
import numpy as np
import pytest

import a3c_jax
from a3c_jax import runs
from a3c_jax.checkpoint import flatten_state


@pytest.mark.parametrize("backend", ["shard_map", "pmap"])
def test_resume_over_devices_is_bitwise(tmp_path, backend):
    config = a3c_jax.Config(
        num_envs=4, n_steps=4, total_timesteps=16 * 200, num_devices=2, parallel_backend=backend
    )
    options = {"progress": False, "log": lambda _: None}
    straight = runs.train_run(config, tmp_path / "a", chunk_updates=50, **options)
    stopped = runs.train_run(config, tmp_path / "b", chunk_updates=50, stop_after=100, **options)
    resumed = runs.train_run(config, tmp_path / "b", resume=True, **options)
    assert (straight.status, stopped.status, resumed.status) == ("finished", "stopped", "finished")
    a, b = flatten_state(straight.runner_state), flatten_state(resumed.runner_state)
    assert a.keys() == b.keys()
    for path in a:
        np.testing.assert_array_equal(a[path], b[path], err_msg=path)
    saved = a3c_jax.load(tmp_path / "b")
    returns = a3c_jax.evaluate(saved.config, saved.params, jax.random.PRNGKey(0), 2)
    assert returns.shape == (2,) and np.all(returns >= 1)
