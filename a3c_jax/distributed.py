"""Several JAX processes (hosts) as one training run: joining, timing out, who writes.

`jax.distributed.initialize` must run before anything initialises JAX's backend, and importing
gymnax does (it builds arrays at import). So a process that `a3c_jax.launch` started (its
environment holds `A3C_JAX_COORDINATOR`, `A3C_JAX_NUM_PROCESSES`, `A3C_JAX_PROCESS_ID` and
optionally `A3C_JAX_INIT_TIMEOUT`) joins the run when the `a3c-jax` command starts
(`initialize_from_env`, called by `a3c_jax.cli.main.run`), or when a script calls it; importing
`a3c_jax` joins nothing. A process that called `jax.distributed.initialize` itself is left as
it is.

Once joined, `jax.devices()` lists the devices of every process, `Config(num_devices="all")`
trains on all of them (`a3c_jax.training.parallel`), and only `is_output_process()` should write.
This module imports nothing but the standard library, `jax` and `a3c_jax.errors`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import jax
import numpy as np

from a3c_jax import errors
from a3c_jax.errors import ConfigError, ProcessesUnreachableError

ENV_COORDINATOR = "A3C_JAX_COORDINATOR"  # host:port of process 0's coordinator
ENV_NUM_PROCESSES = "A3C_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "A3C_JAX_PROCESS_ID"
ENV_TIMEOUT = "A3C_JAX_INIT_TIMEOUT"  # seconds to wait for all processes to meet
DEFAULT_INIT_TIMEOUT = 60.0
EXIT_UNREACHABLE = errors.EXIT_UNREACHABLE  # a process that could not meet the others in time


def initialize(
    coordinator: str, num_processes: int, process_id: int, timeout: float = DEFAULT_INIT_TIMEOUT
) -> None:
    """`jax.distributed.initialize` for process `process_id` of `num_processes`; process 0
    serves the coordinator at `coordinator` (`host:port`). Call it before any other JAX call.

    If the processes have not all met within `timeout` seconds (no coordinator at that address,
    a process that never started), raises `ProcessesUnreachableError` saying why instead of
    hanging (the command line prints it and exits with status `EXIT_UNREACHABLE`): JAX's own
    time-out aborts with a C++ stack trace, so the join runs in a daemon thread and this one
    gives up first. A library never ends its host process: the caller decides.
    """
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ConfigError(f"process_id={process_id} must lie in [0, num_processes={num_processes})")
    joined = threading.Event()
    failure: list[BaseException] = []

    def join() -> None:
        try:
            jax.distributed.initialize(
                coordinator_address=coordinator,
                num_processes=num_processes,
                process_id=process_id,
                initialization_timeout=int(timeout) + 30,  # we give up first
            )
        except BaseException as error:  # re-raised in the caller's thread
            failure.append(error)
        finally:
            joined.set()

    threading.Thread(target=join, name="a3c_jax-join", daemon=True).start()
    if not joined.wait(timeout):
        role = "serving as the coordinator" if process_id == 0 else "connecting to the coordinator"
        raise ProcessesUnreachableError(
            f"process {process_id} of {num_processes} ({role} at {coordinator}) did not meet "
            f"all {num_processes} processes within {timeout:g} s. Check that every process was "
            "started with the same coordinator address and process count, and that process 0 "
            f"runs and is reachable from here (wait longer: ${ENV_TIMEOUT} or python -m "
            "a3c_jax.launch --timeout)."
        )
    if failure:
        error = failure[0]
        raise ProcessesUnreachableError(
            f"process {process_id} of {num_processes} could not join the run at {coordinator}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
        ) from error


def initialize_from_env() -> bool:
    """Joins the multi-process run that the `A3C_JAX_*` environment variables describe.

    Returns True if this process is (now) part of one; False, doing nothing, when
    `A3C_JAX_COORDINATOR` is not set or JAX's distributed system is already initialised.
    """
    coordinator = os.environ.get(ENV_COORDINATOR)
    if not coordinator or jax.distributed.is_initialized():
        return bool(coordinator)
    try:
        num_processes = int(os.environ[ENV_NUM_PROCESSES])
        process_id = int(os.environ[ENV_PROCESS_ID])
        timeout = float(os.environ.get(ENV_TIMEOUT, DEFAULT_INIT_TIMEOUT))
    except (KeyError, ValueError) as error:
        raise ConfigError(
            f"{ENV_COORDINATOR}={coordinator!r} is set, so {ENV_NUM_PROCESSES} and "
            f"{ENV_PROCESS_ID} must be set to integers too ({error!r})"
        ) from error
    initialize(coordinator, num_processes, process_id, timeout)
    return True


def is_output_process() -> bool:
    """True in the one process that writes outputs: process 0 (the only one when alone)."""
    return jax.process_index() == 0


def fetch(tree: Any) -> Any:
    """`tree`'s arrays as host numpy arrays, in any process: an array replicated over the
    devices of several processes is read from this process's own copy."""

    def one(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError(f"cannot fetch an array split over processes: {x.sharding}")
            return np.asarray(x.addressable_data(0))
        return x

    return jax.tree.map(np.asarray, jax.device_get(jax.tree.map(one, tree)))
