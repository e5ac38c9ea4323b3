"""Compiled programs kept on disk, found again by what makes them: a repeated start then skips
tracing and lowering as well as XLA's compile.

JAX's persistent compilation cache (`xla.enable_compilation_cache`) keys a program by its lowered
form, so a warm start still traces and lowers the training loop in Python before the cache can
answer: on a 2-core CPU that is most of a warm start's compile phase. This cache keys a program by
its recipe instead, and keeps the serialized executable (`jax.experimental.serialize_executable`)
in a folder `a3c_jax_programs/` inside JAX's cache folder. The key (`program_key`) holds everything
the program depends on:

- the source of the installed a3c_jax (a digest of every module's text: any edit is a new key);
- the versions of JAX, jaxlib and the libraries a program is built from (flax, optax, gymnax,
  Brax), the backend, its devices, `XLA_FLAGS` and the JAX options that
  change what is traced (`jax_enable_x64`, `jax_default_matmul_precision`);
- what the caller names: the kind of program, the `Config`, the argument structure and shapes,
  the compiler options.

It is off unless `A3C_JAX_PROGRAM_CACHE=1` is set: experimental (see `ENABLE`). Only one
process on one device uses it (a program placed over several devices or processes is
compiled as before), and only while JAX's persistent cache is on (the command line turns it on).
A cache never fails a run: an entry that cannot be read, loaded or written is compiled instead.
Entries are written whole (a temporary file, then a rename), so a reader never sees half of one.
Entries are pickles, trusted as JAX's own cache folder is: the folder is the user's. Nothing is
ever removed from it; delete the folder to reclaim the space (each edit of a3c_jax's source
starts new entries).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax

if TYPE_CHECKING:
    from a3c_jax.config import Config

FOLDER = "a3c_jax_programs"
# Opt-in: an executable kept by one process and loaded by another failed to run in a test suite
# ("NOT_FOUND: Function iota_convert_fusion not found") where the same program ran when compiled.
ENABLE = "A3C_JAX_PROGRAM_CACHE"
_SOURCE_DIGEST: list[str] = []  # computed once per process


def source_digest() -> str:
    """A digest of the text of every module of the installed a3c_jax."""
    if not _SOURCE_DIGEST:
        root = Path(__file__).parent
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
        _SOURCE_DIGEST.append(digest.hexdigest())
    return _SOURCE_DIGEST[0]


def folder() -> Path | None:
    """Where programs are kept: inside JAX's persistent cache folder; None unless
    `A3C_JAX_PROGRAM_CACHE=1` is set, when that cache is off, or over several processes."""
    cache_dir = jax.config.jax_compilation_cache_dir
    if os.environ.get(ENABLE) != "1" or not cache_dir or jax.process_count() > 1:
        return None
    return Path(cache_dir) / FOLDER


def program_key(*parts: Any) -> str:
    """The file name of the program made from `parts` (their `repr`s) in this installation."""
    device = jax.devices()[0]
    recipe = (
        source_digest(),
        _versions(),
        device.platform,
        device.device_kind,
        jax.device_count(),
        os.environ.get("XLA_FLAGS", ""),
        jax.config.jax_enable_x64,
        jax.config.jax_default_matmul_precision,
        *parts,
    )
    return hashlib.sha256(repr(recipe).encode()).hexdigest()


def _versions() -> tuple[str, ...]:
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    return tuple(version(name) for name in ("jax", "jaxlib", "flax", "optax", "gymnax", "brax"))


def keeps(config: Config) -> bool:
    """Whether programs of `config` may be kept: those of a3c_jax's own algorithms (declared by
    module name in the registry, so within the source digest; a builder substituted at run time
    is not) on one device (a program over several is placed on them)."""
    from a3c_jax.config import registry
    from a3c_jax.training import parallel

    builder = registry.get(config.algo).builder
    own = isinstance(builder, str) and builder.startswith("a3c_jax.")
    return own and parallel.num_devices(config) == 1


def load_or_compile(config: Config, parts: tuple, compile_fn: Callable[[], Any]) -> Any:
    """The compiled program of `config` that `compile_fn()` makes, loaded from disk if a program
    of the same `parts` (see `program_key`) was kept there, else compiled and kept (when the
    cache is on and `keeps(config)`)."""
    where = folder()
    if where is None or not keeps(config):
        return compile_fn()
    path = where / f"{program_key(*parts)}.bin"
    loaded = _load(path)
    if loaded is not None:
        return loaded
    program = compile_fn()
    _keep(path, program)
    return program


def _load(path: Path) -> Any:
    from jax.experimental import serialize_executable

    try:
        payload, in_tree, out_tree = pickle.loads(path.read_bytes())
        return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # missing, torn by another writer's crash, or another jaxlib's format
        return None


def _keep(path: Path, program: Any) -> None:
    from jax.experimental import serialize_executable

    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        blob = pickle.dumps(serialize_executable.serialize(program))
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(blob)
        os.replace(temporary, path)
    except Exception:  # a full disk or a program that cannot be serialized: only not kept
        temporary.unlink(missing_ok=True)
