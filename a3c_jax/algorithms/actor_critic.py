"""N-step advantage actor-critic: `a2c` and the first deck's `nstep_da2c`.

Per update: a rollout of `n_steps` in each of `num_envs` environments with the current policy;
returns bootstrapped from `V(s_{t+n})` (zero after termination, `V(final_observation)` after
truncation), optionally blended by GAE(λ); one gradient step on
`actor + vf_coef · critic - ent_coef · entropy` averaged over all `n_steps · num_envs` samples.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from a3c_jax import losses, returns
from a3c_jax.algorithms.base import Algorithm, no_state
from a3c_jax.optim import Optimizer, gradient_step
from a3c_jax.rollout import rollout, sampling_policy
from a3c_jax.types import EnvCarry, Params, PRNGKey, TrainState, Transition, UpdateOutput

if TYPE_CHECKING:
    from a3c_jax.config import Config
    from a3c_jax.envs import EnvSpec
    from a3c_jax.networks import Networks


def nstep_loss(
    params: Params,
    traj: Transition,
    next_values: jax.Array,
    *,
    config: Config,
    networks: Networks,
) -> tuple[jax.Array, losses.Metrics]:
    """The n-step actor-critic loss of one rollout.

    Args:
      params: the actor-critic's parameters (differentiated).
      traj: `[T, B, ...]` transitions.
      next_values: `[T, B]` critic values of `traj.next_obs` (held fixed).
    """
    pi, values = networks.apply(params, traj.obs)  # [T, B]
    rewards, discounts = returns.truncate_episodes(
        traj.reward * config.reward_scale,
        traj.terminated,
        traj.truncated,
        next_values,
        config.gamma,
    )
    fixed_values = jax.lax.stop_gradient(values)
    advantages = returns.gae_advantages(
        rewards, fixed_values, discounts, next_values[-1], config.gae_lambda
    )
    targets = advantages + fixed_values
    if config.normalize_advantages:
        advantages = losses.normalize(advantages)
    return losses.actor_critic_loss(
        pi.log_prob(traj.action),
        pi.entropy(),
        values,
        advantages,
        targets,
        config.vf_coef,
        config.ent_coef,
    )


def nstep_collect(
    spec: EnvSpec,
    networks: Networks,
    config: Config,
    params: Params,
    env_carry: EnvCarry,
    key: PRNGKey,
) -> tuple[EnvCarry, Transition, jax.Array]:
    """Plays `n_steps` in each environment with `params`' sampling policy.

    Returns the new carry, the transitions `[T, B, ...]` and the critic's values `[T, B]` of
    `traj.next_obs`, from one batched pass: the bootstrap of truncated steps and of the step after
    the rollout. `nstep_loss(params, traj, next_values)` is then the loss to differentiate.
    """
    env_carry, traj = rollout(
        spec, sampling_policy(networks), params, env_carry, key, config.n_steps
    )
    return env_carry, traj, networks.value(params, traj.next_obs)


def make_nstep(
    config: Config, spec: EnvSpec, networks: Networks, optimizer: Optimizer
) -> Algorithm:
    """`a2c`, `nstep_da2c` and `online_ac` (`n_steps=1`): one rollout, one gradient step."""
    loss_fn = functools.partial(nstep_loss, config=config, networks=networks)

    def update(train_state: TrainState, env_carry: EnvCarry, algo_state: Any, key: PRNGKey):
        env_carry, traj, next_values = nstep_collect(
            spec, networks, config, train_state.params, env_carry, key
        )
        train_state, metrics = gradient_step(
            loss_fn, optimizer, train_state, config.batch_size, traj, next_values
        )
        valid = jnp.ones(traj.reward.shape, bool)
        return train_state, env_carry, algo_state, UpdateOutput(traj, valid, metrics)

    return Algorithm(no_state, update)
