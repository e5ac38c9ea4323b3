"""Acting with trained parameters: `make_act` for any loop, `evaluate` for returns.

`compile_evaluation` compiles `evaluate`'s program in a background thread while training runs,
so that the evaluation after training runs at once instead of compiling a second program.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from a3c_jax import background, envs, wrappers
from a3c_jax.config import Config
from a3c_jax.networks import Networks, make_networks
from a3c_jax.rollout import EpisodeState, PolicyFn, episode_step, rollout_keys, start_episodes
from a3c_jax.types import Params, PRNGKey


def acting_policy(networks: Networks, spec: envs.EnvSpec, greedy: bool) -> PolicyFn:
    """The policy of trained parameters: the distribution's mode (`greedy`) or a sample,
    clipped to the action bounds; `(params, obs [B, O...], key) -> action [B, A...]`."""

    def policy_fn(params: Params, obs: jax.Array, key: PRNGKey | None) -> jax.Array:
        pi = networks.policy(params, jnp.asarray(obs, jnp.float32))
        return envs.clip_action(spec, pi.mode() if greedy else pi.sample(key))

    return policy_fn


@functools.lru_cache(maxsize=64)
def _jitted_act(config: Config, greedy: bool) -> Callable:
    spec = wrappers.make_env(config, training=False)
    return jax.jit(acting_policy(make_networks(config, spec), spec, greedy))


def make_act(config: Config, params: Params, greedy: bool = True) -> Callable[..., jax.Array]:
    """A jitted policy `act(obs, key=None) -> action` for observations `[O...]` or `[B, O...]`.

    Observations are the environment's own (after `config`'s transforms, `wrappers.make_env`):
    parameters trained with `normalize_obs` carry their frozen statistics (`TrainResult.params`,
    `a3c_jax.load`) and normalise them here.

    Greedy (the distribution's mode: argmax, or the Gaussian mean clipped to the action bounds)
    by default; with `greedy=False` it samples and needs `key`.
    """
    jitted = _jitted_act(config, greedy)

    def act(obs: jax.Array, key: PRNGKey | None = None) -> jax.Array:
        if not greedy and key is None:
            raise ValueError("a stochastic act (greedy=False) needs a PRNG key: act(obs, key)")
        return jitted(params, obs, key)

    return act


def play_episodes(
    spec: envs.EnvSpec, policy_fn: PolicyFn, params: Params, key: PRNGKey, num_episodes: int
) -> jax.Array:
    """Undiscounted returns `[num_episodes]` of whole episodes, one per environment, played in
    parallel with `policy_fn(params, obs [N, O...], key) -> action [N, A...]` (each environment
    acting on its own observation with its own key: `rollout.episode_step`) until each ends
    (termination or time limit; at most 100,000 steps for environments without a limit). A
    `while_loop` that stops with the longest episode; each step's keys are drawn in the loop."""
    max_steps = spec.max_episode_steps or 100_000
    key, reset_key = jax.random.split(key)
    Loop = tuple[EpisodeState, PRNGKey, jax.Array, jax.Array]  # state, key, totals [N], step

    def cond(loop: Loop) -> jax.Array:
        state, _, _, t = loop
        return jnp.any(state.alive) & (t < max_steps)

    def body(loop: Loop) -> Loop:
        state, key, totals, t = loop
        key, step_key = jax.random.split(key)
        keys = rollout_keys(step_key, state.carry.env_id, 1)[0]
        state, (transition, valid) = episode_step(spec, policy_fn, params, state, keys)
        return state, key, totals + jnp.where(valid, transition.reward, 0.0), t + 1

    carry = envs.reset(spec, reset_key, num_episodes)
    totals = jnp.zeros((num_episodes,), jnp.float32)
    loop = (start_episodes(carry), key, totals, jnp.zeros((), jnp.int32))
    return jax.lax.while_loop(cond, body, loop)[2]


@functools.lru_cache(maxsize=64)
def _make_evaluator(
    config: Config, num_episodes: int, greedy: bool
) -> Callable[[Params, PRNGKey], jax.Array]:
    spec = wrappers.make_env(config, training=False)
    policy_fn = acting_policy(make_networks(config, spec), spec, greedy)
    return jax.jit(lambda params, key: play_episodes(spec, policy_fn, params, key, num_episodes))


def evaluate(
    config: Config, params: Params, key: PRNGKey, num_episodes: int = 100, greedy: bool = True
) -> jax.Array:
    """Undiscounted returns `[num_episodes]` of whole episodes played with `params`.

    Episodes run in parallel, each from its own reset, until they end (termination or the
    environment's time limit). Greedy actions by default; `greedy=False` samples from the policy.
    Runs the program `compile_evaluation` compiled for these arguments' shapes, if any.
    """
    if num_episodes <= 0:
        raise ValueError(f"num_episodes={num_episodes} must be positive")
    if config.host_env:  # a host environment: a Python loop
        from a3c_jax.host import evaluation as host_evaluation

        return host_evaluation.evaluate(config, params, key, num_episodes, greedy)
    program = _precompiled(config, num_episodes, greedy, (params, key))
    if program is not None:
        return program(params, key)
    return _make_evaluator(config, num_episodes, greedy)(params, key)


# --------------------------------------------------------------------------- compiled ahead

# (config, num_episodes, greedy) -> future of (argument signature, compiled program)
_AHEAD: dict[tuple[Config, int, bool], concurrent.futures.Future] = {}


def _signature(args: Any) -> tuple:
    """What a compiled program's arguments must match: structure, shapes and dtypes."""
    leaves = jax.tree.leaves(args)
    return jax.tree.structure(args), tuple((tuple(x.shape), jnp.dtype(x.dtype)) for x in leaves)


def param_shapes(config: Config) -> Params:
    """One seed's parameters of `config` as `jax.ShapeDtypeStruct`s (traced, not computed)."""
    from a3c_jax.saving import policy_params
    from a3c_jax.train import make_trainer

    one_device = config if config.num_devices == 1 else config.replace(num_devices=1)
    state = jax.eval_shape(make_trainer(one_device).init, jax.random.PRNGKey(0))
    return jax.eval_shape(lambda s: policy_params(one_device, s, False), state)


def compile_evaluation(
    config: Config, num_episodes: int = 100, greedy: bool = True, params: Params | None = None
) -> concurrent.futures.Future:
    """Starts compiling `evaluate(config, params, key, num_episodes, greedy)` in a daemon
    thread and returns at once. A later `evaluate` with arguments of these shapes (a
    `jax.random.PRNGKey` and one seed's parameters, `params` if given: arrays or
    `jax.ShapeDtypeStruct`s) runs the compiled program, waiting for it if need be.

    The future holds (argument signature, compiled program); on a failure `evaluate` compiles.
    """

    def work() -> tuple[tuple, Callable]:
        args = (
            param_shapes(config) if params is None else params,
            jax.eval_shape(jax.random.PRNGKey, 0),
        )
        program = _make_evaluator(config, num_episodes, greedy).lower(*args).compile()
        return _signature(args), program

    future = background.start(work, name="a3c_jax-compile-evaluation")
    _AHEAD[(config, num_episodes, greedy)] = future
    return future


def _precompiled(config: Config, num_episodes: int, greedy: bool, args: Any) -> Callable | None:
    """The program `compile_evaluation` made for `args`, or None (none, failed, or other
    shapes or devices: arrays placed on another device than the default one)."""
    future = _AHEAD.get((config, num_episodes, greedy))
    if future is None or future.exception() is not None:
        return None
    signature, program = future.result()
    leaves = jax.tree.leaves(args)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return None  # evaluate under a transformation: traced into the caller's program
    default = jax.devices()[0]
    placed_elsewhere = any(
        isinstance(x, jax.Array) and x.sharding.device_set != {default} for x in leaves
    )
    return None if placed_elsewhere or _signature(args) != signature else program
