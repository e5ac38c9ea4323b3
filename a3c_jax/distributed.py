"""Several JAX processes (hosts) as one training run: joining, timing out, who writes.

`jax.distributed.initialize` must run before anything initialises JAX's backend, and importing
gymnax does (it builds arrays at import). So a process that `a3c_jax.launch` started (its
environment holds `A3C_JAX_COORDINATOR`, `A3C_JAX_NUM_PROCESSES`, `A3C_JAX_PROCESS_ID` and
optionally `A3C_JAX_INIT_TIMEOUT`) joins the run when it first imports `a3c_jax`
(`initialize_from_env`, called by `a3c_jax/__init__.py` before it imports anything else). A
process that called `jax.distributed.initialize` itself is left as it is.

Once joined, `jax.devices()` lists the devices of every process, `Config(num_devices="all")`
trains on all of them (`a3c_jax.training.parallel`), and only `is_output_process()` should write.
This module imports nothing but the standard library and `jax`.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import jax
import numpy as np

ENV_COORDINATOR = "A3C_JAX_COORDINATOR"  # host:port of process 0's coordinator
ENV_NUM_PROCESSES = "A3C_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "A3C_JAX_PROCESS_ID"
ENV_TIMEOUT = "A3C_JAX_INIT_TIMEOUT"  # seconds to wait for all processes to meet
DEFAULT_INIT_TIMEOUT = 60.0
EXIT_UNREACHABLE = 3  # exit status of a process that could not meet the others in time


def initialize(
    coordinator: str, num_processes: int, process_id: int, timeout: float = DEFAULT_INIT_TIMEOUT
) -> None:
    """`jax.distributed.initialize` for process `process_id` of `num_processes`; process 0
    serves the coordinator at `coordinator` (`host:port`). Call it before any other JAX call.

    If the processes have not all met within `timeout` seconds (no coordinator at that address,
    a process that never started), prints why to stderr and ends this process with status
    `EXIT_UNREACHABLE` instead of hanging: JAX's own time-out aborts with a C++ stack trace, so a
    watchdog thread gives up first.
    """
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} must lie in [0, num_processes={num_processes})")

    def give_up() -> None:
        role = "serving as the coordinator" if process_id == 0 else "connecting to the coordinator"
        print(
            f"a3c_jax: error: process {process_id} of {num_processes} ({role} at {coordinator}) "
            f"did not meet all {num_processes} processes within {timeout:g} s. Check that every "
            "process was started with the same coordinator address and process count, and that "
            f"process 0 runs and is reachable from here (wait longer: ${ENV_TIMEOUT} or "
            "python -m a3c_jax.launch --timeout).",
            file=sys.stderr,
            flush=True,
        )
        os._exit(EXIT_UNREACHABLE)

    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=int(timeout) + 30,  # the watchdog fires first
        )
    finally:
        watchdog.cancel()


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
        raise ValueError(
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
