"""Every exception a3c_jax raises on purpose, each with the exit code of the command line.

A failure that is not a bug is one of these: `a3c_jax.cli` prints its message on one line and
exits with `exit_code(error)`; nothing else maps exceptions to exit codes. Any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno

EXIT_READ_ERROR = 1  # a file could not be read or written (disk full), or the run folder was lost
EXIT_BAD_INPUT = 2  # the user asked for something that cannot run (argparse's code too)
EXIT_DIVERGED = 3  # training produced a non-finite loss, gradient or parameter
EXIT_UNREACHABLE = 3  # the processes of a multi-process run did not all meet in time
EXIT_INTERRUPTED = 130  # 128 + SIGINT (a run stopped by SIGTERM exits 143)


class ConfigError(ValueError):
    """A configuration that cannot train; raised before anything is compiled."""


class RunDirError(ConfigError):
    """A run folder that cannot be used as asked (it would overwrite a run, or holds none)."""


class UnsafePathError(RunDirError):
    """A path in a run or study folder that a3c_jax will not write or read through: a symlink,
    a FIFO or another non-regular file where a3c_jax keeps its own files."""


class ConfigMismatchError(ConfigError):
    """A checkpoint was trained with another configuration than the one requested."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or does not fit what it is loaded into."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, folder gone); older ones are intact."""


class RunFolderLostError(RuntimeError):
    """The run folder was deleted or replaced during training; the state was saved elsewhere."""


class DivergenceError(RuntimeError):
    """Training stopped because an update produced a non-finite loss, gradient or parameter.

    `update` is the 1-based index of that update, `quantities` names what was not finite,
    `seeds` lists the seed indices affected (`(0,)` for an unbatched run), `checkpoint` the file
    holding the last good state (after update `update - 1`), if one was written."""

    def __init__(
        self,
        message: str,
        update: int,
        quantities: tuple[str, ...],
        seeds: tuple[int, ...],
        checkpoint: str | None = None,
    ):
        super().__init__(message)
        self.update, self.quantities, self.seeds, self.checkpoint = (
            update,
            quantities,
            seeds,
            checkpoint,
        )


class ProcessesUnreachableError(RuntimeError):
    """The processes of a multi-process run (`a3c_jax.launch`) did not all meet within the
    time-out: no coordinator at the address, a process that never started."""


# The one table of exit codes, most specific class first (a subclass before its base).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, EXIT_BAD_INPUT),
    (CheckpointError, EXIT_READ_ERROR),
    (RunFolderLostError, EXIT_READ_ERROR),
    (DivergenceError, EXIT_DIVERGED),
    (ProcessesUnreachableError, EXIT_UNREACHABLE),
    (KeyboardInterrupt, EXIT_INTERRUPTED),
)


# A file that could not be written or read for a reason of the machine's, not a bug: a full
# disk, a quota, a read-only file system, a permission, an I/O error. Its message names the path.
OS_FAILURES = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


def exit_code(error: BaseException) -> int | None:
    """The command line's exit code for `error`, or None for an unexpected one (a bug)."""
    code = next((code for kind, code in EXIT_CODES if isinstance(error, kind)), None)
    if code is None and isinstance(error, OSError) and error.errno in OS_FAILURES:
        return EXIT_READ_ERROR
    return code
