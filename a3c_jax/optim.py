"""The optimiser and the one gradient step every algorithm takes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import optax

from a3c_jax.types import Params, TrainState

if TYPE_CHECKING:
    from a3c_jax.config import Config


def make_optimizer(config: Config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """`clip_by_global_norm(max_grad_norm)` then Adam or RMSprop, at a constant or linearly
    decaying (`anneal_lr`) learning rate. Returns the optimiser and its learning-rate schedule.

    RMSprop follows the A3C paper and Stable-Baselines3 (`decay=rmsprop_decay`, `eps` inside the
    square root).
    """
    if config.anneal_lr:
        schedule = optax.linear_schedule(config.lr, 0.0, transition_steps=config.num_updates)
    else:
        schedule = optax.constant_schedule(config.lr)
    if config.optimizer == "adam":
        base = optax.adam(schedule, eps=config.optimizer_eps)
    else:
        base = optax.rmsprop(schedule, decay=config.rmsprop_decay, eps=config.optimizer_eps)
    if math.isinf(config.max_grad_norm):
        return base, schedule
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), base), schedule


def compute_gradients(
    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    params: Params,
    *batch: Any,
) -> tuple[Params, dict[str, jax.Array]]:
    """Gradients of `loss_fn(params, *batch) -> (loss, metrics)` with respect to `params`.

    Returns the gradients and the loss's metrics with `grad_norm` (before clipping) added. This is
    the one place every algorithm differentiates its loss.
    """
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params, *batch)
    return grads, {**metrics, "grad_norm": optax.tree.norm(grads)}


def apply_gradients(
    optimizer: optax.GradientTransformation, train_state: TrainState, grads: Params
) -> TrainState:
    """One optimiser step with `grads`: the one place parameters change."""
    updates, opt_state = optimizer.update(grads, train_state.opt_state, train_state.params)
    params = optax.apply_updates(train_state.params, updates)
    return TrainState(params, opt_state, train_state.update_step + 1)


def gradient_step(
    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    optimizer: optax.GradientTransformation,
    train_state: TrainState,
    *batch: Any,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """`compute_gradients` then `apply_gradients`: one optimiser step on `loss_fn`.

    Returns the new state and the loss's metrics with `grad_norm` added.
    """
    grads, metrics = compute_gradients(loss_fn, train_state.params, *batch)
    return apply_gradients(optimizer, train_state, grads), metrics
