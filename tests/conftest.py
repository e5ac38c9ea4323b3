"""Shared test settings: implicit rank promotion is an error in every test."""

import os
import signal

import jax
import pytest

from a3c_jax.training import xla

# JAX's CPU computations run inline in the tests, as in the `a3c-jax` command (which calls this
# first thing; importing a3c_jax does not), before any computation starts JAX's CPU client.
xla.prefer_inline_dispatch()

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


# pytest-xdist hands out whole files (`--dist loadfile`) in collection order: the files that take
# longest start first, so that none of them is left to run alone at the end.
SLOWEST_FILES = ("test_parallel.py", "test_learning.py", "test_brax.py", "test_recurrent.py")
# Ray's clusters start many processes: their files go last, so that they never load the CPU while
# test_parallel.py's 4-device suite runs (XLA's CPU collectives abort the process when a device's
# thread misses its rendezvous for too long, as seen twice with both running at once).
LAST_FILES = ("test_ray.py", "test_ray_cluster.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        if name in LAST_FILES:
            return len(SLOWEST_FILES) + 1
        return SLOWEST_FILES.index(name) if name in SLOWEST_FILES else len(SLOWEST_FILES)

    items.sort(key=rank)  # stable: the order within each file is kept


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler (KeyboardInterrupt) for the test: pytest-xdist's workers
    ignore SIGINT, as a process started in the background does."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
