"""Public names imported on first use (PEP 562), for `a3c_jax` and its layers' packages: a
package's `__init__` declares where each name lives, and importing the package imports none of
it, so `import a3c_jax` (and a command's start) loads only what it runs."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attach(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for the package `package` whose public `names` map to the module
    (relative to `package`) defining each; a value once imported is kept in `namespace`."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
