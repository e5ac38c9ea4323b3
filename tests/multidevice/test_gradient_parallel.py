"""Gradient parallelism on 4 forced CPU devices: D devices with num_envs/D environments each
give the update of one device with all num_envs, and replicas stay bitwise equal."""

import functools
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import multihost_worker
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import a3c_jax
from a3c_jax import Config, ConfigError, envs
from a3c_jax.algorithms.actor_critic import nstep_collect, nstep_loss
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.algorithms.optim import compute_gradients
from a3c_jax.training import parallel
from a3c_jax.training.loop import _make_device_trainer

BACKENDS = ("shard_map", "pmap")
# Clipping off, so that the gradient's scale reaches the parameters.
SMALL = Config(num_envs=8, n_steps=5, total_timesteps=8 * 5 * 100, max_grad_norm=float("inf"))


def _max_abs_diff(a, b) -> float:
    diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
    return max(jax.tree.leaves(diffs))


def _on_devices(fn, count, backend, batch_specs, check_vma=False):
    """`fn(params, *batch)` on `count` devices over `parallel.AXIS`: params replicated, each
    batch leaf split on the axis `batch_specs` names (its per-device part keeps that axis)."""
    devices = jax.devices()[:count]
    if backend == "shard_map":
        mesh = parallel.make_mesh(devices)
        mapped = jax.shard_map(
            fn,
            mesh=mesh,
            in_specs=(P(), *batch_specs),
            out_specs=P(),
            check_vma=check_vma,
        )
        return jax.jit(mapped)

    def split(tree, spec):  # leaves [..., B, ...] -> [D, ..., B/D, ...]
        axis = spec.index(parallel.AXIS)
        return jax.tree.map(lambda x: jnp.stack(jnp.split(x, count, axis=axis)), tree)

    def run(params, *batch):
        batch = [split(b, spec) for b, spec in zip(batch, batch_specs, strict=True)]
        out = jax.pmap(fn, parallel.AXIS, in_axes=(None, *[0] * len(batch)), devices=devices)(
            params, *batch
        )
        return jax.tree.map(lambda x: x[0], out)

    return run


@pytest.fixture(scope="module")
def rollout_batch():
    """A real a2c rollout of 8 environments: params, transitions [T, B] and next values."""
    spec = envs.make_env(SMALL.env_name)
    networks = make_networks(SMALL, spec)
    key = jax.random.PRNGKey(3)
    params = networks.init(key)
    carry = envs.reset(spec, key, SMALL.num_envs)
    collect = jax.jit(functools.partial(nstep_collect, spec, networks, SMALL))
    _, traj, next_values = collect(params, carry, key)
    loss_fn = functools.partial(nstep_loss, config=SMALL, networks=networks)
    return loss_fn, params, traj, next_values


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("count", [2, 4])
def test_gradient_mean_equals_whole_batch(rollout_batch, backend, count):
    loss_fn, params, traj, next_values = rollout_batch
    whole, whole_metrics = jax.jit(functools.partial(compute_gradients, loss_fn))(
        params, traj, next_values
    )

    def local(params, traj, next_values):
        return compute_gradients(loss_fn, params, traj, next_values, axis_name=parallel.AXIS)

    # Time-major [T, B]: the environments (axis 1) are split.
    split = P(None, parallel.AXIS)
    grads, metrics = _on_devices(local, count, backend, (split, split))(params, traj, next_values)
    assert _max_abs_diff(grads, whole) < 1e-6
    for name in ("total_loss", "actor_loss", "critic_loss", "entropy", "grad_norm"):
        np.testing.assert_allclose(metrics[name], whole_metrics[name], rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_advantages_are_normalised_per_device(rollout_batch, backend):
    """normalize_advantages takes its batch statistics on each device: the 2-device gradient is
    the mean of each half's gradient with the half normalised alone, not the whole batch's."""
    _, params, traj, next_values = rollout_batch
    config = SMALL.replace(normalize_advantages=True)
    networks = make_networks(config, envs.make_env(config.env_name))
    loss_fn = functools.partial(nstep_loss, config=config, networks=networks)
    gradients = jax.jit(functools.partial(compute_gradients, loss_fn))

    def local(params, traj, next_values):
        return compute_gradients(loss_fn, params, traj, next_values, axis_name=parallel.AXIS)

    split = P(None, parallel.AXIS)
    grads, _ = _on_devices(local, 2, backend, (split, split))(params, traj, next_values)
    halves = [
        gradients(params, *jax.tree.map(lambda x, s=s: x[:, s], (traj, next_values)))[0]
        for s in (slice(0, 4), slice(4, 8))
    ]
    expected = jax.tree.map(lambda a, b: (a + b) / 2, *halves)
    assert _max_abs_diff(grads, expected) < 1e-6
    assert _max_abs_diff(grads, gradients(params, traj, next_values)[0]) > 1e-4


def test_gradient_mean_under_checked_shard_map(rollout_batch):
    """With shard_map's default check_vma=True the gradient of replicated parameters would
    arrive summed over devices; compute_gradients must still give the mean."""
    loss_fn, params, traj, next_values = rollout_batch
    whole, _ = jax.jit(functools.partial(compute_gradients, loss_fn))(params, traj, next_values)

    def local(params, traj, next_values):
        return compute_gradients(loss_fn, params, traj, next_values, axis_name=parallel.AXIS)[0]

    split = P(None, parallel.AXIS)
    grads = _on_devices(local, 4, "shard_map", (split, split), check_vma=True)(
        params, traj, next_values
    )
    assert _max_abs_diff(grads, whole) < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_unequal_device_batches_weigh_by_samples(backend):
    """Masked means over devices with different numbers of valid samples average, weighted by
    those numbers, to the masked mean of the whole batch (episodic algorithms)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 3))
    valid = jnp.arange(16) % 8 < jnp.array([1, 7]).repeat(8)  # 1 valid sample here, 7 there

    def loss_fn(w, x, valid):
        per_sample = jnp.sum(jnp.tanh(x * w[None]) ** 2, axis=-1)
        loss = jnp.sum(per_sample * valid) / jnp.sum(valid)
        return loss, {"total_loss": loss}

    w = jnp.array([0.5, -1.0, 2.0])
    whole, _ = compute_gradients(loss_fn, w, x, valid)

    def local(w, x, valid):
        return compute_gradients(
            loss_fn, w, x, valid, axis_name=parallel.AXIS, weight=jnp.sum(valid)
        )[0]

    split = P(parallel.AXIS)
    grads = _on_devices(local, 2, backend, (split, split))(w, x, valid)
    np.testing.assert_allclose(grads, whole, rtol=1e-5)
    plain = _on_devices(
        lambda w, x, valid: compute_gradients(loss_fn, w, x, valid, axis_name=parallel.AXIS)[0],
        2,
        backend,
        (split, split),
    )(w, x, valid)
    assert not np.allclose(plain, whole, rtol=1e-3)  # an unweighted mean would be wrong here


class Stepper:
    """A trainer's `init` and a one-update `run`, each compiled once, for stepping a run.

    `pmap_copies`: the pmap backend's per-device loop as `parallel.pmap_run` runs it, every leaf
    of the runner with its device axis (each device's own copy of the replicated values, which
    the public trainer reduces to device 0's)."""

    def __init__(self, config, pmap_copies=False):
        if not pmap_copies:
            trainer = a3c_jax.make_trainer(config)
            self.init = jax.jit(trainer.init)
            self.step = jax.jit(lambda runner: trainer.run(runner, 1))
            return
        count, devices = config.num_devices, jax.devices()[: config.num_devices]
        local = parallel.device_config(config, count)
        device_trainer = _make_device_trainer(config, local, parallel.AXIS)
        init = jax.pmap(device_trainer.init, parallel.AXIS, devices=devices)
        run = parallel.pmap_run(device_trainer, devices)
        until = jnp.full((count,), 1 << 30, jnp.int32)
        self.init = lambda key: init(jnp.broadcast_to(key, (count, *key.shape)))

        def step(runner):
            runner, metrics = run(runner, 1, until)
            return runner, jax.tree.map(lambda x: x[0], metrics)

        self.step = step

    def updates(self, key, count):
        """The runner and metrics `[1]` after each of `count` updates from `init(key)`."""
        runner, out = self.init(key), []
        for _ in range(count):
            runner, metrics = self.step(runner)
            out.append((runner, metrics))
        return out


UPDATES = 4


@pytest.fixture(scope="module")
def one_device_updates():
    return Stepper(SMALL.replace(max_grad_norm=0.5)).updates(jax.random.PRNGKey(7), UPDATES)


def _replicas(tree, backend):
    """Each device's own copy of every leaf of a replicated tree: leaves `[D, ...]`."""
    if backend == "pmap":
        return jax.tree.map(np.asarray, tree)
    return jax.tree.map(
        lambda x: np.stack([np.asarray(s.data) for s in x.addressable_shards]), tree
    )


def _assert_same_update(metrics, ref_metrics, fields=("total_loss", "actor_loss", "critic_loss")):
    for field in ("grad_norm", "entropy", *fields):
        np.testing.assert_allclose(
            getattr(metrics, field), getattr(ref_metrics, field), rtol=1e-5, err_msg=field
        )
    for field in ("env_steps", "episodes", "episode_return", "learning_rate"):
        np.testing.assert_array_equal(getattr(metrics, field), getattr(ref_metrics, field))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("count", [2, 4])
def test_updates_equal_one_device_and_replicas_stay_equal(one_device_updates, backend, count):
    config = SMALL.replace(max_grad_norm=0.5, num_devices=count, parallel_backend=backend)
    updates = Stepper(config, pmap_copies=backend == "pmap").updates(jax.random.PRNGKey(7), UPDATES)
    (runner, metrics), (ref_runner, ref_metrics) = updates[0], one_device_updates[0]
    replicas = _replicas(runner.train_state, backend)
    params = jax.tree.map(lambda x: x[0], replicas.params)
    # One update: the same new parameters, to float32 rounding ...
    assert _max_abs_diff(params, ref_runner.train_state.params) < 1e-6
    # ... from the same gradient (its norm before clipping), losses and episode figures.
    _assert_same_update(metrics, ref_metrics)
    # The environments played the same steps: the per-device carries [D, B/D, ...] are the
    # whole batch's [B, ...], split.
    obs = np.asarray(runner.env.obs).reshape(SMALL.num_envs, -1)
    np.testing.assert_array_equal(obs, np.asarray(ref_runner.env.obs))
    np.testing.assert_array_equal(np.ravel(runner.env.env_id), np.arange(SMALL.num_envs))
    # Several updates: every device's copy of the parameters and optimiser state is bitwise
    # the same, and still the one device's (to rounding).
    (runner, metrics), (ref_runner, ref_metrics) = updates[-1], one_device_updates[-1]
    replicas = _replicas(runner.train_state, backend)
    for leaf in jax.tree.leaves(replicas):
        assert leaf.shape[0] == count
        for copy in leaf[1:]:
            np.testing.assert_array_equal(copy, leaf[0])
    assert int(replicas.update_step[0]) == UPDATES
    params = jax.tree.map(lambda x: x[0], replicas.params)
    assert _max_abs_diff(params, ref_runner.train_state.params) < 1e-5
    assert _max_abs_diff(params, updates[0][0].train_state.params) > 1e-3  # they did move
    np.testing.assert_allclose(metrics.grad_norm, ref_metrics.grad_norm, rtol=1e-4)


def test_episodic_algorithm_updates_as_one_device():
    """`da2c` on 2 devices: the devices' episodes have different lengths, and its gradient is
    still the mean over the valid steps of all of them (each device's mean weighted by its
    step count), as on one device. (`online_ac` and `nstep_da2c` are `a2c`'s code.)"""
    config = Config(algo="da2c", num_envs=4, total_timesteps=4 * 500 * 3)
    key = jax.random.PRNGKey(2)
    ((ref_runner, ref_metrics),) = Stepper(config).updates(key, 1)
    ((runner, metrics),) = Stepper(config.replace(num_devices=2)).updates(key, 1)
    assert _max_abs_diff(runner.train_state.params, ref_runner.train_state.params) < 1e-6
    _assert_same_update(metrics, ref_metrics, fields=("total_loss",))


def test_replay_algorithm_on_two_devices():
    """ac_replay keeps one buffer per device (its own environments' steps, half the capacity)
    and samples from it; the step counts, losses and replicas stay global."""
    config = Config(
        algo="ac_replay",
        num_envs=4,
        total_timesteps=4 * 500 * 3,
        replay_capacity=1000,
        replay_batch_size=64,
        num_devices=2,
    )
    # Each device samples its share of the minibatch (rounded up) from its share of the buffer.
    local = parallel.device_config(config, 2)
    assert (local.num_envs, local.replay_capacity, local.replay_batch_size) == (2, 500, 32)
    odd = parallel.device_config(config.replace(replay_capacity=1001, replay_batch_size=65), 2)
    assert (odd.replay_capacity, odd.replay_batch_size) == (501, 33)
    trainer = a3c_jax.make_trainer(config)
    runner, metrics = jax.jit(lambda k: trainer.run(trainer.init(k), 3))(jax.random.PRNGKey(0))
    buffer = runner.algo_state
    chex.assert_shape(buffer.data.reward, (2, 500))  # [devices, capacity / devices]
    # Each device's buffer holds its own environments' valid steps: together, all of them.
    np.testing.assert_array_equal(np.sum(buffer.size), metrics.env_steps[-1])
    assert np.all(np.isfinite(metrics.total_loss))
    for leaf in jax.tree.leaves(_replicas(runner.train_state, "shard_map")):
        for copy in leaf[1:]:
            np.testing.assert_array_equal(copy, leaf[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeds_vmapped_inside_devices(one_device_updates, backend):
    """`vmap` over seeds of a 2-device trainer (as `jit_train(config, num_seeds)` does): each
    seed trains as it would alone on one device."""
    config = SMALL.replace(max_grad_norm=0.5, num_devices=2, parallel_backend=backend)
    trainer = a3c_jax.make_trainer(config)
    keys = jnp.stack([jax.random.PRNGKey(7), jax.random.PRNGKey(8)])
    runner, metrics = jax.jit(jax.vmap(lambda k: trainer.run(trainer.init(k), UPDATES)))(keys)
    chex.assert_shape(metrics.total_loss, (2, UPDATES))
    chex.assert_shape(runner.env.obs, (2, 2, SMALL.num_envs // 2, 4))  # [seeds, devices, ...]
    params = runner.train_state.params  # both backends: one copy, [seeds, ...]
    ref_runner, _ = one_device_updates[-1]
    assert _max_abs_diff(jax.tree.map(lambda x: x[0], params), ref_runner.train_state.params) < 1e-5
    np.testing.assert_allclose(
        metrics.total_loss[0], [m.total_loss[0] for _, m in one_device_updates], rtol=1e-5
    )
    kernels = np.asarray(params["params"]["actor_head"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1])  # the seeds differ


def test_run_folder_checkpoint_and_resume_on_devices(one_device_updates, tmp_path):
    """The user's workflow (`a3c_jax.runs.chunked`, `a3c-jax train --out/--resume`) on 2 devices
    with pmap, whose runner layout is the one-device layout plus a device axis on the environments:
    stopped after 2 updates, resumed to 4, it ends with the one device's parameters."""
    from a3c_jax.runs import chunked

    config = SMALL.replace(max_grad_norm=0.5, num_devices=2, parallel_backend="pmap")
    quiet = {"progress": False, "log": lambda message: None, "chunk_updates": 2, "seed": 7}
    first = chunked.train_run(config, tmp_path / "run", stop_after=2, **quiet)
    assert first.status == "stopped" and first.update == 2
    second = chunked.train_run(
        config, tmp_path / "run", resume=True, stop_after=UPDATES - 2, **quiet
    )
    assert second.update == UPDATES
    saved = chunked.load(tmp_path / "run")
    chex.assert_shape(saved.runner_state.env.obs, (2, SMALL.num_envs // 2, 4))
    ref_runner, _ = one_device_updates[-1]
    assert _max_abs_diff(saved.params, ref_runner.train_state.params) < 1e-5


def test_device_count_errors_before_compiling():
    with pytest.raises(ConfigError, match=r"num_devices=8 asks for more devices than exist"):
        a3c_jax.make_trainer(SMALL.replace(num_devices=8))
    with pytest.raises(ConfigError, match=r"num_envs=6 is not divisible by num_devices=4"):
        a3c_jax.make_trainer(SMALL.replace(num_envs=6, num_devices="all"))
    assert parallel.num_devices(SMALL.replace(num_devices="all")) == 4


# --- Several processes ------------------------------------------------------------------------

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")


def test_two_processes_train_as_one(tmp_path):
    """2 local processes (loopback, 1 CPU device each) with 2 environments each end with
    identical parameters, equal to one process with all 4 environments (shard_map; pmap refuses
    to run over processes)."""
    out = tmp_path / "multihost"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "A3C_JAX_MULTIDEVICE")}
    command = [sys.executable, "-m", "a3c_jax.launch", "--num-processes", "2", "--timeout", "120"]
    done = subprocess.run(
        [*command, "--script", WORKER, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one_process = multihost_worker.CONFIG.replace(num_devices=1)
    ref = jax.jit(a3c_jax.make_train(one_process))(jax.random.PRNGKey(multihost_worker.KEY))
    per_process = [dict(np.load(out / f"params_process{i}.npz")) for i in range(2)]
    assert per_process[0].keys() == per_process[1].keys()
    for name, value in per_process[0].items():
        np.testing.assert_array_equal(value, per_process[1][name], err_msg=name)
    ref_leaves = {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(ref.params)
    }
    assert ref_leaves.keys() == per_process[0].keys()
    for name, value in ref_leaves.items():
        np.testing.assert_allclose(per_process[0][name], value, atol=1e-5, err_msg=name)
    # Only process 0 wrote the report; it saw both processes' devices and the same losses.
    assert sorted(p.name for p in out.glob("report*")) == ["report.json"]
    report = json.loads((out / "report.json").read_text())
    assert len(report["devices"]) == 2
    np.testing.assert_allclose(report["total_loss"], ref.metrics.total_loss, rtol=1e-5)
    assert "parallel_backend='pmap' runs within one process" in report["pmap_error"]


def test_recurrent_policy_on_two_devices_trains_as_one():
    """A recurrent (LSTM) a2c on 2 devices: each device carries the hidden state of its own
    environments (`[D, B/D, H]`, split with them), and the run is the one-device run."""
    config = SMALL.replace(
        recurrent="lstm", recurrent_size=8, hidden_sizes=(16,), total_timesteps=8 * 5 * 4
    )
    key = jax.random.PRNGKey(3)
    one = jax.jit(a3c_jax.make_train(config))(key)
    two = jax.jit(a3c_jax.make_train(config.replace(num_devices=2)))(key)
    assert _max_abs_diff(two.params, one.params) < 1e-5
    c, h = two.runner_state.env.core_state.actor
    chex.assert_shape(h, (2, SMALL.num_envs // 2, 8))
    np.testing.assert_allclose(
        np.asarray(h).reshape(SMALL.num_envs, 8),
        np.asarray(one.runner_state.env.core_state.actor[1]),
        atol=1e-5,
    )
    assert float(np.max(np.abs(c))) > 0.0
