"""Environment wrappers over `B` vectorised environments: observation transforms and normalisers.

A `VecWrapper` acts on the batch as `envs.reset` and `envs.step_each` hand it over, after the
gymnax step and its episode statistics (so episode returns stay the raw ones):

- `reset(state, obs) -> (state, obs)` on fresh episodes' observations `[B, O...]` (state None:
  the first reset; `envs.restart` passes the state it had, so statistics survive a restart);
- `step(state, transition, obs) -> (state, transition, obs)` rewrites a step's `next_obs` and
  `reward` and the observation `obs` `[B, O...]` the next action is chosen on.

Wrappers compose with `chain`; the chain's state, a dict by wrapper name, lives in
`EnvCarry.wrapper_state`, so it rides in the `RunnerState`: checkpointed, resumed bitwise, one per
seed under `vmap` and one copy per device (normaliser statistics are merged over the device axis
`axis_name`, so every device holds the same). Wrappers, in the order
`a3c_jax.algorithms.build.env_spec` applies them:

- `mask_velocity`: keeps the positions, drops the velocities (partial-observability tests);
- `frame_stack(k)`: the last `k` observations concatenated on the last axis;
- `normalize_obs`: `clip((o - μ) / sqrt(σ² + ε), ±c)` with running `μ, σ²` over every observation
  of the batch (Chan et al.'s parallel merge), as Stable-Baselines3's `VecNormalize`;
- `normalize_reward`: `clip(r / sqrt(Var[R] + ε), ±c)`, `R` each environment's running discounted
  return `R <- γ R + r` (0 after an episode ends), as `VecNormalize` and Brax.

Evaluation, `make_act` and video play the environment with the transforms only
(`build.env_spec(config, training=False)`): the frozen observation statistics travel with the
parameters as the `OBS_STATS` collection (`export_params`) and the networks apply them
(`networks.make_networks`), so an exported policy takes raw observations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from a3c_jax.core.types import Params, Transition

EPSILON = 1e-8  # ε under the square roots of the normalisers
OBS_STATS = "obs_stats"  # the parameters' collection holding frozen observation statistics

# The observation entries `mask_velocity` keeps (positions, angles), per environment.
POSITION_INDICES: dict[str, tuple[int, ...]] = {
    "CartPole-v1": (0, 2),  # x, θ (drops ẋ, θ̇)
    "Pendulum-v1": (0, 1),  # cos θ, sin θ (drops θ̇)
    "MountainCar-v0": (0,),  # position (drops velocity)
    "MountainCarContinuous-v0": (0,),
    "Acrobot-v1": (0, 1, 2, 3),  # cos/sin of both joints (drops both angular velocities)
}


class RunningStats(NamedTuple):
    """Mean and (population) variance of `count` samples, elementwise over a shape `S`."""

    mean: jax.Array  # [S...]
    var: jax.Array  # [S...]
    count: jax.Array  # [] float32


def empty_stats(shape: tuple[int, ...]) -> RunningStats:
    """No samples yet: `count = 0` (mean 0, variance 1, so normalising is the identity)."""
    return RunningStats(jnp.zeros(shape), jnp.ones(shape), jnp.zeros(()))


def merge(a: RunningStats, b: RunningStats) -> RunningStats:
    """The statistics of `a`'s and `b`'s samples together (Chan, Golub & LeVeque, 1979):

    `n = n_a + n_b`, `δ = μ_b - μ_a`, `μ = μ_a + δ n_b / n`,
    `σ² = (n_a σ²_a + n_b σ²_b + δ² n_a n_b / n) / n`. Either side may be empty (`count = 0`).
    """
    count = a.count + b.count
    safe = jnp.maximum(count, 1e-30)
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / safe)
    m2 = a.var * a.count + b.var * b.count + jnp.square(delta) * (a.count * b.count / safe)
    empty = count == 0
    return RunningStats(jnp.where(empty, a.mean, mean), jnp.where(empty, a.var, m2 / safe), count)


def _lead(x: jax.Array, ndim: int) -> jax.Array:
    """`x` `[S...]` with leading axes of size 1 up to `ndim` axes (explicit broadcasting)."""
    return x.reshape((1,) * (ndim - x.ndim) + x.shape)


def batch_stats(x: jax.Array, axis_name: str | None = None) -> RunningStats:
    """The statistics of the samples `x` `[N, S...]` (over the leading axis); with `axis_name`,
    of the samples of every device on that axis together (the same result on each)."""
    count = jnp.asarray(x.shape[0], jnp.float32)
    mean = jnp.mean(x, axis=0)
    if axis_name is None:
        return RunningStats(mean, jnp.mean(jnp.square(x - _lead(mean, x.ndim)), axis=0), count)
    total = jax.lax.psum(count, axis_name)
    global_mean = jax.lax.psum(mean * count, axis_name) / total
    m2 = jax.lax.psum(jnp.sum(jnp.square(x - _lead(global_mean, x.ndim)), axis=0), axis_name)
    return RunningStats(global_mean, m2 / total, total)


def update(stats: RunningStats, x: jax.Array, axis_name: str | None = None) -> RunningStats:
    """`stats` with the samples `x` `[N, S...]` (of every device on `axis_name`) merged in."""
    return merge(stats, batch_stats(x, axis_name))


def normalize(stats: RunningStats | Mapping[str, jax.Array], x: jax.Array, clip: float):
    """`clip((x - μ) / sqrt(σ² + ε), -clip, clip)` for `x` `[..., S...]`."""
    mean, var = (stats["mean"], stats["var"]) if isinstance(stats, Mapping) else stats[:2]
    scale = jax.lax.rsqrt(var + EPSILON)
    return jnp.clip((x - _lead(mean, x.ndim)) * _lead(scale, x.ndim), -clip, clip)


class VecWrapper(NamedTuple):
    """A pure wrapper over `B` environments (see the module's docstring)."""

    name: str
    obs_shape: Callable[[tuple[int, ...]], tuple[int, ...]]  # observation shape in -> out
    reset: Callable[[Any, jax.Array], tuple[Any, jax.Array]]
    step: Callable[[Any, Transition, jax.Array], tuple[Any, Transition, jax.Array]]


def mask_velocity(env_name: str) -> VecWrapper:
    """Keeps `POSITION_INDICES[env_name]` of each observation `[B, O] -> [B, K]`."""
    keep = jnp.asarray(POSITION_INDICES[env_name])

    def reset(state: Any, obs: jax.Array) -> tuple[Any, jax.Array]:
        return (), obs[..., keep]

    def step(state: Any, tr: Transition, obs: jax.Array) -> tuple[Any, Transition, jax.Array]:
        return (), tr._replace(next_obs=tr.next_obs[..., keep]), obs[..., keep]

    return VecWrapper(
        "mask_velocity", lambda s: (*s[:-1], len(POSITION_INDICES[env_name])), reset, step
    )


def frame_stack(num_frames: int) -> VecWrapper:
    """The last `num_frames` observations, oldest first, concatenated on the last axis:
    `[B, ..., C] -> [B, ..., k C]`. A fresh episode starts with its first observation `k` times.
    State: the frames `[k, B, ..., C]`."""

    def stacked(frames: jax.Array) -> jax.Array:
        return jnp.concatenate(list(frames), axis=-1)

    def reset(state: Any, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        frames = jnp.broadcast_to(obs, (num_frames, *obs.shape))
        return frames, stacked(frames)

    def step(frames: jax.Array, tr: Transition, obs: jax.Array):
        final = jnp.concatenate([frames[1:], tr.next_obs[None]])
        done = tr.done.reshape(tr.done.shape + (1,) * (obs.ndim - 1))
        new = jnp.where(
            done, jnp.broadcast_to(obs, frames.shape), jnp.concatenate([frames[1:], obs[None]])
        )
        return new, tr._replace(next_obs=stacked(final)), stacked(new)

    def shape(s: tuple[int, ...]) -> tuple[int, ...]:
        return (*s[:-1], s[-1] * num_frames)

    return VecWrapper("frame_stack", shape, reset, step)


def normalize_obs(clip: float, axis_name: str | None = None) -> VecWrapper:
    """Observations normalised by running statistics of every observation played (reset and
    step observations of all environments, on every device of `axis_name`). State:
    `RunningStats` over the observation's shape. The statistics are updated before they are
    applied, so the first observations are already centred."""

    def reset(stats: RunningStats | None, obs: jax.Array) -> tuple[RunningStats, jax.Array]:
        stats = empty_stats(obs.shape[1:]) if stats is None else stats
        stats = update(stats, obs, axis_name)
        return stats, normalize(stats, obs, clip)

    def step(stats: RunningStats, tr: Transition, obs: jax.Array):
        stats = update(stats, obs, axis_name)
        return (
            stats,
            tr._replace(next_obs=normalize(stats, tr.next_obs, clip)),
            normalize(stats, obs, clip),
        )

    return VecWrapper("normalize_obs", lambda s: s, reset, step)


class ReturnStats(NamedTuple):
    """`normalize_reward`'s state."""

    stats: RunningStats  # of the discounted returns `R`, shape ()
    discounted_return: jax.Array  # [B] each environment's running `R`


def normalize_reward(gamma: float, clip: float, axis_name: str | None = None) -> VecWrapper:
    """Rewards scaled by the running standard deviation of the discounted return
    `R_t = γ R_{t-1} + r_t` (reset to 0 after an episode ends), then clipped to `±clip`; the
    mean is not subtracted (that would change the optimal policy where episodes end)."""

    def reset(state: ReturnStats | None, obs: jax.Array) -> tuple[ReturnStats, jax.Array]:
        stats = empty_stats(()) if state is None else state.stats
        return ReturnStats(stats, jnp.zeros(obs.shape[:1])), obs

    def step(state: ReturnStats, tr: Transition, obs: jax.Array):
        ret = state.discounted_return * gamma + tr.reward
        stats = update(state.stats, ret, axis_name)
        reward = jnp.clip(tr.reward * jax.lax.rsqrt(stats.var + EPSILON), -clip, clip)
        state = ReturnStats(stats, jnp.where(tr.done, 0.0, ret))
        return state, tr._replace(reward=reward), obs

    return VecWrapper("normalize_reward", lambda s: s, reset, step)


def chain(*wrappers: VecWrapper) -> VecWrapper:
    """The wrappers applied in order; the state is a dict by wrapper name."""
    names = [w.name for w in wrappers]
    if len(set(names)) != len(names):
        raise ValueError(f"chain: wrapper names must be unique, got {names}")

    def obs_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
        for w in wrappers:
            shape = w.obs_shape(shape)
        return shape

    def reset(state: dict | None, obs: jax.Array) -> tuple[dict, jax.Array]:
        new = {}
        for w in wrappers:
            new[w.name], obs = w.reset(None if state is None else state[w.name], obs)
        return new, obs

    def step(state: dict, tr: Transition, obs: jax.Array) -> tuple[dict, Transition, jax.Array]:
        new = {}
        for w in wrappers:
            new[w.name], tr, obs = w.step(state[w.name], tr, obs)
        return new, tr, obs

    return VecWrapper("chain", obs_shape, reset, step)


def export_params(
    params: Params, wrapper_state: Any, batched: bool = False, device_axis: bool = False
) -> Params:
    """`params` with the observation statistics of `wrapper_state` (an `EnvCarry`'s, if it
    normalises observations) frozen into the `OBS_STATS` collection: what `evaluate`, `make_act`
    and video take. `batched`: the state has a leading seed axis (kept); `device_axis`: then a
    device axis, of which copy 0 is kept (every device holds the same statistics)."""
    if not isinstance(wrapper_state, Mapping) or "normalize_obs" not in wrapper_state:
        return params
    stats = wrapper_state["normalize_obs"]
    if device_axis:
        stats = jax.tree.map(lambda x: x[:, 0] if batched else x[0], stats)
    return {**params, OBS_STATS: {"mean": stats.mean, "var": stats.var}}


def prepare_obs(params: Params, obs: jax.Array, clip: float) -> jax.Array:
    """`obs` normalised by the frozen statistics in `params` (`export_params`), if it has them."""
    if isinstance(params, Mapping) and OBS_STATS in params:
        return normalize(params[OBS_STATS], jnp.asarray(obs, jnp.float32), clip)
    return obs
