"""Shared test settings: implicit rank promotion is an error in every test."""

import os

import jax
import pytest

# tests/multidevice needs 4 forced CPU devices, so it runs in a process of its own, started by
# tests/test_parallel.py (which sets A3C_JAX_MULTIDEVICE=1 there).
if os.environ.get("A3C_JAX_MULTIDEVICE") != "1":
    collect_ignore = ["multidevice"]

jax.config.update("jax_numpy_rank_promotion", "raise")
# The same strictness in every process a test starts (the CLI, the launcher, tests/multidevice):
# JAX reads its options from JAX_* environment variables when it is imported.
os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"


@pytest.fixture
def key() -> jax.Array:
    return jax.random.PRNGKey(0)
