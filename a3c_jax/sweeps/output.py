"""A sweep's folder: every setting as a run folder of its own, the table, the picture, the best.

    sweep.json           the base config, the space, the settings, seeds, batch size, timings
    settings/000/        config.json (the setting's whole Config) and metrics.csv (the columns of
                         `a3c-jax train`'s), so `a3c-jax plot DIR/settings/*` draws them
    table.md, table.csv  per setting: greedy return mean ± std, worst seed, training return, ...
    sweep.png            each setting's greedy return over seeds (a heatmap for a 2-D grid)
    best.json            the best setting's whole Config: `a3c-jax train --config DIR/best.json`

Nothing here is ever written into a folder that already holds something (`new_folder`).
"""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from a3c_jax.config import Config
from a3c_jax.runs import metrics_log
from a3c_jax.runs.run_folder import RunDirError, versions, write_json

SETTINGS_DIR = "settings"
METRIC_CHUNKS = 50  # rows per seed in each setting's metrics.csv


def new_folder(path: str | os.PathLike[str]) -> Path:
    """`path` as a new, empty folder; refuses one that exists with anything in it."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunDirError(f"--out {path}: exists and is not an empty folder; choose a new one")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"--out {path}: cannot create the folder: {error.strerror}") from error
    return path


def metric_rows(metrics: Any, updates: np.ndarray, seconds: float) -> list[dict[str, Any]]:
    """One setting's per-update metrics `[S, U]` as `metrics_log.METRIC_COLUMNS` rows, in
    `METRIC_CHUNKS` chunks per seed; `time_s` spreads the batch's `seconds` evenly."""
    metrics = {name: np.asarray(v) for name, v in metrics._asdict().items()}
    num_updates = metrics["env_steps"].shape[-1]
    size = max(1, math.ceil(num_updates / METRIC_CHUNKS))
    rows = []
    for start in range(0, num_updates, size):
        stop = min(start + size, num_updates)
        chunk = {name: v[:, start:stop] for name, v in metrics.items()}
        num_valid = np.clip(updates - start, 0, stop - start)
        done = np.minimum(updates, stop)
        steps = float(np.sum(chunk["env_steps"][:, -1] - chunk["env_steps"][:, 0]))
        time_s = seconds * stop / num_updates
        sps = steps / max(seconds * (stop - start) / num_updates, 1e-9)
        rows += metrics_log.chunk_rows(chunk, num_valid, done, time_s, sps)
    return sorted(rows, key=lambda r: (r["seed"], r["update"]))


def write_setting(folder: Path, config: Config, rows: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", config.to_dict())
    writer = metrics_log.CsvMetrics(folder / "metrics.csv")
    writer.write(rows)
    writer.close()


def write_table(folder: Path, rows: list[dict[str, Any]], markdown: str) -> None:
    (folder / "table.md").write_text(markdown)
    with open(folder / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_sweep(folder: Path, result: Any, space: dict, threshold: float | None = None) -> None:
    """Writes a finished `sweep.SweepResult` into `folder` (made by `new_folder`)."""
    per_setting_s = result.run_seconds / max(len(result.settings), 1)
    for i, setting in enumerate(result.settings):
        metrics = type(result.metrics)(*(np.asarray(v)[i] for v in result.metrics))
        rows = metric_rows(metrics, result.updates[i], per_setting_s * result.batch_size)
        write_setting(folder / SETTINGS_DIR / f"{i:03d}", result.config.replace(**setting), rows)
    write_table(folder, result.table(threshold), result.markdown(threshold))
    write_json(folder / "best.json", result.best.to_dict())
    write_json(
        folder / "sweep.json",
        {
            "config": result.config.to_dict(),
            "space": space,
            "settings": result.settings,
            "num_seeds": result.num_seeds,
            "batch_size": result.batch_size,
            "compile_seconds": round(result.compile_seconds, 3),
            "run_seconds": round(result.run_seconds, 3),
            "best_index": result.best_index,
            "command": sys.argv,
            "versions": versions(),
        },
    )
    from a3c_jax.viz import plotting

    label = "greedy return" if result.evaluated else "training return (last tenth)"
    plotting.plot_sweep(result.settings, result.per_seed(), folder / "sweep.png", label)
