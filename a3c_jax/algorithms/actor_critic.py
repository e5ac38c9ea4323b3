"""Advantage actor-critic over rollouts: `online_ac`, `a2c`, `nstep_da2c` and `da2c`.

All four take one gradient step per rollout on `actor + vf_coef · critic - ent_coef · entropy`,
with GAE(λ) advantages and value targets from `returns` (zero bootstrap after termination,
`V(final_observation)` after truncation). They differ only in the rollout and the defaults:

- `a2c`, `nstep_da2c`: `n_steps` in each of `num_envs` environments, bootstrapped from
  `V(s_{t+n})`; `nstep_da2c` is the first deck's plain n-step return (λ = 1, no entropy bonus).
- `online_ac`: `n_steps = 1`, so every environment step is followed by an update with the
  one-step TD target `r + γ V(s')` and advantage `r + γ V(s') - V(s)`.
- `da2c`: every environment plays one whole episode from a reset (`rollout_episodes`); Monte-Carlo
  returns (λ = 1) run backward from its end; steps after an episode's end are masked out.

With a recurrent policy (`Config.recurrent`) the loss re-runs the cores over the rollout from
the hidden state the environments held at its start (`networks.unroll`: truncated
backpropagation through time over the rollout), resetting it at each episode's first step as
the rollout did, so it recomputes exactly the policy that acted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from a3c_jax import envs
from a3c_jax.algorithms.base import Algorithm, no_state
from a3c_jax.algorithms.optim import Optimizer, gradient_step
from a3c_jax.algorithms.rollout import rollout, rollout_episodes, sampling_policy
from a3c_jax.core import losses, returns
from a3c_jax.core.types import (
    CoreState,
    EnvCarry,
    Params,
    PRNGKey,
    TrainState,
    Transition,
    UpdateOutput,
)

if TYPE_CHECKING:
    from a3c_jax.algorithms.networks import Networks
    from a3c_jax.config import Config
    from a3c_jax.envs import EnvSpec


# V-trace's thresholds for a learner behind its workers (`parallelism="data"`): IMPALA's
# ρ̄ = c̄ = 1 (and the same for the policy gradient's ratio).
VTRACE_RHO_CLIP = 1.0
VTRACE_C_CLIP = 1.0


def advantages_and_targets(
    traj: Transition,
    values: jax.Array,
    next_values: jax.Array,
    config: Config,
    valid: jax.Array | None = None,
    rho: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """GAE(λ) advantages and the critic's targets `advantages + values`, both `[T, B]`; with
    importance ratios `rho` `[T, B]` (`π / μ` of experience played by an older policy `μ`),
    V-trace's (`returns.vtrace_td_error_and_advantage`, λ = `gae_lambda`, thresholds
    `VTRACE_RHO_CLIP`, `VTRACE_C_CLIP`), which are GAE's where `rho` is 1 and `λ = 1`.

    Args:
      traj: `[T, B, ...]` transitions.
      values: `[T, B]` `V(s_t)`, held fixed.
      next_values: `[T, B]` `V(s'_t)` of `traj.next_obs`, held fixed, read only at truncated
        steps and at the last step, whose value bootstraps whatever runs past the rollout's end
        (`bootstrap_values`).
      config: `gamma`, `gae_lambda`, `reward_scale`.
      valid: `[T, B]` bool or None. Invalid steps come after an episode's end (which has
        discount 0), so they cannot reach a valid step's return; their rewards are zeroed.
      rho: `[T, B]` importance ratios, held fixed, or None (on-policy: GAE).
    """
    reward = traj.reward * config.reward_scale
    if valid is not None:
        reward = jnp.where(valid, reward, 0.0)
    rewards, discounts = returns.truncate_episodes(
        reward, traj.terminated, traj.truncated, next_values, config.gamma
    )
    if rho is not None:
        # V(x_{s+1}): the next step's value inside the rollout (where an episode ended, the
        # discount is 0 and a truncation's value is in the reward), the bootstrap after it.
        v_t = jnp.concatenate([values[1:], next_values[-1:]], axis=0)
        out = returns.vtrace_td_error_and_advantage(
            values,
            v_t,
            rewards,
            discounts,
            rho,
            config.gae_lambda,
            rho_clip=VTRACE_RHO_CLIP,
            c_clip=VTRACE_C_CLIP,
            pg_rho_clip=VTRACE_RHO_CLIP,
        )
        return out.pg_advantage, out.errors + values
    advantages = returns.gae_advantages(
        rewards, values, discounts, next_values[-1], config.gae_lambda
    )
    return advantages, advantages + values


def replay_policy(
    networks: Networks, params: Params, traj: Transition, start_state: CoreState | None
) -> tuple[Any, jax.Array, CoreState]:
    """The policy `[T, B]`, values `[T, B]` and hidden states after each step `[T, B, ...]` of
    the rollout `traj`, re-run from `start_state` `[B, ...]` (the carry's `core_state` before
    the rollout; None: the initial state, for rollouts that start every episode afresh) with the
    rollout's own resets (`traj.first`). Without a core: the networks on every step at once."""
    if start_state is None:
        start_state = networks.initial_state(traj.reward.shape[1])
    return networks.unroll(params, traj.obs, traj.first, start_state)


def nstep_loss(
    params: Params,
    traj: Transition,
    next_values: jax.Array,
    valid: jax.Array | None = None,
    start_state: CoreState | None = None,
    behaviour_log_prob: jax.Array | None = None,
    *,
    config: Config,
    networks: Networks,
) -> tuple[jax.Array, losses.LossMetrics]:
    """The actor-critic loss of one rollout, averaged over its (valid) steps, plus
    `action_bound_coef` times `losses.action_bound_loss` of the policy's means (when positive).
    Played by another policy `μ` (`behaviour_log_prob`), its advantages and targets are
    V-trace's, corrected by the ratios `π(a|s) / μ(a|s)` (`advantages_and_targets`).

    Args:
      params: the actor-critic's parameters (differentiated).
      traj: `[T, B, ...]` transitions.
      next_values: `[T, B]` critic values of `traj.next_obs` (held fixed); None for a recurrent
        critic: computed here from the re-run's hidden states, held fixed (`selected_values`
        of `values_after`, where the returns read them).
      valid: `[T, B]` bool mask of real steps, or None (all real).
      start_state: the recurrent cores' state `[B, ...]` at the rollout's start (`replay_policy`).
      behaviour_log_prob: `[T, B]` `log μ(a_t|s_t)` of the policy that played `traj`, or None
        (this one: on-policy).
    """
    pi, values, states = replay_policy(networks, params, traj, start_state)  # [T, B]
    log_prob = pi.log_prob(traj.action)
    rho = None
    if behaviour_log_prob is not None:
        rho = jnp.exp(jax.lax.stop_gradient(log_prob) - behaviour_log_prob)
    if next_values is None:  # a recurrent critic: from this re-run's states (`values_after`)
        # All `T·B` (`selected_values` with no time limit): valuing only the `2B` that the
        # returns read was faster in the loss alone and within noise over whole runs (README).
        next_values = jax.lax.stop_gradient(
            selected_values(functools.partial(values_after, networks, params), traj, states, 0)
        )
    advantages, targets = advantages_and_targets(
        traj, jax.lax.stop_gradient(values), next_values, config, valid, rho
    )
    if config.normalize_advantages:
        advantages = losses.normalize(advantages, valid)
    total, metrics = losses.actor_critic_loss(
        log_prob,
        pi.entropy(),
        values,
        advantages,
        targets,
        config.vf_coef,
        config.ent_coef,
        mask=valid,
    )
    if config.action_bound_coef > 0:
        spec = envs.make_env(config.env_name)
        bound, _ = losses.action_bound_loss(pi.mean, spec.action_low, spec.action_high, valid)
        total = total + config.action_bound_coef * bound
        metrics = metrics._replace(total_loss=total)
    return total, metrics


def nstep_loss_fn(
    config: Config, networks: Networks
) -> Callable[..., tuple[jax.Array, losses.LossMetrics]]:
    """`nstep_loss` for `config`'s networks: `loss_fn(params, traj, next_values, valid,
    start_state)`, as every n-step trainer (gymnax, host, A3C's workers) differentiates it."""
    return functools.partial(nstep_loss, config=config, networks=networks)


def values_after(
    networks: Networks, params: Params, next_obs: jax.Array, states: CoreState
) -> jax.Array:
    """A recurrent critic's values `[N]` of `next_obs` `[N, O...]`, each one core step on from
    the state after its step `states` `[N, ...]` (the same episode's: the reset comes at the
    next episode's first step). One batched step, no scan."""
    not_first = jnp.zeros(next_obs.shape[:1], bool)
    _, values, _ = networks.step(params, next_obs, not_first, states)
    return values


def selected_values(
    value_fn: Callable[[jax.Array, Any], jax.Array],
    traj: Transition,
    states: Any,
    max_episode_steps: int,
) -> jax.Array:
    """The critic's values `[T, B]` of `traj.next_obs` where the returns read them: at truncated
    steps (`returns.truncate_episodes`) and at the last step (the bootstrap); 0 elsewhere, where
    nothing reads them (`V(s_{t+1})` inside the rollout is the loss's own value of `obs[t+1]`).

    `value_fn(next_obs [N, O...], states [N, ...]) -> [N]` values observations from the hidden
    states after their steps (`states` `[T, B, ...]`; `()` for a feed-forward critic). An
    environment truncates at most once in a rollout no longer than its time limit
    (`max_episode_steps`), so one pass over `2B` observations serves, each environment's
    cut-off observation (if any) and its last `next_obs`, instead of one over all `T·B`.
    Longer rollouts, and environments without a known time limit (0), take the full pass.
    """
    num_steps, num_envs = traj.reward.shape
    if not 0 < num_steps <= max_episode_steps:
        flat = jax.tree.map(
            lambda x: x.reshape(num_steps * num_envs, *x.shape[2:]), (traj.next_obs, states)
        )
        return value_fn(*flat).reshape(num_steps, num_envs)
    step = jnp.argmax(traj.truncated, axis=0)  # [B] each environment's truncation (0 if none)
    cut_off = jax.tree.map(lambda x: x[step, jnp.arange(num_envs)], (traj.next_obs, states))
    last = jax.tree.map(lambda x: x[-1], (traj.next_obs, states))
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), cut_off, last)
    values = value_fn(*both)  # [2B]
    next_values = jnp.where(traj.truncated, values[None, :num_envs], 0.0)
    return next_values.at[-1].set(values[num_envs:])


def bootstrap_values(
    spec: EnvSpec,
    networks: Networks,
    params: Params,
    traj: Transition,
    start_state: CoreState | None = None,
) -> jax.Array:
    """The critic's values `[T, B]` of `traj.next_obs` where the returns read them
    (`selected_values`).

    A recurrent critic values `next_obs[t]` one core step on from its state after step `t`
    (the same episode's: the reset comes at the next episode's first step), which a re-run of
    the rollout from `start_state` gives (`replay_policy`).
    """
    if networks.recurrent_critic:
        _, _, states = replay_policy(networks, params, traj, start_state)  # [T, B, ...]
        value_fn = functools.partial(values_after, networks, params)
    else:
        states = CoreState()

        def value_fn(obs: jax.Array, state: CoreState) -> jax.Array:
            del state
            return networks.value(params, obs)

    return selected_values(value_fn, traj, states, spec.max_episode_steps)


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
    `traj.next_obs` where the returns read them (`bootstrap_values`): the bootstrap of truncated
    steps and of the step after the rollout (None for a recurrent critic: `collected_bootstrap`).
    `nstep_loss(params, traj, next_values, None, env_carry.core_state)`, with the carry given
    here, is then the loss to differentiate.
    """
    policy = sampling_policy(networks)
    hold = noise_hold(config, config.n_steps)
    env_carry, traj = rollout(spec, policy, params, env_carry, key, config.n_steps, hold)
    return env_carry, traj, collected_bootstrap(spec, networks, params, traj)


def noise_hold(config: Config, num_steps: int) -> int:
    """For how many steps of a rollout of `num_steps` the sampling policy keeps one action key
    (`rollout.rollout_keys`): with gSDE (`config.use_sde`) its noise matrix is drawn afresh
    every `sde_sample_freq` steps, or once per rollout (-1); otherwise every step."""
    if not config.use_sde:
        return 1
    return num_steps if config.sde_sample_freq == -1 else config.sde_sample_freq


def collected_bootstrap(
    spec: EnvSpec, networks: Networks, params: Params, traj: Transition
) -> jax.Array | None:
    """What a collector hands the loss as `next_values`: `bootstrap_values` of a feed-forward
    critic; None for a recurrent one, whose loss takes them from its own re-run of the rollout
    (`values_after`), instead of re-running it once more here."""
    if networks.recurrent_critic:
        return None
    return bootstrap_values(spec, networks, params, traj)


def episode_collect(
    spec: EnvSpec,
    networks: Networks,
    config: Config,
    params: Params,
    env_carry: EnvCarry,
    key: PRNGKey,
) -> tuple[EnvCarry, Transition, jax.Array, jax.Array]:
    """Restarts the environments of `env_carry` (`envs.restart`: each keeps its `env_id`, so its
    key) and plays one whole episode in each (`rollout_episodes`, at most the environment's time
    limit).

    Returns the carry, transitions `[T_max, B, ...]`, `valid` `[T_max, B]` and the critic's values
    `[T_max, B]` of `traj.next_obs` where the returns read them (`bootstrap_values`). Every
    episode starts at step 0, so a recurrent policy starts from its initial state there: the
    loss re-runs it with `start_state=None`.
    """
    reset_key, play_key = jax.random.split(key)
    env_carry = envs.restart(spec, reset_key, env_carry)
    num_steps = spec.max_episode_steps
    env_carry, traj, valid = rollout_episodes(
        spec,
        sampling_policy(networks),
        params,
        env_carry,
        play_key,
        num_steps,
        noise_hold(config, num_steps),
    )
    return env_carry, traj, valid, collected_bootstrap(spec, networks, params, traj)


def episodes_step(
    loss_fn: Callable[..., tuple[jax.Array, losses.LossMetrics]],
    optimizer: Optimizer,
    train_state: TrainState,
    traj: Transition,
    next_values: jax.Array,
    valid: jax.Array,
    *batch: Any,
) -> tuple[TrainState, losses.LossMetrics]:
    """The gradient step of the episodic algorithms on `loss_fn(params, traj, next_values,
    valid, *batch)`: it consumed the `valid` `[T, B]` steps, and over several devices each
    device's gradient weighs by its own count of them (`optim.gradient_step`)."""
    env_steps = jnp.sum(valid)
    return gradient_step(
        loss_fn,
        optimizer,
        train_state,
        env_steps,
        traj,
        next_values,
        valid,
        *batch,
        weigh_devices=True,
    )


def nstep_learn(
    spec: EnvSpec,
    networks: Networks,
    config: Config,
    optimizer: Optimizer,
    train_state: TrainState,
    traj: Transition,
    next_values: jax.Array | None = None,
    start_state: CoreState | None = None,
) -> tuple[TrainState, UpdateOutput]:
    """The gradient step of `a2c`, `nstep_da2c` and `online_ac` on one rollout `[T, B, ...]`
    played with `train_state.params`: `nstep_loss`, differentiated and applied by
    `optim.gradient_step`. `next_values` `[T, B]`: `bootstrap_values` of `traj` (computed here
    if None); `start_state`: the hidden state at the rollout's start (recurrent policies).
    Shared by the gymnax trainer and the host-environment one (`a3c_jax.host`)."""
    if next_values is None and not networks.recurrent_critic:
        next_values = bootstrap_values(spec, networks, train_state.params, traj)
    loss_fn = nstep_loss_fn(config, networks)
    train_state, metrics = gradient_step(
        loss_fn, optimizer, train_state, config.batch_size, traj, next_values, None, start_state
    )
    valid = jnp.ones(traj.reward.shape, bool)
    return train_state, UpdateOutput(traj, valid, metrics)


def make_nstep(
    config: Config, spec: EnvSpec, networks: Networks, optimizer: Optimizer
) -> Algorithm:
    """`a2c`, `nstep_da2c` and `online_ac`: one `n_steps` rollout, one gradient step."""

    def update(train_state: TrainState, env_carry: EnvCarry, algo_state: Any, key: PRNGKey):
        start_state = env_carry.core_state
        env_carry, traj, next_values = nstep_collect(
            spec, networks, config, train_state.params, env_carry, key
        )
        train_state, out = nstep_learn(
            spec, networks, config, optimizer, train_state, traj, next_values, start_state
        )
        return train_state, env_carry, algo_state, out

    return Algorithm(no_state, update)


def make_episodic(
    config: Config, spec: EnvSpec, networks: Networks, optimizer: Optimizer
) -> Algorithm:
    """`da2c`: one whole episode per environment, one masked gradient step over all of them."""
    loss_fn = nstep_loss_fn(config, networks)

    def update(train_state: TrainState, env_carry: EnvCarry, algo_state: Any, key: PRNGKey):
        # Every update restarts the environments: fresh episodes.
        env_carry, traj, valid, next_values = episode_collect(
            spec, networks, config, train_state.params, env_carry, key
        )
        train_state, metrics = episodes_step(
            loss_fn, optimizer, train_state, traj, next_values, valid
        )
        return train_state, env_carry, algo_state, UpdateOutput(traj, valid, metrics)

    return Algorithm(no_state, update)
