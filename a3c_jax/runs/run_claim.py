"""A running process's exclusive hold on its run folder, and what it leaves behind if it fails.

`claim(path)` takes an OS file lock (`fcntl.flock`) on `path/.a3c_jax.lock` for as long as the
run lasts: a second process that asks for the same folder (a new run, `--overwrite` or
`--resume`) is refused with a `RunDirError` instead of mixing its files with the running one's.
The kernel releases the lock when the process ends, however it ends (`kill -9` included), so a
crashed run never leaves a stale lock behind.

The claim also remembers what this process created, so that a run that fails before its first
checkpoint (a bad setting found late, out of memory, Ctrl-C while compiling) removes exactly
that and nothing else (`abandon`), and a run that fails later marks its `run.json` "failed"
(the folder stays resumable from its checkpoints).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Any

from a3c_jax import distributed
from a3c_jax.runs import checkpoint_file as ckpt
from a3c_jax.runs import safe_io
from a3c_jax.runs.run_folder import (
    CHECKPOINT_DIR,
    LOCK_FILE,
    RunDirError,
    RunFolder,
    check_replaceable,
    check_writable,
    foreign_entries,
    read_json,
    remove_own_entries,
    temporary_pid,
    write_json,
)


def _lock(path: Path, blocking: bool = False) -> int:
    """An open descriptor of `path/.a3c_jax.lock` holding its exclusive lock; `RunDirError`
    (naming the holder's process id, as it wrote it) if another process holds it. The lock file
    is opened as a regular file only, never through a symlink (`safe_io.open_regular`)."""
    lock_file = path / LOCK_FILE
    try:
        fd = safe_io.open_regular(lock_file, os.O_RDWR | os.O_CREAT)
    except OSError as error:
        raise RunDirError(
            f"{path}: cannot open its lock file {lock_file} ({error.strerror}); the folder must "
            "be writable"
        ) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as error:
        os.close(fd)
        if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        holder = lock_file.read_text(errors="replace").strip() or "unknown"
        raise RunDirError(
            f"{path} is in use by another a3c_jax process (pid {holder}), which holds its lock "
            f"{lock_file}; wait for it to end (or stop it), or choose another folder"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass  # a full disk: the lock holds all the same, only the holder's pid is not written
    return fd


def lock_folder(path: str | os.PathLike[str]) -> int:
    """Takes the exclusive lock of the folder `path` (a study folder: `a3c_jax.sweeps.tune`) as
    a run folder's is taken: an open descriptor (closing it releases the lock), or `RunDirError`
    if another process holds it."""
    return _lock(Path(path))


def check_unlocked(path: Path) -> None:
    """Raises `RunDirError` if another process holds the lock of the run folder `path`."""
    if os.path.lexists(path / LOCK_FILE):
        os.close(_lock(path))  # released at once: only a probe


def check_new(path: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Raises `RunDirError` unless a new run may be written to `path`: a folder can be made
    there, no other process runs in it, and it is empty or (with `overwrite`) holds only a run
    that a3c_jax wrote. Deletes nothing, makes nothing."""
    path = Path(path)
    check_writable(path)
    if path.is_dir():
        check_unlocked(path)  # a running run: say so rather than "holds a run"
        check_replaceable(path, overwrite)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_orphans(path: Path) -> list[Path]:
    """Deletes the temporary files of atomic writes (`.NAME.tmp-PID`) that a killed process
    left in the run folder `path` and its checkpoint folders: only those whose process is dead.
    Returns the files deleted."""
    removed = []
    checkpoints = path / CHECKPOINT_DIR
    subfolders = [] if checkpoints.is_symlink() else [checkpoints, *checkpoints.glob("process_*")]
    for folder in [path, *subfolders]:
        if folder.is_symlink() or not folder.is_dir():  # never delete where a link points
            continue
        for entry in folder.iterdir():
            pid = temporary_pid(entry.name)
            if pid is not None and pid != os.getpid() and not _pid_alive(pid):
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def _make_folders(path: Path) -> list[Path]:
    """Makes `path` and its missing parents; returns those it made, outermost first."""
    missing = [p for p in [*reversed(path.parents), path] if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"--out {path}: cannot create the folder ({error.strerror})") from error
    return missing


class RunClaim:
    """This process's hold on the run folder `path` (`claim`); a context manager that releases
    the lock on exit and, on an exception, cleans up after the failed run (`fail`)."""

    def __init__(self, path: Path, fd: int | None, made: list[Path], new_run: bool, inode: int):
        self.path, self.fd, self.made, self.new_run, self.inode = path, fd, made, new_run, inode
        self.removed_orphans: list[Path] = []

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        try:
            if error is not None:
                self.fail(error)
        finally:
            self.release()

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None

    def alive(self) -> bool:
        """Whether the run folder is still the one claimed (not deleted or replaced); always
        True in a process that does not write the folder (on another host it may not exist)."""
        if self.fd is None:
            return True
        try:
            return os.stat(self.path / LOCK_FILE).st_ino == self.inode
        except OSError:
            return False

    def clear(self) -> None:
        """Deletes the old run in the folder (what `check_replaceable` allowed `--overwrite` to
        replace): every file a3c_jax wrote, anywhere below the folder, but for the lock this
        process holds (`run_folder.remove_own_entries`)."""
        if self.fd is None:
            return
        check_replaceable(self.path, overwrite=True)  # the same check, now under the lock
        remove_own_entries(self.path)

    def fail(self, error: BaseException) -> None:
        """After `error` ended the run: a new run without a checkpoint leaves nothing behind
        (`abandon`); otherwise `run.json` says "failed" (unless it already says why it ended)."""
        if self.fd is None or not self.alive():
            return
        with contextlib.suppress(OSError, RunDirError):
            if self.new_run and not ckpt.list_checkpoints(RunFolder(self.path).checkpoint_dir):
                self.abandon()
                return
            info = read_json(self.path / "run.json") if (self.path / "run.json").exists() else {}
            if info.get("status") == "running":
                info.update(status="failed", error=f"{type(error).__name__}: {error}")
                write_json(self.path / "run.json", info)

    def abandon(self) -> None:
        """Removes what this (new) run wrote, and the folders it made if they are then empty."""
        if foreign_entries(self.path):  # never delete what someone else put there meanwhile
            return
        remove_own_entries(self.path, keep=())
        for folder in reversed(self.made):
            with contextlib.suppress(OSError):
                folder.rmdir()


def claim(path: str | os.PathLike[str], overwrite: bool = False, resume: bool = False) -> RunClaim:
    """Claims the run folder `path` for this process: for a new run (`resume` False) checks that
    it may be written (`check_writable`, `check_replaceable`), makes it, and takes its lock
    (`RunDirError` if another process holds it); deletes nothing (`RunClaim.clear` replaces an
    old run once the new one is ready). Removes orphaned temporary files of killed runs.

    Only the process that writes the folder (`distributed.is_output_process`) locks it."""
    path = Path(path)
    if not distributed.is_output_process():
        return RunClaim(path, None, [], not resume, 0)
    if resume and not path.is_dir():
        raise RunDirError(f"--resume {path}: no such run folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        what = "--resume" if resume else "--out"
        raise RunDirError(f"{what} {path}: cannot write in the folder (permission denied)")
    if not resume:
        check_new(path, overwrite)
    made = _make_folders(path)
    fd = _lock(path)
    run = RunClaim(path, fd, made, not resume, os.fstat(fd).st_ino)
    try:
        if not resume:
            check_replaceable(path, overwrite)  # again, under the lock
        run.removed_orphans = remove_orphans(path)
    except BaseException:
        run.release()
        raise
    return run


def create(path: str | os.PathLike[str], overwrite: bool = False) -> RunFolder:
    """A new run folder at `path` (checked, and an old run replaced if `overwrite`), for a
    writer that holds no lock over its lifetime (`saving.save`)."""
    folder = RunFolder(Path(path))
    if folder.writes:
        with claim(path, overwrite=overwrite) as held:
            held.clear()
    return folder
