"""`ac_replay`: the first deck's episodic actor-critic with experience replay.

Per update every environment plays one whole episode from a reset. The actor learns from each
episode's own transitions (advantages GAE(λ) from the critic; λ = 0 gives the deck's one-step TD
error `r + γ V(s') - V(s)`), and those transitions join a replay buffer. The critic learns from a
minibatch of `replay_batch_size` past transitions sampled from the buffer, with one-step TD
targets `r + γ V(s')` (no bootstrap after termination) from the current critic. One gradient
step on `actor - ent_coef · entropy + vf_coef · critic`; with separate actor and critic networks
(the default) the two parts touch disjoint parameters. With `Config.recurrent` only the actor
has a core (its registry entry's `recurrent_critic=False`): replayed single transitions carry no
hidden state for a recurrent critic.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from a3c_jax.algorithms.actor_critic import (
    advantages_and_targets,
    episode_collect,
    episodes_step,
    replay_policy,
)
from a3c_jax.algorithms.base import Algorithm
from a3c_jax.algorithms.optim import Optimizer
from a3c_jax.core import losses, replay
from a3c_jax.core.types import EnvCarry, Params, PRNGKey, TrainState, Transition, UpdateOutput

if TYPE_CHECKING:
    from a3c_jax.algorithms.networks import Networks
    from a3c_jax.config import Config
    from a3c_jax.envs import EnvSpec


def replay_loss(
    params: Params,
    traj: Transition,
    next_values: jax.Array,
    valid: jax.Array,
    batch: replay.Experience,
    batch_next_values: jax.Array,
    *,
    config: Config,
    networks: Networks,
) -> tuple[jax.Array, losses.LossMetrics]:
    """Actor (and entropy) loss on the episodes' valid steps plus the critic's one-step TD loss
    on a replayed minibatch.

    Args:
      traj: `[T, B, ...]` the episodes just played; `next_values`, `valid`: `[T, B]`.
      batch: `[N, ...]` replayed experience; `batch_next_values`: `[N]` `V(next_obs)`, held fixed.
    """
    pi, values, _ = replay_policy(networks, params, traj, None)  # episodes start at step 0
    advantages, _ = advantages_and_targets(
        traj, jax.lax.stop_gradient(values), next_values, config, valid
    )
    if config.normalize_advantages:
        advantages = losses.normalize(advantages, valid)
    actor, _ = losses.policy_gradient_loss(pi.log_prob(traj.action), advantages, valid)
    neg_entropy, _ = losses.entropy_loss(pi.entropy(), valid)
    bootstrap = jnp.where(batch.terminated, 0.0, config.gamma * batch_next_values)
    targets = batch.reward * config.reward_scale + bootstrap
    critic, _ = losses.value_loss(networks.value(params, batch.obs), targets)
    return losses.combine(actor, critic, -neg_entropy, config.vf_coef, config.ent_coef)


def make_ac_replay(
    config: Config, spec: EnvSpec, networks: Networks, optimizer: Optimizer
) -> Algorithm:
    """Builds `ac_replay`; its `algo_state` is the `ReplayBuffer`."""
    loss_fn = functools.partial(replay_loss, config=config, networks=networks)

    def init(params: Params, key: PRNGKey) -> replay.ReplayBuffer:
        del params, key
        return replay.replay_init(spec.obs_shape, config.replay_capacity)

    def update(
        train_state: TrainState, env_carry: EnvCarry, buffer: replay.ReplayBuffer, key: PRNGKey
    ):
        play_key, sample_key = jax.random.split(key)
        params = train_state.params
        # Every update restarts the environments: fresh episodes.
        env_carry, traj, valid, next_values = episode_collect(
            spec, networks, config, params, env_carry, play_key
        )
        flat = Transition(*(x.reshape(-1, *x.shape[2:]) for x in traj))
        new = replay.Experience(flat.obs, flat.reward, flat.terminated, flat.next_obs)
        buffer = replay.replay_add(buffer, new, valid.reshape(-1))
        batch = replay.replay_sample(buffer, sample_key, config.replay_batch_size)
        batch_next_values = networks.value(params, batch.next_obs)
        train_state, metrics = episodes_step(
            loss_fn, optimizer, train_state, traj, next_values, valid, batch, batch_next_values
        )
        return train_state, env_carry, buffer, UpdateOutput(traj, valid, metrics)

    return Algorithm(init, update)
