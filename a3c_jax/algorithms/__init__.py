"""Each algorithm of the decks as a configuration over the shared parts.

`registry.REGISTRY` declares every algorithm once (name, builder, defaults, episodic or not,
which trainer); a builder `make(config, spec, networks, optimizer) -> Algorithm` lives in a
module beside it (`actor_critic`, `ac_replay`), imported when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from a3c_jax.config.registry import ALGORITHM_BUILDERS, REGISTRY, AlgorithmSpec

_MODULES = ("ac_replay", "actor_critic", "base")
_FROM_BASE = ("Algorithm", "UpdateFn", "no_state")


def __getattr__(name: str) -> Any:
    """The builder modules and `base`'s names, imported on first use (they import JAX)."""
    if name in _MODULES:
        return importlib.import_module(f"a3c_jax.algorithms.{name}")
    if name in _FROM_BASE:
        return getattr(importlib.import_module("a3c_jax.algorithms.base"), name)
    raise AttributeError(f"module 'a3c_jax.algorithms' has no attribute {name!r}")


__all__ = [
    "ALGORITHM_BUILDERS",
    "REGISTRY",
    "Algorithm",
    "AlgorithmSpec",
    "UpdateFn",
    "ac_replay",
    "actor_critic",
    "no_state",
]
