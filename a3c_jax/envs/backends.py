"""The one table of environment backends, read without importing any of them (nor JAX)."""

from __future__ import annotations

from typing import Any

# The one table of environment backends: a name's prefix -> the module whose `make_spec(name,
# **options)` describes it. Names without a prefix are gymnax's. Imported on first use, so that
# an optional backend's library is imported only by runs that name it.
BACKENDS: dict[str, str] = {
    "gymnasium:": "a3c_jax.envs.gymnasium_envs",  # host environments (Gymnasium, Atari)
    "brax:": "a3c_jax.envs.brax_envs",
}
GYMNAX_BACKEND = "a3c_jax.envs.gymnax_envs"


def backend(env_name: str) -> str:
    """The module (by name) of the backend that makes `env_name`: `BACKENDS` by prefix, else
    gymnax's."""
    return next((m for p, m in BACKENDS.items() if env_name.startswith(p)), GYMNAX_BACKEND)


def is_brax_env(env_name: Any) -> bool:
    """Whether `env_name` names a Brax environment (`"brax:<name>"`)."""
    return isinstance(env_name, str) and backend(env_name) == BACKENDS["brax:"]


def is_host_env(env_name: Any) -> bool:
    """Whether `env_name` is stepped on the host (a Python loop over a Gymnasium vector
    environment), not inside a jitted program."""
    return isinstance(env_name, str) and backend(env_name) == BACKENDS["gymnasium:"]
