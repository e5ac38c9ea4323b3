"""Normaliser statistics over 2 forced CPU devices: merged over the device axis, every device
holds the full batch's statistics, and the exported parameters carry one copy of them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import a3c_jax
from a3c_jax.envs import wrappers
from a3c_jax.runs import chunked
from a3c_jax.training import parallel


def test_batch_statistics_are_merged_over_the_device_axis():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 3)) * jnp.array([[1.0, 5.0, 0.1]]) + 2.0
    mesh = parallel.make_mesh(jax.devices()[:2])

    def local(xs):  # each device sees its 8 rows; the result gets a leading axis of 1
        stats = wrappers.update(wrappers.empty_stats((3,)), xs, parallel.AXIS)
        return jax.tree.map(lambda s: s[None], stats)

    out = jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=P(parallel.AXIS), out_specs=P(parallel.AXIS))
    )(x)
    full = np.asarray(x)
    for d in range(2):
        assert float(out.count[d]) == 16
        np.testing.assert_allclose(out.mean[d], full.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.var[d], full.var(0), rtol=1e-4)
    np.testing.assert_array_equal(out.mean[0], out.mean[1])


@pytest.mark.parametrize("backend", ["shard_map", "pmap"])
def test_training_on_two_devices_shares_one_set_of_statistics(backend):
    config = a3c_jax.Config(
        env_name="Pendulum-v1",
        normalize_obs=True,
        normalize_reward=True,
        num_envs=8,
        n_steps=4,
        total_timesteps=8 * 4 * 2,  # 2 updates: the trajectories have not parted yet
        # The preset's gSDE draws its noise from the actor's features, which amplifies the two
        # runs' float rounding after one update (the variance 1.3% apart after two; equal to
        # 1e-7 after one): this test is about the statistics, so plain Gaussian exploration.
        use_sde=False,
        action_bound_coef=0.0,
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 2)  # 2 seeds, vmapped inside the devices
    two = config.replace(num_devices=2, parallel_backend=backend)
    result = a3c_jax.jit_train(two, 2)(keys)
    single = a3c_jax.jit_train(config, 2)(keys)
    state = result.runner_state.env.wrapper_state
    chex_shape = state["normalize_obs"].mean.shape
    assert chex_shape == (2, 2, 3)  # [seeds, devices, O]
    for leaf in jax.tree.leaves(state["normalize_obs"]):
        np.testing.assert_array_equal(leaf[:, 0], leaf[:, 1])  # every device holds the same
    # Each device normalised with the statistics of all 8 environments (its 4 and the other's),
    # those a one-device run keeps: equal up to the runs' float rounding (Adam's first steps
    # turn rounding of tiny gradients into differences of order lr).
    assert np.all(np.asarray(state["normalize_obs"].count) == 8 * (1 + 4 * 2))
    reference = single.runner_state.env.wrapper_state["normalize_obs"]
    np.testing.assert_allclose(
        state["normalize_obs"].mean[:, 0], reference.mean, rtol=5e-3, atol=1e-3
    )
    np.testing.assert_allclose(state["normalize_obs"].var[:, 0], reference.var, rtol=5e-3)
    assert float(reference.count[0]) == 8 * (1 + 4 * 2)  # reset and 8 steps of 8 environments
    # The exported parameters carry one copy per seed: [seeds, O].
    assert result.params[wrappers.OBS_STATS]["mean"].shape == (2, 3)
    params = chunked.policy_params(two, result.runner_state, batched=True)
    np.testing.assert_array_equal(
        params[wrappers.OBS_STATS]["var"], state["normalize_obs"].var[:, 0]
    )
