"""Ctrl-C (SIGINT) and SIGTERM during a chunked run: the first one asks the run to stop after
its chunk (with a checkpoint); a second one aborts at once.

SIGTERM is what Slurm, Kubernetes, `timeout` and `kill` send before they kill a process: it gets
the same treatment as Ctrl-C, so that a preempted run leaves a checkpoint to resume from.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class StopRequest(threading.Event):
    """Set by the first SIGINT or SIGTERM; `signum` says which (0: none yet)."""

    signum: int = 0

    def exit_code(self) -> int:
        """The conventional exit status of a process stopped by `signum`: 128 + its number
        (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(self.signum or signal.SIGINT)


@contextlib.contextmanager
def interruptible(log: Callable[[str], None]) -> Iterator[StopRequest]:
    """Within: the first SIGINT or SIGTERM sets the yielded `StopRequest` instead of ending the
    process; a second one raises `KeyboardInterrupt` as usual. Outside the main thread: no
    handler (the request is never set)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.signum = signum
        stop.set()
        by = "" if signum == signal.SIGINT else f" by {NAMES.get(signum, signum)}"
        log(f"interrupted{by}: saving a checkpoint after the current chunk (Ctrl-C again to abort)")

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
