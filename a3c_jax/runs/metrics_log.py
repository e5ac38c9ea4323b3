"""Training metrics: one row per chunk of updates and per seed, written by small writers.

`chunk_rows` turns a chunk's per-update metrics into rows of `METRIC_COLUMNS`; a `MetricsWriter`
(`write(rows)`, `close()`) writes them somewhere: `CsvMetrics` to the run folder's
`metrics.csv`, `TensorBoardMetrics` to event files per seed (tensorboardX, imported when used).
`open_writers` composes them for a run; another destination is one more class with those two
methods.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from a3c_jax.runs import checkpoint_file as ckpt
from a3c_jax.runs import safe_io
from a3c_jax.runs.run_folder import METRICS_FILE, RunDirError, RunFolder

METRIC_COLUMNS = (
    "seed",  # index of the seed within the run (0 .. num_seeds - 1)
    "update",  # updates done at the end of the chunk
    "env_steps",  # environment steps of this seed at the end of the chunk
    "time_s",  # wall-clock seconds since the run started (compile included; resumes continue it)
    "episodes",  # episodes finished in the chunk
    "return_mean",  # undiscounted return over the episodes finished in the chunk (empty: none)
    "return_min",
    "return_max",
    "length_mean",
    "total_loss",  # means over the chunk's updates
    "actor_loss",
    "critic_loss",
    "entropy",
    "grad_norm",
    "learning_rate",  # at the chunk's last update
    "steps_per_second",  # environment steps of all seeds per second over the chunk
)


class MetricsWriter(Protocol):
    """Somewhere rows of `METRIC_COLUMNS` go, flushed after each `write`."""

    def write(self, rows: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def chunk_rows(
    metrics: dict[str, np.ndarray],
    num_valid: np.ndarray,
    updates: np.ndarray,
    time_s: float,
    steps_per_second: float,
) -> list[dict[str, Any]]:
    """One `METRIC_COLUMNS` row per seed from a chunk's per-update metrics `[S, chunk]`.

    `num_valid[s]` leading updates of seed `s` ran (the rest were no-ops past the budget or after
    a divergence); `updates[s]` is its update count at the chunk's end.
    """
    rows = []
    for s in range(len(num_valid)):
        n = int(num_valid[s])
        if n == 0:
            continue
        m = {k: v[s, :n] for k, v in metrics.items()}
        counts = m["episodes"]
        finished = counts > 0
        episodes = float(np.sum(counts))

        def weighted(name: str, m=m, counts=counts, episodes=episodes) -> float:
            values = np.where(counts > 0, m[name], 0.0)  # no episodes: the carried-over mean
            return float(np.sum(values * counts) / episodes) if episodes else math.nan

        lo = m.get("episode_return_min", m["episode_return"])[finished]
        hi = m.get("episode_return_max", m["episode_return"])[finished]
        rows.append(
            {
                "seed": s,
                "update": int(updates[s]),
                "env_steps": int(m["env_steps"][-1]),
                "time_s": time_s,
                "episodes": int(episodes),
                "return_mean": weighted("episode_return"),
                "return_min": float(np.min(lo)) if lo.size else math.nan,
                "return_max": float(np.max(hi)) if hi.size else math.nan,
                "length_mean": weighted("episode_length"),
                **{
                    name: float(np.mean(m[name]))
                    for name in ("total_loss", "actor_loss", "critic_loss", "entropy", "grad_norm")
                },
                "learning_rate": float(m["learning_rate"][-1]),
                "steps_per_second": steps_per_second,
            }
        )
    return rows


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.7g}"
    return str(value)


HEADER = ",".join(METRIC_COLUMNS).encode()


def repair_metrics(path: Path) -> int:
    """Makes `metrics.csv` whole before rows are appended: a file that is empty, or lost its
    header, gets one (`METRIC_COLUMNS`); a torn last row (a crash mid-write: no line end) is cut
    off, so that the next row does not glue onto it. Anything else is left as it is. Returns the
    bytes cut off."""
    data = safe_io.read_regular(path) if _exists(path) else b""
    if not data or (b"\n" not in data and HEADER.startswith(data.rstrip(b"\r"))):
        ckpt.write_atomic(path, HEADER + b"\r\n")  # empty, or only a torn header
        return len(data)
    whole = data.rfind(b"\n") + 1  # up to the end of the last whole line
    if whole == len(data):
        return 0
    ckpt.write_atomic(path, data[:whole])
    return len(data) - whole


def _exists(path: Path) -> bool:
    """Whether `path` exists; `UnsafePathError` if it is not a regular file (a symlink, a FIFO)."""
    safe_io.check_target(path)
    return path.exists()


class CsvMetrics:
    """Appends rows to `metrics.csv` (after `repair_metrics`), flushed per chunk; never through
    a symlink (`safe_io.open_regular`)."""

    def __init__(self, path: Path):
        self.path = path
        repair_metrics(path)
        fd = safe_io.open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self.file = os.fdopen(fd, "a", newline="")  # closed in close()
        self.writer = csv.DictWriter(self.file, fieldnames=METRIC_COLUMNS)

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.writer.writerow({k: _format(v) for k, v in row.items()})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardMetrics:
    """Each seed's rows as TensorBoard scalars against `env_steps` (`folder/seed_{s}`)."""

    def __init__(self, folder: Path, num_seeds: int):
        from tensorboardX import SummaryWriter

        self.writers = [SummaryWriter(str(folder / f"seed_{s}")) for s in range(num_seeds)]

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            writer = self.writers[row["seed"]]
            for name in METRIC_COLUMNS[4:]:
                if not (isinstance(row[name], float) and math.isnan(row[name])):
                    writer.add_scalar(name, row[name], row["env_steps"])
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class MetricsWriters:
    """Several writers as one."""

    def __init__(self, writers: Sequence[MetricsWriter]):
        self.writers = list(writers)

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for writer in self.writers:
            writer.write(rows)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def open_writers(folder: RunFolder, num_seeds: int, tensorboard: bool = False) -> MetricsWriters:
    """The run's writers: `metrics.csv`, and TensorBoard event files if `tensorboard`."""
    writers: list[MetricsWriter] = [CsvMetrics(folder.metrics_file)]
    if tensorboard:
        writers.append(TensorBoardMetrics(folder.tensorboard_dir, num_seeds))
    return MetricsWriters(writers)


def read_metrics(run_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """`metrics.csv` as columns of floats (empty cells: nan)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as error:
        raise RunDirError(f"cannot read {path}: {error.strerror}") from error
    columns = rows[0].keys() if rows else METRIC_COLUMNS
    return {
        c: np.array([float(r[c]) if r[c] not in ("", None) else math.nan for r in rows])
        for c in columns
    }


def _rows(path: Path) -> list[dict[str, str]]:
    """The rows of `metrics.csv`, checked: its header is `METRIC_COLUMNS` and every row's
    `update` a whole number; `RunDirError` naming the file, the line and the value otherwise
    (a hand-edited file)."""
    text = safe_io.read_regular(path).decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = tuple(reader.fieldnames or ())
    if header != METRIC_COLUMNS:
        missing = [c for c in METRIC_COLUMNS if c not in header]
        unknown = [c for c in header if c not in METRIC_COLUMNS]
        what = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(unknown)}" if unknown else "",
            )
            if part
        )
        raise RunDirError(
            f"{path}: its header is not a3c_jax's ({what or 'columns in another order'}); "
            f"restore the header line {','.join(METRIC_COLUMNS)}"
        )
    rows = list(reader)
    for line, row in enumerate(rows, start=2):
        value = row.get("update")
        if value is None or not value.strip().isdigit() or None in row:
            raise RunDirError(
                f"{path} line {line}: not a row a3c_jax wrote (update {value!r}, "
                f"{len([v for v in row.values() if v is not None])} fields); fix or delete "
                "that line"
            )
    return rows


def truncate_metrics(run_dir: Path, update: int) -> None:
    """Drops rows past `update` (written after the checkpoint a run resumes from). Raises
    `RunDirError` for a hand-edited file it cannot read (`_rows`)."""
    path = Path(run_dir) / METRICS_FILE
    if not _exists(path):
        return
    repair_metrics(path)
    rows = _rows(path)
    kept = [r for r in rows if int(r["update"]) <= update]
    if len(kept) == len(rows):
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(kept)
    ckpt.write_atomic(path, buffer.getvalue().encode())
