"""What the host does when training diverged: `DivergenceError` and `check_finite`.

The jitted loop records a non-finite update in `RunnerState.diverged` (`train.guarded`) instead of
raising; these read that record on the host and explain it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from a3c_jax import distributed
from a3c_jax.core.types import (
    DIVERGED_GRADIENT,
    DIVERGED_LOSS,
    DIVERGED_PARAMS,
    RunnerState,
    TrainResult,
)
from a3c_jax.errors import DivergenceError

_QUANTITIES = (
    (DIVERGED_LOSS, "loss"),
    (DIVERGED_GRADIENT, "gradient norm"),
    (DIVERGED_PARAMS, "parameters"),
)


def diverged_quantities(code: int) -> tuple[str, ...]:
    """The names of the non-finite quantities a divergence guard's `code` flags."""
    return tuple(name for bit, name in _QUANTITIES if code & bit)


def check_finite(
    state: RunnerState | TrainResult, checkpoint: str | None = None, num_seeds: int | None = None
) -> None:
    """Raises `DivergenceError` if the divergence guard stopped training in `state` (a
    `RunnerState` or `TrainResult`, one seed or vmapped over seeds), or, for an `AsyncResult`
    (`train_async`, which has no guard), if an update's loss or gradient norm or the final
    parameters are not finite; else returns None.

    The message names the first bad update, the non-finite quantities and the seeds. Give
    `num_seeds` where the flags also carry a device axis (`parallel_backend="pmap"`)."""
    if hasattr(state, "async_metrics"):  # an `AsyncResult` of `train_async`
        return _check_finite_async(state, checkpoint)
    runner = state.runner_state if isinstance(state, TrainResult) else state
    codes, updates = (
        np.asarray(x).reshape(num_seeds or -1, -1)[:, 0] if num_seeds else np.atleast_1d(x)
        for x in distributed.fetch((runner.diverged, runner.updates))
    )
    bad = np.flatnonzero(codes)
    if bad.size == 0:
        return
    first = int(bad[np.argmin(updates[bad])])
    update = int(updates[first]) + 1
    names = diverged_quantities(int(codes[first]))
    seeds = tuple(int(i) for i in bad)
    where = f"seed {', '.join(map(str, seeds))}: " if codes.shape[0] > 1 else ""
    message = (
        f"training diverged: {where}update {update} produced a non-finite "
        f"{' and '.join(names)}; later updates were skipped"
    )
    if checkpoint:
        message += f"; the last good state (update {update - 1}) is saved in {checkpoint}"
    message += ". Lower lr, keep max_grad_norm finite, or check reward_scale."
    raise DivergenceError(message, update, names, seeds, checkpoint)


def _check_finite_async(result: Any, checkpoint: str | None) -> None:
    """`check_finite` of an `AsyncResult`: its per-update metrics `[U]` and final parameters."""
    import jax

    metrics = result.metrics
    bad_loss = ~np.isfinite(np.asarray(metrics.total_loss))
    bad_grad = ~np.isfinite(np.asarray(metrics.grad_norm))
    bad_params = not all(np.all(np.isfinite(x)) for x in jax.tree.leaves(result.params))
    bad = np.flatnonzero(bad_loss | bad_grad)
    if bad.size == 0 and not bad_params:
        return
    first = int(bad[0]) if bad.size else len(bad_loss) - 1
    names = tuple(
        name
        for name, flag in (
            ("loss", bad.size and bad_loss[first]),
            ("gradient norm", bad.size and bad_grad[first]),
            ("parameters", not bad.size),
        )
        if flag
    )
    message = (
        f"training diverged: update {first + 1} of the asynchronous run produced a non-finite "
        f"{' and '.join(names)}"
    )
    if checkpoint:
        message += f"; the last good state is saved in {checkpoint}"
    message += ". Lower lr, keep max_grad_norm finite, or check reward_scale."
    raise DivergenceError(message, first + 1, names, (0,), checkpoint)
