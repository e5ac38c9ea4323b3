"""The interface every algorithm builder returns (`types.Algorithm`), and its helpers."""

from __future__ import annotations

from a3c_jax.core.types import Algorithm, Params, PRNGKey, UpdateFn

__all__ = ["Algorithm", "UpdateFn", "no_state"]


def no_state(params: Params, key: PRNGKey) -> tuple[()]:
    """`Algorithm.init` of algorithms that keep nothing besides their parameters."""
    del params, key
    return ()
