"""Tests that need several devices: run in their own process, with 4 forced CPU devices.

`tests/test_parallel.py` runs this directory in a subprocess (so that every other test keeps one
device); to run it directly:

    A3C_JAX_MULTIDEVICE=1 python -m pytest tests/multidevice

XLA reads `XLA_FLAGS` when JAX's backend starts, which has not happened yet when pytest imports
this file (nothing has computed anything), so setting it here is in time.
"""

import os

import pytest

NUM_DEVICES = 4
_FLAG = f"--xla_force_host_platform_device_count={NUM_DEVICES}"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

import jax  # noqa: E402


def pytest_sessionstart(session: pytest.Session) -> None:
    if jax.device_count() < NUM_DEVICES:
        raise pytest.UsageError(
            f"tests/multidevice needs {NUM_DEVICES} devices, JAX sees {jax.devices()}: JAX's "
            "backend started before XLA_FLAGS was set; run this directory on its own"
        )
