"""The progress display of a chunked run: a rich bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import math
import time


class Progress:
    """A rich progress bar on a terminal (env steps, steps/s, recent return, ETA); elsewhere a
    plain line every `log_every_s` seconds. Writes to stderr."""

    def __init__(self, total_steps: int, start_steps: int, enabled: bool, log_every_s: float = 10):
        from rich.console import Console

        self.total, self.enabled, self.log_every_s = total_steps, enabled, log_every_s
        self.console = Console(stderr=True)
        self.bar = None
        self.last_log = self.last_draw = time.perf_counter()
        if enabled and self.console.is_terminal:
            from rich import progress as rp

            # Redrawn from `update` (at most 4 times a second), not by a refresh thread.
            self.bar = rp.Progress(
                rp.TextColumn("[bold]{task.description}"),
                rp.BarColumn(),
                rp.TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
                rp.TextColumn("{task.fields[rate]} steps/s"),
                rp.TextColumn("return {task.fields[ret]}"),
                rp.TimeRemainingColumn(),
                console=self.console,
                auto_refresh=False,
            )
            self.task = self.bar.add_task(
                "training", total=total_steps, completed=start_steps, rate="-", ret="-"
            )
            self.bar.start()

    def update(self, steps: int, rate: float, mean_return: float) -> None:
        ret = "-" if math.isnan(mean_return) else f"{mean_return:.1f}"
        now = time.perf_counter()
        if self.bar is not None:
            draw = now - self.last_draw >= 0.25 or steps >= self.total
            self.bar.update(self.task, completed=steps, rate=f"{rate:,.0f}", ret=ret, refresh=draw)
            if draw:
                self.last_draw = now
        elif self.enabled and now - self.last_log >= self.log_every_s:
            self.last_log = now
            self.console.print(
                f"{steps:,}/{self.total:,} env steps ({100 * steps / self.total:.0f}%), "
                f"{rate:,.0f} steps/s, return {ret}",
                highlight=False,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.refresh()
            self.bar.stop()
