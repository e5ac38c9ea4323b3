"""The one way a3c_jax writes and reads the files of a run or study folder.

A folder received from someone else may hold symlinks or special files where a3c_jax expects
its own files: `metrics.csv` pointing at `~/.bashrc`, `checkpoints/` pointing at another disk,
a FIFO named like a checkpoint. So every write below a folder goes through `write_atomic` (or
`open_append`, `open_lock`), which refuse a symlink or a non-regular file at the target and at
every folder between the run folder (`root`) and the target, then write a temporary file in the
same folder, flush, fsync and rename it over the target: nothing is ever written through a
symlink, and a crash leaves either the old content or the new one. Reads of checkpoints take
regular files only (`read_regular`), so that a FIFO is an error, not a hang.

The root folder itself may be a symlink (a user's `runs -> /scratch/runs`): that is the user's
choice, made outside the folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from a3c_jax.errors import UnsafePathError


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_folders(path: Path, root: Path | None = None) -> None:
    """Raises `UnsafePathError` if a folder between `root` (excluded; default: the parent's
    parent) and `path` (excluded) is a symlink or not a folder."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent.parent
    folders = []
    for parent in path.parents:
        if parent == root or len(parent.parts) <= len(root.parts):
            break
        folders.append(parent)
    for folder in reversed(folders):
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            return  # made below (`make_folders`)
        if not stat.S_ISDIR(mode):
            raise UnsafePathError(
                f"{folder} is {_kind(mode)}, not a folder: a3c_jax writes nothing through it; "
                "remove it or choose another folder"
            )


def check_target(path: Path) -> None:
    """Raises `UnsafePathError` if `path` exists and is not a regular file (a symlink, a FIFO,
    a folder ...)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise UnsafePathError(
            f"{path} is {_kind(mode)}: a3c_jax writes only regular files of its own; remove it "
            "or choose another folder"
        )


def make_folders(folder: Path, root: Path | None = None) -> None:
    """Makes `folder` (and its missing parents below `root`), refusing symlinks on the way."""
    folder = Path(folder)
    check_folders(folder / "_", root if root is not None else folder.parent)
    folder.mkdir(parents=True, exist_ok=True)
    check_folders(folder / "_", root if root is not None else folder.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes, root: Path | None = None) -> None:
    """Writes `data` to `path` via a temporary file in the same folder and a rename, so that
    `path` holds either its old content or all of `data`, whatever happens meanwhile. Refuses
    (`UnsafePathError`) a `path` that is a symlink or not a regular file, and symlinked folders
    between `root` (default: `path`'s own folder, which may be a symlink) and `path`."""
    path = Path(path)
    make_folders(path.parent, root if root is not None else path.parent)
    check_target(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.lstat(tmp).st_mode):  # never through a planted link
                os.unlink(tmp)
        fd = os.open(tmp, flags, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """`os.open(path, flags)` of a regular file only, never through a symlink and never
    blocking on a FIFO: a descriptor, or `UnsafePathError`."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):  # a symlink; a FIFO without a reader
            check_target(path)  # says what it is
            raise UnsafePathError(f"{path}: not a regular file") from error
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePathError(
            f"{path} is {_kind(st.st_mode)}: a3c_jax uses only regular files of its own"
        )
    os.set_blocking(fd, True)
    return fd


@contextlib.contextmanager
def open_append(path: Path, root: Path | None = None) -> Iterator[int]:
    """A descriptor appending to the regular file `path` (made if missing)."""
    check_folders(path, root)
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        yield fd
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike[str]) -> bytes:
    """The bytes of `path`, which must be a regular file (a symlink to one is read: reading
    follows no one's write); `UnsafePathError` for a FIFO, a device or a folder, never a hang."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{path} is {_kind(st.st_mode)}, not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)
