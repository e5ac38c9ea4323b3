"""Gradient parallelism: one training loop on each of `D` devices, one gradient step on all.

With `Config(num_devices=D)` every device holds a copy of the parameters and optimiser state and
runs `num_envs / D` of the environments (environment `i` draws from `envs.env_keys(key, i)`
wherever it runs); each device computes the gradient of its own share of the batch, and the
gradients (and loss metrics) are averaged over the device axis (`optim.compute_gradients`) before
every device applies the same optimiser step. One update on `D` devices is therefore the update
of one device with all `num_envs` environments, to float32 rounding (`tests/multidevice`).

Two backends map the per-device loop (`train.make_trainer`'s) over the devices:

- `"shard_map"` (the default): `jax.shard_map` over a one-axis `Mesh`. Parameters, optimiser
  state, keys and metrics are replicated global arrays (`P()`: one logical value, a copy on each
  device). It runs over several processes too.
- `"pmap"`: `jax.pmap`, as the design card asks. Inside, every leaf carries a leading device
  axis (replicated values as `D` copies, `pmap_run`); the trainer hands out device 0's copy of
  the replicated values, so both backends have the same `RunnerState` layout (and checkpoints).
  One process only: in JAX 0.10, a pmap under `jit` reduces over its own process's devices.

The per-device code is written as for `pmap`: `shard_map` runs with `check_vma=False`, because
an environment reset inside the loop makes constant leaves (an episode's step counter) that JAX
would type as device-invariant and the loop carry as varying. `compute_gradients` is right under
either typing (it casts the parameters to device-varying before differentiating).

In both, the per-device parts of the `RunnerState` (`env`, `algo_state`) have a leading device
axis `[D, ...]`; `TrainResult.params`, `opt_state` and `metrics` have the shapes of a one-device
run. Seeds (`vmap` of the trainer, or `jit_train(config, num_seeds)`) go inside the devices:
each device trains every seed on its share of the environments; arrays put the seed axis first
(`[S, D, ...]` for per-device state).

Several processes (hosts) form one run after `a3c_jax.distributed.initialize` (`a3c_jax.launch`):
`num_devices` then counts the devices of all processes, each process runs the environments of
its own devices, gradients are averaged over all of them, and only process 0 should write outputs
(`a3c_jax.distributed.is_output_process`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh
from jax.sharding import PartitionSpec as P

from a3c_jax.config import Config, ConfigError, registry
from a3c_jax.core.types import (
    RUNNER_PER_DEVICE_FIELDS,
    PRNGKey,
    RunnerState,
    Trainer,
    TrainResult,
    UpdateMetrics,
)

AXIS = "devices"  # the name of the device axis in collectives (lax.pmean(x, AXIS))

# Config fields that size the whole batch: each device gets its `1/D` share, exactly for the
# environments (num_envs must divide); an algorithm's own buffers (its registry entry's
# `per_device_rounded_up`: ac_replay's replay buffer) rounded up.
PER_DEVICE_FIELDS = ("num_envs",)


def num_devices(config: Config) -> int:
    """The number of devices `config` trains on, checked against the devices that exist.

    Called when a trainer is built (a `Config` may be made before JAX knows its devices, and
    before `jax.distributed.initialize`), and before anything compiles. Raises `ConfigError`
    when more devices are asked for than exist, when `num_envs` does not split evenly over them,
    or when a run over several processes does not use the same number of devices on each.
    """
    requested = config.num_devices
    processes = jax.process_count()
    if requested == 1 and processes == 1:
        return 1  # the default path: no device query
    available = jax.device_count()
    count = available if requested == "all" else int(requested)
    if count > available:
        where = f" over {processes} processes" if processes > 1 else ""
        raise ConfigError(
            f"num_devices={requested!r} asks for more devices than exist: JAX sees {available} "
            f"{jax.default_backend()} device(s){where} ({jax.devices()}). Use num_devices <= "
            f"{available} or 'all'. On CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N "
            "before JAX is imported to split the CPU into N devices."
        )
    if processes > 1 and config.parallel_backend == "pmap":
        raise ConfigError(
            f"parallel_backend='pmap' runs within one process; this run has {processes}. "
            "Use parallel_backend='shard_map' (the default) across processes: in JAX 0.10, "
            "pmap under jit reduces over the devices of its own process only."
        )
    if count % processes:
        raise ConfigError(
            f"num_devices={requested!r}: a run over {processes} processes needs a multiple of "
            f"{processes} devices, the same number on each process (use num_devices='all')"
        )
    if count > processes * jax.local_device_count():
        raise ConfigError(
            f"num_devices={count} needs {count // processes} devices on each of {processes} "
            f"processes; this process has {jax.local_device_count()}"
        )
    _check_divisible(config, count)
    return count


def _check_divisible(config: Config, count: int) -> None:
    for name in PER_DEVICE_FIELDS:
        value = getattr(config, name)
        if value % count:
            raise ConfigError(
                f"{name}={value} is not divisible by num_devices={count}: each device runs "
                f"{name} / num_devices of them; use a multiple of {count}"
            )


def device_config(config: Config, count: int) -> Config:
    """The configuration one of `count` devices runs: its share of `PER_DEVICE_FIELDS` (and of
    its algorithm's `per_device_rounded_up` fields, rounded up)."""
    _check_divisible(config, count)
    rounded_up = registry.get(config.algo).per_device_rounded_up
    share = {name: getattr(config, name) // count for name in PER_DEVICE_FIELDS}
    share |= {name: -(-getattr(config, name) // count) for name in rounded_up}
    return config.replace(num_devices=1, **share)


def select_devices(count: int) -> list[jax.Device]:
    """`count` devices, the same number from each process, ordered by process (so that the
    environments of one process are contiguous)."""
    processes = jax.process_count()
    per_process = count // processes
    by_process: dict[int, list[jax.Device]] = {}
    for device in jax.devices():
        by_process.setdefault(device.process_index, []).append(device)
    return [d for p in sorted(by_process) for d in by_process[p][:per_process]]


def device_index(axis_name: str | None) -> jax.Array | int:
    """This device's index on `axis_name` (0 when there is no device axis)."""
    return 0 if axis_name is None else jax.lax.axis_index(axis_name)


def spread(trainer: Trainer, config: Config, count: int) -> Trainer:
    """The per-device `trainer` (built with `optim`'s `axis_name=AXIS` and its device's share of
    the environments) mapped over `count` devices with `config.parallel_backend`."""
    devices = select_devices(count)
    if config.parallel_backend == "pmap":
        return _spread_pmap(trainer, devices)
    return _spread_shard_map(trainer, devices)


PER_DEVICE = RUNNER_PER_DEVICE_FIELDS  # the RunnerState fields with a leading device axis [D, ...]


def _map_per_device(fn: Callable[[jax.Array], jax.Array], runner: RunnerState) -> RunnerState:
    """`fn` applied to every leaf of the per-device fields of `runner`."""
    return runner._replace(**{name: jax.tree.map(fn, getattr(runner, name)) for name in PER_DEVICE})


def _add_device_axis(runner: RunnerState) -> RunnerState:
    """Inside a device: gives the per-device parts (`types.RUNNER_PER_DEVICE_FIELDS`) a leading
    axis of 1, which the mapping concatenates into `[D, ...]`."""
    return _map_per_device(lambda x: x[None], runner)


def _drop_device_axis(runner: RunnerState) -> RunnerState:
    return _map_per_device(lambda x: x[0], runner)


# Replicated parts: P(); per-device parts: split on their leading device axis.
_RUNNER_SPECS = RunnerState(*(P(AXIS) if f in PER_DEVICE else P() for f in RunnerState._fields))
_RESULT_SPECS = TrainResult(P(), P(), P(), _RUNNER_SPECS)


def make_mesh(devices: Sequence[jax.Device]) -> Mesh:
    """A one-axis mesh (`AXIS`) over `devices`, in the automatic (pre-0.8) sharding mode."""
    return Mesh(np.asarray(devices), (AXIS,), axis_types=(AxisType.Auto,))


def _spread_shard_map(trainer: Trainer, devices: Sequence[jax.Device]) -> Trainer:
    mesh = make_mesh(devices)

    def shard(fn: Callable, in_specs: Any, out_specs: Any) -> Callable:
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)

    def init(key: PRNGKey) -> RunnerState:
        return shard(lambda k: _add_device_axis(trainer.init(k)), P(), _RUNNER_SPECS)(key)

    def run(
        runner: RunnerState, num_updates: int, until: Any = None
    ) -> tuple[RunnerState, UpdateMetrics]:
        if until is None:
            until = jnp.iinfo(jnp.int32).max  # the trainer caps it at its budget

        def local(r: RunnerState, u: jax.Array) -> tuple[RunnerState, UpdateMetrics]:
            r, metrics = trainer.run(_drop_device_axis(r), num_updates, u)
            return _add_device_axis(r), metrics

        until = jnp.asarray(until, jnp.int32)
        return shard(local, (_RUNNER_SPECS, P()), (_RUNNER_SPECS, P()))(runner, until)

    def train(key: PRNGKey) -> TrainResult:
        def local(k: PRNGKey) -> TrainResult:
            result = trainer.train(k)
            return result._replace(runner_state=_add_device_axis(result.runner_state))

        return shard(local, P(), _RESULT_SPECS)(key)

    return trainer._replace(init=init, run=run, train=train)


def _first(tree: Any) -> Any:
    return jax.tree.map(lambda x: x[0], tree)


def _with_copies(runner: RunnerState, count: int) -> RunnerState:
    """The replicated fields of `runner` as `count` copies `[count, ...]` (pmap's layout)."""
    return runner._replace(
        **{
            name: jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *jnp.shape(x))), value)
            for name, value in runner._asdict().items()
            if name not in PER_DEVICE
        }
    )


def _without_copies(runner: RunnerState) -> RunnerState:
    """The replicated fields of a pmap `runner` as one value (device 0's copy: they are all
    bitwise equal, `tests/multidevice`); per-device fields keep their device axis."""
    replicated = {k: v for k, v in runner._asdict().items() if k not in PER_DEVICE}
    return runner._replace(**{name: _first(value) for name, value in replicated.items()})


def pmap_run(trainer: Trainer, devices: Sequence[jax.Device]) -> Callable:
    """The per-device `trainer.run` under `jax.pmap`, as it is: `run(runner, num_updates,
    until)` with every leaf of `runner` (and `until`) carrying a leading device axis, and every
    leaf of the result too (each device's own copy of the replicated values)."""
    return jax.pmap(trainer.run, axis_name=AXIS, devices=devices, static_broadcasted_argnums=(1,))


def _spread_pmap(trainer: Trainer, devices: Sequence[jax.Device]) -> Trainer:
    local_count = sum(d.process_index == jax.process_index() for d in devices)
    raw_run = pmap_run(trainer, devices)

    def pmap(fn: Callable) -> Callable:
        return jax.pmap(fn, axis_name=AXIS, devices=devices)

    def copies(key: PRNGKey) -> jax.Array:
        return jnp.broadcast_to(key, (local_count, *jnp.shape(key)))

    def init(key: PRNGKey) -> RunnerState:
        return _without_copies(pmap(trainer.init)(copies(key)))

    def run(
        runner: RunnerState, num_updates: int, until: Any = None
    ) -> tuple[RunnerState, UpdateMetrics]:
        if until is None:
            until = jnp.iinfo(jnp.int32).max  # the trainer caps it at its budget
        until = copies(jnp.asarray(until, jnp.int32))
        runner, metrics = raw_run(_with_copies(runner, local_count), num_updates, until)
        return _without_copies(runner), _first(metrics)

    def train(key: PRNGKey) -> TrainResult:
        result = pmap(trainer.train)(copies(key))
        return TrainResult(
            _first(result.params),
            _first(result.opt_state),
            _first(result.metrics),
            _without_copies(result.runner_state),
        )

    return trainer._replace(init=init, run=run, train=train)
