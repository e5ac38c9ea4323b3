"""Where a command's wall-clock time goes: start-up, configuration, build, compile, training,
evaluation and writing, from the process's start to its result (what a user waits for)."""

from __future__ import annotations

import os
import time


def process_age() -> float | None:
    """Seconds since this process started (Linux: `/proc/self/stat`, 10 ms resolution); None
    where that is unknown."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start, since boot
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Phases:
    """Consecutive phases of one command, in seconds: each `lap(name)` ends the phase that ran
    since the previous lap (the first: since the process started, as "startup")."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        age = process_age()
        self.seconds: dict[str, float] = {} if age is None else {"startup": age}

    def lap(self, name: str, **parts: float) -> None:
        """Ends phase `name`; `parts` (phase: seconds) measured within it are set apart."""
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        for part, seconds in parts.items():
            self.seconds[part] = self.seconds.get(part, 0.0) + seconds
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - sum(parts.values())

    def summary(self) -> str:
        """`startup 1.92 s, config 0.10 s, ... (total 4.61 s)`."""
        parts = ", ".join(f"{name} {s:.2f} s" for name, s in self.seconds.items())
        return f"{parts} (total {sum(self.seconds.values()):.2f} s)"
