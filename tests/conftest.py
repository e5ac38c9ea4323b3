"""Shared test settings: implicit rank promotion is an error in every test."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key() -> jax.Array:
    return jax.random.PRNGKey(0)
