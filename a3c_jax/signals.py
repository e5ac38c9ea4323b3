"""Ctrl-C during a chunked run: the first one asks the run to stop after its chunk."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def interruptible(log: Callable[[str], None]) -> Iterator[threading.Event]:
    """Within: the first Ctrl-C (SIGINT) sets the yielded event instead of raising; a second
    one raises `KeyboardInterrupt` as usual. Outside the main thread: no handler."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log("interrupted: saving a checkpoint after the current chunk (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
