"""The optimiser and the one gradient step every algorithm takes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

from a3c_jax.core.types import LossMetrics, Params, TrainState

if TYPE_CHECKING:
    from a3c_jax.config import Config


class Optimizer(NamedTuple):
    """`tx` gives the update direction at unit learning rate (clipping, then Adam or RMSprop);
    `learning_rate(env_steps)` scales it. Both optimisers are linear in the learning rate, so
    this equals `optax.adam(schedule)`, with the schedule read off environment steps rather than
    update counts: the same for fixed-size rollouts, and right for episodic ones too.

    `axis_name` names the device axis of gradient parallelism (`a3c_jax.training.parallel`):
    gradients, loss metrics and environment steps are then averaged (summed) over it, so that every
    device takes the same step. `None` on one device.

    The optimiser works on the parameters flattened into one vector (`flatten`), so its state is
    a few vectors rather than a few copies of the parameter tree: one fused XLA kernel for the
    whole step instead of several per parameter array. On this project's 2-core CPU that (with
    the divergence check on the same vector) took a chunk of the default training loop from 288
    XLA kernels to 211, halved its lowering and cut its compile by a third. Updates are the same
    as on the tree, element by element."""

    tx: optax.GradientTransformation
    learning_rate: Callable[[jax.Array], jax.Array]  # env steps taken so far [] -> lr []
    axis_name: str | None = None

    def init(self, params: Params) -> optax.OptState:
        return self.tx.init(flatten(params))


def make_optimizer(config: Config, axis_name: str | None = None) -> Optimizer:
    """`clip_by_global_norm(max_grad_norm)` then Adam or RMSprop, at a constant or linearly
    decaying (`anneal_lr`: to 0 at `total_timesteps`) learning rate.

    RMSprop follows the A3C paper and Stable-Baselines3 (`decay=rmsprop_decay`, `eps` inside the
    square root). `axis_name`: the device axis gradients are averaged over (see `Optimizer`).
    """
    if config.optimizer == "adam":
        base = optax.adam(1.0, eps=config.optimizer_eps)
    else:
        base = optax.rmsprop(1.0, decay=config.rmsprop_decay, eps=config.optimizer_eps)
    # A traced `max_grad_norm` (a sweep's input, `a3c_jax.sweeps.grid`) always clips: at inf that is
    # the identity.
    if not (isinstance(config.max_grad_norm, float | int) and math.isinf(config.max_grad_norm)):
        base = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), base)

    def learning_rate(env_steps: jax.Array) -> jax.Array:
        if not config.anneal_lr:
            return jnp.asarray(config.lr, jnp.float32)
        progress = jnp.asarray(env_steps, jnp.float32) / config.total_timesteps
        return config.lr * jnp.clip(1.0 - progress, 0.0, 1.0)

    return Optimizer(base, learning_rate, axis_name)


def flatten(tree: Any) -> jax.Array:
    """All leaves of `tree` raveled and concatenated, `[num_params]` (`ravel_pytree`)."""
    return jax.flatten_util.ravel_pytree(tree)[0]


def unraveler(shapes: Any) -> tuple[jax.ShapeDtypeStruct, Callable[[jax.Array], Any]]:
    """The shape of `flatten` of a tree of `shapes` (`jax.ShapeDtypeStruct`s) and its inverse,
    `[num_params]` -> the tree; traced only, so nothing runs or compiles (a `ravel_pytree` of
    zeros would run, and compile, one operation per leaf)."""
    found: list[Callable[[jax.Array], Any]] = []

    def ravel(tree: Any) -> jax.Array:
        flat, unravel = jax.flatten_util.ravel_pytree(tree)
        found.append(unravel)  # built from the leaves' static shapes and dtypes alone
        return flat

    flat = jax.eval_shape(ravel, shapes)
    return flat, found[0]


def device_mean(tree: Any, axis_name: str, weight: jax.Array | None = None) -> Any:
    """The mean of `tree` over the devices of `axis_name`: plain (`lax.pmean`) when every device
    weighs the same (`weight` None), else weighted by each device's `weight` `[]` (its number of
    samples), so that per-device means of unequal batches average to the mean of the whole
    batch: `Σ_d w_d x_d / Σ_d w_d`."""
    if weight is None:
        return jax.lax.pmean(tree, axis_name)
    weight = jnp.asarray(weight, jnp.float32)
    total = jax.lax.psum(weight, axis_name)
    return jax.tree.map(
        lambda x: jax.lax.psum(x * (weight / total).astype(x.dtype), axis_name), tree
    )


def compute_gradients(
    loss_fn: Callable[..., tuple[jax.Array, LossMetrics]],
    params: Params,
    *batch: Any,
    axis_name: str | None = None,
    weight: jax.Array | None = None,
) -> tuple[Params, LossMetrics]:
    """Gradients of `loss_fn(params, *batch) -> (loss, metrics)` with respect to `params`.

    Returns the gradients and the loss's metrics with `grad_norm` (before clipping) added. This is
    the one place every algorithm differentiates its loss.

    With `axis_name` (gradient parallelism: one call per device, each on its own `batch`), the
    gradients and metrics are averaged over the devices (`device_mean`, weighted by `weight`, the
    device's number of samples, where batches differ in size) before `grad_norm` is taken, so every
    device returns the gradient of the whole batch's loss. The parameters are first cast to
    device-varying: inside `shard_map` the gradient of device-invariant (replicated) parameters is
    already summed over devices, and a `pmean` of it would be `D` times too large; the cast makes
    the same code right under `shard_map` and `pmap`.
    """
    if axis_name is None:
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, *batch)
    else:
        local_params = jax.lax.pcast(params, axis_name, to="varying")
        grads, metrics = jax.grad(loss_fn, has_aux=True)(local_params, *batch)
        grads, metrics = device_mean((grads, metrics), axis_name, weight)
    return grads, metrics | {"grad_norm": jnp.linalg.norm(flatten(grads))}


def apply_gradients(
    optimizer: Optimizer, train_state: TrainState, grads: Params, env_steps: jax.Array | int
) -> TrainState:
    """One optimiser step with `grads`, at the learning rate of the environment steps taken
    before it; then counts the update and its `env_steps` (summed over the optimiser's device
    axis, if any). The one place parameters change."""
    env_steps = jnp.asarray(env_steps, jnp.int32)
    if optimizer.axis_name is not None:
        env_steps = jax.lax.psum(env_steps, optimizer.axis_name)
    params, unflatten = jax.flatten_util.ravel_pytree(train_state.params)
    updates, opt_state = optimizer.tx.update(flatten(grads), train_state.opt_state, params)
    lr = optimizer.learning_rate(train_state.env_steps)
    return TrainState(
        unflatten(params + (lr * updates).astype(params.dtype)),
        opt_state,
        train_state.update_step + 1,
        train_state.env_steps + env_steps,
    )


def gradient_step(
    loss_fn: Callable[..., tuple[jax.Array, LossMetrics]],
    optimizer: Optimizer,
    train_state: TrainState,
    env_steps: jax.Array | int,
    *batch: Any,
    weigh_devices: bool = False,
) -> tuple[TrainState, LossMetrics]:
    """`compute_gradients` then `apply_gradients`: one optimiser step on `loss_fn(params, *batch)`
    that consumed `env_steps` environment steps.

    Returns the new state and the loss's metrics with `grad_norm` and `learning_rate` added. With
    the optimiser's `axis_name`, each device passes its own batch and `env_steps`; gradients are
    averaged, each device weighed by its `env_steps` if `weigh_devices` (batches that differ in
    size: episodic algorithms), else equally.
    """
    grads, metrics = compute_gradients(
        loss_fn,
        train_state.params,
        *batch,
        axis_name=optimizer.axis_name,
        weight=jnp.asarray(env_steps, jnp.float32) if weigh_devices else None,
    )
    metrics = metrics | {"learning_rate": optimizer.learning_rate(train_state.env_steps)}
    return apply_gradients(optimizer, train_state, grads, env_steps), metrics


def init_train_state(optimizer: Optimizer, params: Params) -> TrainState:
    """Fresh counters and optimiser state for `params`."""
    zero = jnp.zeros((), jnp.int32)
    return TrainState(params, optimizer.init(params), zero, zero)
