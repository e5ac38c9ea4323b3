"""Acting with trained parameters: `make_act` for any loop, `evaluate` for returns."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from a3c_jax import envs
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
    spec = envs.make_env(config.env_name)
    return jax.jit(acting_policy(make_networks(config, spec), spec, greedy))


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
    spec = envs.make_env(config.env_name)
    policy_fn = acting_policy(make_networks(config, spec), spec, greedy)
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
