"""Rollouts: the policy acting in vectorised environments, `[T, B]` time-major.

`rollout` plays a fixed number of steps; `rollout_episodes` plays whole episodes, padded to a
fixed length and masked. Both are a `lax.scan` taking each step with `policy_step`. Every loop
that plays each environment's first episode (`rollout_episodes` for training,
`evaluation.play_episodes`, `video.play_recorded`) steps with `episode_step`.

Policies are stateful: a policy acts on the observation and the hidden state the carry holds
(`EnvCarry.core_state`, `()` leaves for feed-forward networks) and returns the next state, which
the carry keeps; an environment whose carry has `episode_length == 0` is at its episode's first
step, and the policy resets its state there (`networks.reset_core`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from a3c_jax import envs
from a3c_jax.algorithms.networks import Networks
from a3c_jax.core.types import CoreState, EnvCarry, Params, PRNGKey, Transition

# (params, obs [B, O...], first [B] bool, state CoreState [B], key) -> (action [B, A...], state)
PolicyFn = Callable[[Params, jax.Array, jax.Array, CoreState, PRNGKey], tuple[jax.Array, CoreState]]


def stateless(
    policy_fn: Callable[[Params, jax.Array, PRNGKey], jax.Array],
) -> PolicyFn:
    """A `PolicyFn` from a policy without hidden state, `(params, obs [B, O...], key) -> action`
    (a random policy, say): it passes the state through."""

    def fn(params: Params, obs: jax.Array, first: jax.Array, state: CoreState, key: PRNGKey):
        del first
        return policy_fn(params, obs, key), state

    return fn


def with_initial_state(networks: Networks, carry: EnvCarry) -> EnvCarry:
    """`carry` (fresh from `envs.reset`) holding the networks' initial hidden state for its `B`
    environments."""
    return carry._replace(core_state=networks.initial_state(carry.env_id.shape[0]))


def rollout_keys(key: PRNGKey, env_id: jax.Array, num_steps: int, hold: int = 1) -> jax.Array:
    """The keys of `num_steps` steps of the environments `env_id` `[B]`: `[T, 2, B]` keys (raw:
    `[T, 2, B, 2]`), at `[t, 0, b]` environment `b`'s action key at step `t`, at `[t, 1, b]` its
    environment-step key.

    They are split from `envs.env_keys(key, env_id)`, so an environment's draws depend on `key`
    and its own index alone, not on how the batch is split over devices. Drawn for the whole
    rollout at once: two hashing passes over the batch instead of two at every step (on the CPU
    backend each pass is a small XLA loop, costly to run at every step and to compile).

    `hold > 1` hands each environment the same action key for `hold` steps in a row (the key
    of step `t - t % hold`), from the rollout's first step: a policy whose noise is a function
    of its key (gSDE, `distributions.StateDependentGaussian`) then keeps its noise that long.
    """
    per_env = envs.env_keys(key, env_id)
    keys = jax.vmap(lambda k: jax.random.split(k, 2 * num_steps))(per_env)  # [B, 2T, ...]
    keys = keys.reshape(env_id.shape[0], num_steps, 2, *keys.shape[2:])
    if hold > 1:
        held = jnp.arange(num_steps) // hold * hold  # [T] each step's window start
        keys = keys.at[:, :, 0].set(keys[:, held, 0])
    return jnp.moveaxis(keys, 0, 2)


def rollout_draws(
    spec: envs.EnvSpec, key: PRNGKey, env_id: jax.Array, num_steps: int, hold: int = 1
) -> tuple[jax.Array, envs.StepDraws | jax.Array]:
    """`rollout_keys` as the steps of a rollout take them: the action keys `[T, B]` and the
    environments' draws made ahead from their step keys (`envs.step_draws`, `[T, B]`), so that
    no step hashes a key of its own."""
    keys = rollout_keys(key, env_id, num_steps, hold)
    return keys[:, 0], jax.vmap(functools.partial(envs.step_draws, spec))(keys[:, 1])


def act_each(
    policy_fn: PolicyFn,
    params: Params,
    obs: jax.Array,
    first: jax.Array,
    state: CoreState,
    keys: jax.Array,
) -> tuple[jax.Array, CoreState]:
    """Actions `[B, A...]` and next hidden states `[B, ...]` for observations `obs` `[B, O...]`,
    each environment acting on its own observation, episode start `first[b]`, state and key
    `keys[b]` (`policy_fn` vmapped over environments)."""

    def one(obs: jax.Array, first: jax.Array, state: CoreState, env_key: PRNGKey):
        state = jax.tree.map(lambda x: x[None], state)
        action, state = policy_fn(params, obs[None], first[None], state, env_key)
        return action[0], jax.tree.map(lambda x: x[0], state)

    return jax.vmap(one)(obs, first, state, keys)


def policy_step(
    spec: envs.EnvSpec, policy_fn: PolicyFn, params: Params, carry: EnvCarry, keys: Any
) -> tuple[EnvCarry, Transition]:
    """One step of `B` environments acting with `policy_fn` on the carry's hidden state (reset
    where `episode_length == 0`: an episode's first step); `keys` holds each environment's
    action key `[B]` and its step key `[B]` or step draws (`envs.step_draws`): one step of
    `rollout_draws` (or of `rollout_keys`, `[2, B]`)."""
    first = carry.episode_length == 0
    action, core_state = act_each(policy_fn, params, carry.obs, first, carry.core_state, keys[0])
    carry, transition = envs.step_each(spec, keys[1], carry, action)
    return carry._replace(core_state=core_state), transition


def rollout(
    spec: envs.EnvSpec,
    policy_fn: PolicyFn,
    params: Params,
    carry: EnvCarry,
    key: PRNGKey,
    num_steps: int,
    hold: int = 1,
) -> tuple[EnvCarry, Transition]:
    """Plays `num_steps` steps in `B` environments with the policy's current parameters, with the
    keys `rollout_keys(key, carry.env_id, num_steps, hold)` (drawn ahead: `rollout_draws`).

    Returns the carry after the last step and the transitions, time-major `[T, B, ...]`.
    """

    def body(carry: EnvCarry, keys: tuple) -> tuple[EnvCarry, Transition]:
        return policy_step(spec, policy_fn, params, carry, keys)

    return jax.lax.scan(body, carry, rollout_draws(spec, key, carry.env_id, num_steps, hold))


def sampling_policy(networks: Networks) -> PolicyFn:
    """The behaviour policy of every on-policy algorithm here: `a ~ π(·|obs, h)`."""

    def policy_fn(
        params: Params, obs: jax.Array, first: jax.Array, state: CoreState, key: PRNGKey
    ) -> tuple[jax.Array, CoreState]:
        pi, _, state = networks.step(params, obs, first, state)
        return pi.sample(key), state

    return policy_fn


class EpisodeState(NamedTuple):
    """The carry of a loop over each environment's first episode."""

    carry: EnvCarry
    alive: jax.Array  # [B] bool: the environment's first episode has not ended yet


def start_episodes(carry: EnvCarry) -> EpisodeState:
    """Every environment of `carry` at the start of its first episode."""
    return EpisodeState(carry, jnp.ones(carry.obs.shape[:1], bool))


def episode_step(
    spec: envs.EnvSpec, policy_fn: PolicyFn, params: Params, state: EpisodeState, keys: Any
) -> tuple[EpisodeState, tuple[Transition, jax.Array]]:
    """One `policy_step` (its `keys`) that marks each environment's first episode.

    Returns the new state, the transition and `valid` `[B]`: True where the step belongs to the
    first episode (up to and including its `done`). Environments whose episode ended keep
    stepping (into their auto-reset next episode), with `valid` False.
    """
    carry, transition = policy_step(spec, policy_fn, params, state.carry, keys)
    return EpisodeState(carry, state.alive & ~transition.done), (transition, state.alive)


def rollout_episodes(
    spec: envs.EnvSpec,
    policy_fn: PolicyFn,
    params: Params,
    carry: EnvCarry,
    key: PRNGKey,
    max_steps: int,
    hold: int = 1,
) -> tuple[EnvCarry, Transition, jax.Array]:
    """Plays `max_steps` steps in `B` environments and marks each one's first episode, for the
    episodic algorithms (`da2c`, `ac_replay`); with `max_steps` at least the time limit, every
    environment finishes the episode it is in.

    Steps after an environment's episode ended are marked invalid and must count for nothing
    (`episode_step`). A fixed-length `lax.scan`, not a `while_loop` that stops with the longest
    episode: under `vmap` over seeds a `while_loop` copies its whole carry (the `[T, B]` buffers)
    at every step, and the loss costs the same `[T, B]` either way. `hold`: as `rollout_keys`.

    Returns the carry after the last step, the transitions `[max_steps, B, ...]` and `valid`
    `[max_steps, B]` bool: True up to and including each environment's first `done`.
    """

    def body(state: EpisodeState, keys: tuple) -> tuple[EpisodeState, tuple[Transition, jax.Array]]:
        return episode_step(spec, policy_fn, params, state, keys)

    keys = rollout_draws(spec, key, carry.env_id, max_steps, hold)
    state, (traj, valid) = jax.lax.scan(body, start_episodes(carry), keys)
    return state.carry, traj, valid
