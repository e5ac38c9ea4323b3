"""Work started ahead of need in a daemon thread, such as compiling a program while another
compiles or trains: XLA's compile releases the GIL, so on a multi-core CPU the two overlap."""

from __future__ import annotations

import atexit
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

_STARTED: list[concurrent.futures.Future] = []


def start(fn: Callable[..., Any], *args: Any, name: str = "a3c_jax-background") -> Any:
    """Runs `fn(*args)` in a daemon thread; returns its `concurrent.futures.Future` at once.

    Unlike a thread pool's threads, it does not keep a finished program alive: at exit the
    interpreter waits only for work still running (a compile, never a loop)."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def work() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as error:  # handed to whoever asks for the result
            future.set_exception(error)

    _STARTED[:] = [f for f in _STARTED if not f.done()] + [future]
    threading.Thread(target=work, name=name, daemon=True).start()
    return future


@atexit.register
def _wait_for_running() -> None:
    """XLA threads that outlive the interpreter crash it at exit: let running work end first."""
    concurrent.futures.wait(_STARTED)
