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

from a3c_jax.runs import chunked


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
    if Path(out).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise chunked.RunDirError(
            f"--out {out}: the plot is written as .png, .pdf or .svg (by its suffix)"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    labels = _labels(run_dirs)
    for run_dir, label in zip(run_dirs, labels, strict=True):
        metrics = chunked.read_metrics(run_dir)
        if metrics["seed"].size == 0:
            raise chunked.RunDirError(f"{run_dir}: metrics.csv has no rows yet")
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
        config_file = path / chunked.CONFIG_FILE
        if config_file.is_file():
            config = chunked.read_json(config_file)
            label = f"{label}: {config.get('algo')} on {config.get('env_name')}"
        labels.append(label)
    return labels


def plot_sweep(
    settings: Sequence[dict[str, float]],
    values: np.ndarray,
    out: str | os.PathLike[str],
    label: str = "greedy return",
) -> Path:
    """A sweep's picture: for a full 2-D grid a heatmap of the mean over seeds (each cell
    annotated with mean ± std), otherwise each setting's seeds as dots with their mean.
    `values`: `[settings, seeds]`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(settings[0])
    axes_values = [sorted({s[n] for s in settings}) for n in names]
    mean, std = np.nanmean(values, axis=1), np.nanstd(values, axis=1)
    if len(names) == 2 and len(settings) == len(axes_values[0]) * len(axes_values[1]) > 1:
        rows, cols = axes_values
        grid = np.full((len(rows), len(cols)), np.nan)
        for s, m in zip(settings, mean, strict=True):
            grid[rows.index(s[names[0]]), cols.index(s[names[1]])] = m
        fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 3, 0.8 * len(rows) + 2))
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        low, high = np.nanmin(grid), np.nanmax(grid)
        for s, m, d in zip(settings, mean, std, strict=True):
            r, c = rows.index(s[names[0]]), cols.index(s[names[1]])
            bright = high > low and (m - low) / (high - low) > 0.6  # viridis is light up there
            color = "k" if bright else "w"
            ax.text(c, r, f"{m:.1f}\n± {d:.1f}", ha="center", va="center", color=color, fontsize=8)
        ax.set_xticks(range(len(cols)), [f"{v:g}" for v in cols])
        ax.set_yticks(range(len(rows)), [f"{v:g}" for v in rows])
        ax.set_xlabel(names[1])
        ax.set_ylabel(names[0])
        fig.colorbar(image, ax=ax, label=f"{label}, mean over seeds")
    else:
        fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(settings) + 2), 4.5))
        x = np.arange(len(settings))
        for s in range(values.shape[1]):
            ax.plot(x, values[:, s], "o", color="gray", alpha=0.5, ms=4)
        ax.plot(x, mean, "_", color="C0", ms=18, mew=2, label="mean over seeds")
        ticks = [" ".join(f"{n}={s[n]:g}" for n in names) for s in settings]
        ax.set_xticks(x, ticks, rotation=70, ha="right", fontsize=7)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
