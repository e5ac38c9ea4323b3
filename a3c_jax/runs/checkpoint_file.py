"""Checkpoints: the whole `RunnerState` in one file, written atomically, read with clear errors.

A checkpoint holds every array the training loop carries (parameters, optimiser state,
environment states, PRNG keys, counters, the algorithm's own state) plus the resolved `Config`
and a little metadata, so that training resumed from it continues bitwise as if it never stopped.

File format (one file, `flax.serialization` msgpack): the 8-byte magic `b"A3CJAXCK"`, the
SHA-256 of the payload (32 bytes), then the payload, a msgpack map
`{"format": 1, "config": {...}, "meta": {...}, "arrays": {path: ndarray}}` where `path` is the
leaf's key path in the state pytree (`jax.tree_util.keystr`). The checksum turns a truncated or
damaged file into a `CheckpointError` instead of a stack trace from deep inside msgpack.

We use flax's msgpack rather than orbax: a checkpoint is one small file (an atomic
write-then-rename of one file is simple to reason about and to test), nothing runs in background
threads (which matters when Ctrl-C arrives), and both need a template pytree to restore into
anyway. Writes go to a temporary name in the same folder, are flushed and fsynced, then renamed
over the target: a crash leaves the previous checkpoint intact, never half a file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from a3c_jax.config import Config
from a3c_jax.errors import CheckpointError, ConfigMismatchError, UnsafePathError
from a3c_jax.runs import safe_io

MAGIC = b"A3CJAXCK"
FORMAT_VERSION = 1
SUFFIX = ".ckpt"


class Checkpoint(NamedTuple):
    """A checkpoint file's contents before they are put back into a state pytree."""

    config: Config
    meta: dict[str, Any]  # update, env_steps, num_seeds, seed, time_s, ... (JSON-like)
    arrays: dict[str, np.ndarray]  # key path -> array


def flatten_state(tree: Any) -> dict[str, np.ndarray]:
    """`{key path: numpy array}` for every leaf of `tree` (typed PRNG keys as their raw data)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[jax.tree_util.keystr(path)] = np.asarray(jax.device_get(leaf))
    return out


def unflatten_state(arrays: Mapping[str, np.ndarray], template: Any, source: str = "") -> Any:
    """Puts `arrays` back into the structure of `template` (arrays or `jax.ShapeDtypeStruct`s).

    Raises `CheckpointError` naming the leaves that are missing, unexpected, or of another shape
    or dtype than the template's: a checkpoint of another algorithm, network or number of seeds.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    paths = [jax.tree_util.keystr(path) for path, _ in flat]
    arrays = _join_split_vectors(arrays, paths, [leaf for _, leaf in flat])
    missing = [p for p in paths if p not in arrays]
    extra = [p for p in arrays if p not in set(paths)]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if extra:
        problems.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    leaves = []
    for path, (_, want) in zip(paths, flat, strict=True):
        if path not in arrays:
            continue
        got = arrays[path]
        want_dtype = want.dtype
        is_key = jax.dtypes.issubdtype(want_dtype, jax.dtypes.prng_key)
        want_shape = tuple(want.shape)
        if is_key:
            want_dtype = jax.random.key_data(jax.random.key(0)).dtype
            want_shape = want_shape + jax.random.key_data(jax.random.key(0)).shape
        if tuple(got.shape) != want_shape or got.dtype != np.dtype(want_dtype):
            problems.append(
                f"{path} is {got.dtype}{list(got.shape)}, expected {np.dtype(want_dtype)}"
                f"{list(want_shape)}"
            )
            continue
        leaves.append(jax.random.wrap_key_data(got) if is_key else jax.numpy.asarray(got))
    if problems:
        raise CheckpointError(
            f"{source or 'checkpoint'} does not fit this training state: " + "; ".join(problems)
        )
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _join_split_vectors(
    arrays: Mapping[str, np.ndarray], paths: list[str], leaves: list[Any]
) -> Mapping[str, np.ndarray]:
    """Checkpoints written before the optimiser state was kept over the flattened parameters
    (`optim.Optimizer`) hold it as a tree below each vector's path (`<path>['params'][...]`):
    joins those pieces, in their stored (tree) order, into the vector `[..., P]` the template
    expects at `<path>`. Anything else is left as it is."""
    out = dict(arrays)
    for path, leaf in zip(paths, leaves, strict=True):
        if path in out or not leaf.shape:
            continue
        pieces = [key for key in arrays if key.startswith(path + "[")]
        lead = tuple(leaf.shape[:-1])
        if not pieces or any(tuple(arrays[key].shape[: len(lead)]) != lead for key in pieces):
            continue
        joined = np.concatenate([arrays[key].reshape(*lead, -1) for key in pieces], axis=-1)
        if joined.shape == tuple(leaf.shape):
            for key in pieces:
                del out[key]
            out[path] = joined
    return out


def encode(arrays: Mapping[str, np.ndarray], config: Config, meta: Mapping[str, Any]) -> bytes:
    """The bytes of a checkpoint file (magic, SHA-256 of the payload, msgpack payload)."""
    from flax import serialization

    payload = serialization.msgpack_serialize(
        {
            "format": FORMAT_VERSION,
            "config": config.to_dict(),
            "meta": dict(meta),
            "arrays": dict(arrays),
        }
    )
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode(data: bytes, source: str = "checkpoint") -> Checkpoint:
    """The inverse of `encode`; raises `CheckpointError` on a damaged or foreign file."""
    from flax import serialization

    header = len(MAGIC) + 32
    if len(data) < header or not data.startswith(MAGIC):
        raise CheckpointError(
            f"{source} is not an a3c_jax checkpoint (bad header; {len(data)} bytes)"
        )
    payload = data[header:]
    if hashlib.sha256(payload).digest() != data[len(MAGIC) : header]:
        raise CheckpointError(
            f"{source} is corrupt or truncated (checksum mismatch, {len(data)} bytes): "
            "load an earlier checkpoint from the same folder"
        )
    try:
        content = serialization.msgpack_restore(payload)
        if content["format"] != FORMAT_VERSION:
            raise CheckpointError(
                f"{source} has checkpoint format {content['format']}; this a3c_jax reads "
                f"format {FORMAT_VERSION}"
            )
        for part in ("config", "meta", "arrays"):
            if not isinstance(content[part], Mapping):
                raise CheckpointError(
                    f"{source} does not hold a valid checkpoint: its {part} is a "
                    f"{type(content[part]).__name__}, not a map"
                )
        config = Config.from_dict(content["config"], source=f"{source} config")
        meta = dict(content["meta"])
        check_meta(meta, source)
        return Checkpoint(config, meta, dict(content["arrays"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{source} does not hold a valid checkpoint: {error}") from error


# A checkpoint's meta: the entries a3c_jax reads, and what each must be.
_META_COUNTS = {"update": 0, "env_steps": 0, "num_seeds": 1, "chunk_updates": 0, "processes": 1}


def check_meta(meta: Mapping[str, Any], source: str) -> None:
    """Raises `CheckpointError` naming the entry unless `meta` holds a whole `update` >= 0 and
    every count a3c_jax reads is a whole number in range (a hand-made or foreign file)."""
    if "update" not in meta:
        raise CheckpointError(f"{source} does not hold a valid checkpoint: its meta has no update")
    for name, low in _META_COUNTS.items():
        value = meta.get(name)
        if value is None and name != "update":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise CheckpointError(
                f"{source} does not hold a valid checkpoint: meta {name}={value!r} must be a "
                f"whole number >= {low}"
            )
    time_s = meta.get("time_s")
    if time_s is not None and (isinstance(time_s, bool) or not isinstance(time_s, (int, float))):
        raise CheckpointError(
            f"{source} does not hold a valid checkpoint: meta time_s={time_s!r} is not a number"
        )


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes `data` to `path` atomically (`safe_io.write_atomic`: never through a symlink,
    a temporary file in the same folder, fsync, rename)."""
    safe_io.write_atomic(path, data)


def save_checkpoint(
    path: str | os.PathLike[str], state: Any, config: Config, meta: Mapping[str, Any]
) -> Path:
    """Writes `state` (any pytree of arrays, usually a `RunnerState`) atomically to `path`."""
    write_atomic(path, encode(flatten_state(state), config, meta))
    return Path(path)


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Reads a checkpoint file; `CheckpointError` if it is missing, damaged or foreign."""
    try:
        data = safe_io.read_regular(path)  # a FIFO or a folder: an error, not a hang
    except UnsafePathError as error:
        raise CheckpointError(f"cannot read checkpoint: {error}") from error
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}") from error
    return decode(data, source=str(path))


def checkpoint_path(folder: str | os.PathLike[str], update: int) -> Path:
    """`folder/update_000001234.ckpt`: names sort in update order."""
    return Path(folder) / f"update_{update:09d}{SUFFIX}"


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """The checkpoint files in `folder`, oldest first (temporary files excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"update_*{SUFFIX}") if not p.name.startswith("."))


def prune_checkpoints(folder: str | os.PathLike[str], keep: int) -> None:
    """Deletes all but the newest `keep` checkpoints in `folder`."""
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def check_config(saved: Config, requested: Config, source: str) -> None:
    """Raises `ConfigMismatchError` naming each field where `requested` differs from `saved`."""
    differences = saved.diff(requested)
    if differences:
        listed = ", ".join(
            f"{name}: saved {a!r}, requested {b!r}" for name, (a, b) in differences.items()
        )
        raise ConfigMismatchError(
            f"{source} was trained with another configuration ({listed}); resume with the saved "
            "configuration (drop those options) or start a new run"
        )
