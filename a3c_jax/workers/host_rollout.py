"""The one place that crosses host and device: Gymnasium vector environments stepped by a jitted
policy, their steps gathered into the same time-major `Transition` `[T, B, ...]` the gymnax
rollout makes.

Autoreset: Gymnasium's `SAME_STEP` mode, the one that matches gymnax's. A step that ends an
episode returns the next episode's first observation, and the observation the action led to in
`info["final_obs"]`; `HostEnvs.step` returns that one as `next_obs`. Termination and truncation
stay apart, so a truncated step bootstraps from the critic's value of the state it was cut off in
(`actor_critic.bootstrap_values`, `returns.truncate_episodes`) and a terminated one from nothing.

Keys: the actions of a rollout are drawn with `rollout.rollout_keys(key, env_id, T)` (each
environment's own stream, as on gymnax), their noise for the whole rollout at once
(`action_noise`); the environments' own randomness is Gymnasium's, seeded once at reset from the
run's environment key (`seed_from_key`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from a3c_jax import envs
from a3c_jax.algorithms.networks import Networks
from a3c_jax.algorithms.rollout import rollout_keys
from a3c_jax.core.distributions import Distribution
from a3c_jax.core.types import Params, PRNGKey, Transition
from a3c_jax.envs import gymnasium_envs

VECTOR_MODES = ("sync", "async")


def seed_from_key(key: PRNGKey) -> int:
    """A Gymnasium seed (a non-negative 31-bit int) hashed from `key`'s bits on the host (no
    device call); environment `i` of a vector env then gets `seed + i`."""
    bits = np.asarray(jax.random.key_data(key), np.uint32).ravel()
    return int(np.random.SeedSequence(bits.tolist()).generate_state(1)[0] >> 1)


class HostEnvs:
    """`B` copies of one Gymnasium environment in a vector environment (`SAME_STEP` autoreset):
    `"sync"` steps them one after the other in this thread, `"async"` in one process each.

    Observations come back as the networks' float32 `[B, O...]` (`gymnasium_envs.observe`)."""

    def __init__(self, spec: envs.EnvSpec, num_envs: int, mode: str = "sync") -> None:
        import gymnasium

        if mode not in VECTOR_MODES:
            raise ValueError(f"vector mode {mode!r} must be one of {VECTOR_MODES}")
        fns = [spec.env] * num_envs
        same_step = gymnasium.vector.AutoresetMode.SAME_STEP
        if mode == "async":
            # spawn: the processes start clean rather than as forks of a multithreaded JAX one.
            self.vec = gymnasium.vector.AsyncVectorEnv(
                fns, context="spawn", autoreset_mode=same_step
            )
        else:
            self.vec = gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=same_step)
        self.num_envs = num_envs
        self.obs_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space

    def reset(self, seed: int) -> np.ndarray:
        """Fresh episodes, environment `i` seeded with `seed + i`; observations `[B, O...]`."""
        obs, _ = self.vec.reset(seed=seed)
        return gymnasium_envs.observe(self.obs_space, obs)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """Steps with the policy's actions `[B, A...]`.

        Returns `(obs, reward, terminated, truncated, next_obs)`: `obs` `[B, O...]` to act on
        next (a reset observation where an episode ended), `reward` `[B]` float32, the two flags
        `[B]` bool (`truncated` only where not `terminated`), `next_obs` `[B, O...]` the
        observation each action led to (the final one where an episode ended).
        """
        obs, reward, terminated, truncated, info = self.vec.step(
            gymnasium_envs.env_actions(self.action_space, actions)
        )
        obs = gymnasium_envs.observe(self.obs_space, obs)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool) & ~terminated
        next_obs = obs
        ended = np.flatnonzero(info.get("_final_obs", np.zeros(self.num_envs, bool)))
        if ended.size:
            next_obs = obs.copy()
            final = np.stack([info["final_obs"][i] for i in ended])
            next_obs[ended] = gymnasium_envs.observe(self.obs_space, final)
        return obs, np.asarray(reward, np.float32), terminated, truncated, next_obs

    def close(self) -> None:
        self.vec.close()


class HostCarry(NamedTuple):
    """What the host loop carries between rollouts (numpy, on the host)."""

    obs: np.ndarray  # [B, O...] float32, the observation the next action is chosen on
    episode_return: np.ndarray  # [B] float32 undiscounted return of the running episode
    episode_length: np.ndarray  # [B] int32 steps of the running episode


def reset(host_envs: HostEnvs, key: PRNGKey) -> HostCarry:
    """Fresh episodes in `host_envs`, seeded from `key`."""
    obs = host_envs.reset(seed_from_key(key))
    num_envs = host_envs.num_envs
    return HostCarry(obs, np.zeros(num_envs, np.float32), np.zeros(num_envs, np.int32))


# (params, obs [B, O...], action keys [B] (raw: [B, 2])) -> actions [B, A...]
ActFn = Callable[[Params, jax.Array, jax.Array], jax.Array]
# (params, obs [B, O...], a rollout's action noise [T, B, ...], step t []) -> actions [B, A...]
StepActFn = Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]


def _act_each(
    spec: envs.EnvSpec, networks: Networks, choose: Callable[[Distribution, jax.Array], jax.Array]
) -> ActFn:
    """`(params, obs [B, O...], per_env [B, ...]) -> actions [B, A...]`: each environment's
    `choose(pi, per_env[b])` (its key or its noise) on its own policy, clipped to the bounds."""

    def act(params: Params, obs: jax.Array, per_env: jax.Array) -> jax.Array:
        def one(obs: jax.Array, x: jax.Array) -> jax.Array:
            return choose(networks.policy(params, obs[None]), x)[0]

        return envs.clip_action(spec, jax.vmap(one)(obs, per_env))

    return act


def make_act(spec: envs.EnvSpec, networks: Networks, greedy: bool = False) -> ActFn:
    """The policy step, to be jitted: every environment samples (or, `greedy`, takes the mode
    of) its action from its own key; actions clipped to the action bounds."""
    if greedy:
        return _act_each(spec, networks, lambda pi, key: pi.mode())
    return _act_each(spec, networks, lambda pi, key: pi.sample(key))


def make_step_act(spec: envs.EnvSpec, networks: Networks) -> StepActFn:
    """The policy step of a rollout, to be jitted: step `t`'s actions from the rollout's noise
    (`action_noise`, drawn ahead and kept on the device), each environment's
    `pi.sample_from(noise[t, b])`, the same actions as `make_act` on the keys the noise was
    drawn from. Only the observations and the step's number cross to the device, and the step
    runs no random-number generator (a small XLA loop per call on the CPU backend)."""
    act = _act_each(spec, networks, lambda pi, noise: pi.sample_from(noise))

    def step_act(params: Params, obs: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
        return act(params, obs, noise[t])

    return step_act


@functools.lru_cache(maxsize=8)
def step_numbers(num_steps: int) -> tuple[jax.Array, ...]:
    """`0 .. num_steps - 1` as int32 device scalars, made once: a step's call then moves only
    its observations to the device."""
    return tuple(jax.device_put(np.arange(num_steps, dtype=np.int32)))


def action_keys(key: PRNGKey, num_envs: int, num_steps: int) -> jax.Array:
    """`[T, B]` action keys (raw: `[T, B, 2]`) of a rollout of `num_steps` in `num_envs`
    environments: the gymnax rollout's (`rollout_keys`, environment ids `0..B-1`)."""
    return rollout_keys(key, jnp.arange(num_envs, dtype=jnp.int32), num_steps)[:, 0]


def action_noise(policy: Distribution, key: PRNGKey, num_envs: int, num_steps: int) -> jax.Array:
    """The noise `[T, B, ...]` of a rollout's actions, drawn ahead from its `action_keys`:
    `policy.noise` of each environment's key at each step. `policy`: the distribution the
    networks give for one observation `[1, O...]`, abstract (`jax.eval_shape`) or not."""
    keys = action_keys(key, num_envs, num_steps)
    return jax.vmap(jax.vmap(policy.noise))(keys)


def rollout(
    host_envs: HostEnvs,
    act: StepActFn,
    params: Any,
    carry: HostCarry,
    noise: jax.Array,
) -> tuple[HostCarry, Transition]:
    """Plays `T` steps in every environment of `host_envs` with `act` (`make_step_act`, jitted,
    compiled once for `[B, O...]` observations) on `params`, with the action noise `noise`
    `[T, B, ...]` (`action_noise`), on the device.

    Returns the carry after the last step and the transitions, numpy `[T, B, ...]`, with each
    ended episode's totals in `episode_return`/`episode_length` at its last step (as
    `envs.step_each`).
    """
    steps = []
    obs, ep_return, ep_length = carry
    for t in step_numbers(noise.shape[0]):
        action = np.asarray(act(params, obs, noise, t))
        next_carry_obs, reward, terminated, truncated, next_obs = host_envs.step(action)
        ep_return = ep_return + reward
        ep_length = ep_length + 1
        steps.append(
            Transition(obs, action, reward, terminated, truncated, next_obs, ep_return, ep_length)
        )
        done = terminated | truncated
        ep_return = np.where(done, 0.0, ep_return).astype(np.float32)
        ep_length = np.where(done, 0, ep_length).astype(np.int32)
        obs = next_carry_obs
    traj = Transition(*(np.stack(field) for field in zip(*steps, strict=True)))
    return HostCarry(obs, ep_return, ep_length), traj
