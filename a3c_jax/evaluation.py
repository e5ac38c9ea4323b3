"""Acting with trained parameters: `make_act` for any loop, `evaluate` for returns."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from a3c_jax import envs, wrappers
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
    spec = wrappers.make_env(config, training=False)
    return jax.jit(functools.partial(_select_action, make_networks(config, spec), spec, greedy))


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
    spec = wrappers.make_env(config, training=False)
    policy_fn = functools.partial(_select_action, make_networks(config, spec), spec, greedy)
    return jax.jit(lambda params, key: play_episodes(spec, policy_fn, params, key, num_episodes))


def evaluate(
    config: Config, params: Params, key: PRNGKey, num_episodes: int = 100, greedy: bool = True
) -> jax.Array:
    """Undiscounted returns `[num_episodes]` of whole episodes played with `params`.

    Episodes run in parallel, each from its own reset, until they end (termination or the
    environment's time limit). Greedy actions by default; `greedy=False` samples from the policy.
    """
    if num_episodes <= 0:
        raise ValueError(f"num_episodes={num_episodes} must be positive")
    return _make_evaluator(config, num_episodes, greedy)(params, key)
