"""Learning curves of run folders: return against environment steps and against wall-clock.

Each run folder gives one curve: the mean over its seeds of the chunk's mean training return,
with a band from the lowest to the highest seed. Seeds are put on a common x grid by linear
interpolation (seeds of episodic algorithms reach a given step count at different chunks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from a3c_jax import runs


def seed_curves(
    metrics: dict[str, np.ndarray], x_name: str, grid_size: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """`(x [G], returns [S, G])`: each seed's `return_mean` against `x_name`, interpolated onto
    a grid over the range all seeds cover (chunks without finished episodes are skipped)."""
    seeds = np.unique(metrics["seed"]).astype(int)
    series = []
    for s in seeds:
        rows = (metrics["seed"] == s) & np.isfinite(metrics["return_mean"])
        x, y = metrics[x_name][rows], metrics["return_mean"][rows]
        order = np.argsort(x, kind="stable")
        series.append((x[order], y[order]))
    series = [(x, y) for x, y in series if x.size]
    if not series:
        return np.zeros(0), np.zeros((0, 0))
    low = max(x[0] for x, _ in series)
    high = min(x[-1] for x, _ in series)
    if high <= low:
        high = max(x[-1] for x, _ in series)
    grid = np.linspace(low, high, grid_size) if high > low else np.array([low])
    return grid, np.stack([np.interp(grid, x, y) for x, y in series])


def plot_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Draws the learning curves of `run_dirs` (two panels: return against environment steps
    and against wall-clock seconds; mean over seeds, band from the lowest to the highest seed)
    into the PNG `out`. Raises `RunDirError` for a folder without metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    labels = _labels(run_dirs)
    for run_dir, label in zip(run_dirs, labels, strict=True):
        metrics = runs.read_metrics(run_dir)
        if metrics["seed"].size == 0:
            raise runs.RunDirError(f"{run_dir}: metrics.csv has no rows yet")
        num_seeds = len(np.unique(metrics["seed"]))
        for ax, x_name in zip(axes, ("env_steps", "time_s"), strict=True):
            x, curves = seed_curves(metrics, x_name)
            if not x.size:
                continue
            mean = curves.mean(axis=0)
            (line,) = ax.plot(x, mean, label=f"{label} ({num_seeds} seed{'s' * (num_seeds > 1)})")
            if num_seeds > 1:
                ax.fill_between(
                    x, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2
                )
    axes[0].set_xlabel("environment steps (per seed)")
    axes[1].set_xlabel("wall-clock seconds (compile included)")
    for ax in axes:
        ax.set_ylabel("training episode return")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _labels(run_dirs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Each run's folder name, with its config's env and algo."""
    labels = []
    for run_dir in run_dirs:
        path = Path(run_dir)
        label = path.name or str(path)
        config_file = path / runs.CONFIG_FILE
        if config_file.is_file():
            config = runs.read_json(config_file)
            label = f"{label}: {config.get('algo')} on {config.get('env_name')}"
        labels.append(label)
    return labels
