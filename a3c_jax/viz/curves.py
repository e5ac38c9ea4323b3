"""Learning curves from `UpdateMetrics` on the host (NumPy): smoothing and time to a threshold."""

from __future__ import annotations

import numpy as np

from a3c_jax.core.types import UpdateMetrics


def smoothed_return(metrics: UpdateMetrics, window_episodes: int = 20) -> np.ndarray:
    """The mean return of the latest `window_episodes` finished training episodes, after each
    update: `[..., U]` for metrics `[..., U]` (leading axes, e.g. seeds, are kept).

    Each update's `episode_return` is the mean over its `episodes` finished episodes; the window
    takes whole updates back until it holds at least `window_episodes` episodes (fewer at the
    start). NaN until the first episode ends.
    """
    count = np.asarray(metrics.episodes, np.float64)
    mean = np.nan_to_num(np.asarray(metrics.episode_return, np.float64))
    total_count = np.cumsum(count, axis=-1)
    total_return = np.cumsum(mean * count, axis=-1)

    def one_curve(n: np.ndarray, r: np.ndarray) -> np.ndarray:
        # Window start: the last update j such that episodes in (j, i] >= window_episodes.
        start = np.searchsorted(n, n - window_episodes, side="right") - 1
        n_before = np.where(start >= 0, n[np.maximum(start, 0)], 0.0)
        r_before = np.where(start >= 0, r[np.maximum(start, 0)], 0.0)
        episodes = n - n_before
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(episodes > 0, (r - r_before) / episodes, np.nan)

    flat_n = total_count.reshape(-1, total_count.shape[-1])
    flat_r = total_return.reshape(-1, total_return.shape[-1])
    curves = [one_curve(n, r) for n, r in zip(flat_n, flat_r, strict=True)]
    return np.stack(curves).reshape(total_count.shape)


def first_reaching(curve: np.ndarray, threshold: float) -> int | None:
    """Index of the first update whose (smoothed) return is at least `threshold` (1-D), or None."""
    hits = np.nonzero(np.asarray(curve) >= threshold)[0]
    return int(hits[0]) if hits.size else None
