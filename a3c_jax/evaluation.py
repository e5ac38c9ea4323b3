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

from a3c_jax import background, envs
from a3c_jax.config import Config
from a3c_jax.networks import Networks, make_networks
from a3c_jax.rollout import PolicyFn
from a3c_jax.types import EnvCarry, Params, PRNGKey


def _select_action(
    networks: Networks,
    spec: envs.EnvSpec,
    greedy: bool,
    params: Params,
    obs: jax.Array,
    key: PRNGKey | None,
) -> jax.Array:
    pi = networks.policy(params, jnp.asarray(obs, jnp.float32))
    return envs.clip_action(spec, pi.mode() if greedy else pi.sample(key))


@functools.lru_cache(maxsize=64)
def _jitted_act(config: Config, greedy: bool) -> Callable:
    spec = envs.make_env(config.env_name)
    return jax.jit(functools.partial(_select_action, make_networks(config, spec), spec, greedy))


def make_act(config: Config, params: Params, greedy: bool = True) -> Callable[..., jax.Array]:
    """A jitted policy `act(obs, key=None) -> action` for observations `[O...]` or `[B, O...]`.

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
    parallel with `policy_fn(params, obs [N, O...], key) -> action [N, A...]` until each ends
    (termination or time limit; at most 100,000 steps for environments without a limit)."""
    max_steps = spec.max_episode_steps or 100_000
    key, reset_key = jax.random.split(key)

    def cond(state: tuple) -> jax.Array:
        _, _, active, _, t = state
        return jnp.any(active) & (t < max_steps)

    def body(state: tuple) -> tuple:
        carry, key, active, totals, t = state
        key, act_key, step_key = jax.random.split(key, 3)
        carry, transition = envs.step(spec, step_key, carry, policy_fn(params, carry.obs, act_key))
        totals = totals + jnp.where(active, transition.reward, 0.0)
        return carry, key, active & ~transition.done, totals, t + 1

    state: tuple[EnvCarry, PRNGKey, jax.Array, jax.Array, jax.Array] = (
        envs.reset(spec, reset_key, num_episodes),
        key,
        jnp.ones((num_episodes,), bool),
        jnp.zeros((num_episodes,), jnp.float32),
        jnp.zeros((), jnp.int32),
    )
    return jax.lax.while_loop(cond, body, state)[3]


@functools.lru_cache(maxsize=64)
def _make_evaluator(
    config: Config, num_episodes: int, greedy: bool
) -> Callable[[Params, PRNGKey], jax.Array]:
    spec = envs.make_env(config.env_name)
    policy_fn = functools.partial(_select_action, make_networks(config, spec), spec, greedy)
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
    networks = make_networks(config, envs.make_env(config.env_name))
    return jax.eval_shape(networks.init, jax.random.PRNGKey(0))


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
