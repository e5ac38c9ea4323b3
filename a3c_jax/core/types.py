"""Typed pytrees shared by every part of the library.

Shapes use `T` for time (rollout length), `B` for the batch of environments, `O...` for the
observation's own shape and `A...` for the action's (`()` for discrete actions, `(d,)` for
continuous ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

Params = Any  # a flax variable dict: {"params": {...}}
PRNGKey = jax.Array


class CoreState(NamedTuple):
    """The hidden state of the recurrent cores (`Config.recurrent`) of `B` environments' policies:
    each an LSTM's `(c [B, H], h [B, H])`, a GRU's `h [B, H]`, or `()` where there is no core.
    Zeros are the initial state (`networks.Networks.initial_state`)."""

    actor: Any = ()  # the actor's core (the one core, with `shared_torso`)
    critic: Any = ()  # the critic's own core; () when shared or feed-forward


class EnvCarry(NamedTuple):
    """The state of `B` vectorised environments between steps, and the hidden state of the
    policy acting in them (it travels with its environments: checkpointed, split over devices)."""

    env_state: Any  # gymnax state, every leaf with a leading [B]
    obs: jax.Array  # [B, O...] float32, the observation the next action is chosen on
    episode_return: jax.Array  # [B] undiscounted return of the running episode so far
    episode_length: jax.Array  # [B] int32 steps of the running episode so far
    env_id: jax.Array  # [B] int32 global index of each environment: its key (envs.env_keys)
    wrapper_state: Any = ()  # the state of the spec's wrappers (a3c_jax.envs.wrappers), () if none
    # The policy's hidden state after the last step (CoreState, leaves [B, ...]); reset to the
    # initial state by the networks at each episode's first step (episode_length == 0).
    core_state: CoreState = CoreState()


class Transition(NamedTuple):
    """One environment step of `B` environments (a rollout stacks them into `[T, B, ...]`).

    `next_obs` is the observation the action led to *before* any auto-reset (gymnax's
    `info["final_observation"]`): the state a truncated episode bootstraps from. Where neither
    `terminated` nor `truncated` is set it equals the next step's `obs`.
    """

    obs: jax.Array  # [B, O...]
    action: jax.Array  # [B, A...]
    reward: jax.Array  # [B] float32
    terminated: jax.Array  # [B] bool: the episode reached a terminal state (no bootstrap)
    truncated: jax.Array  # [B] bool: time limit hit in a non-terminal state (bootstrap)
    next_obs: jax.Array  # [B, O...]
    episode_return: jax.Array  # [B] return of the episode that ended here (valid where done)
    episode_length: jax.Array  # [B] length of the episode that ended here (valid where done)

    @property
    def done(self) -> jax.Array:
        """[B] bool: an episode ended at this step, by termination or truncation."""
        return self.terminated | self.truncated

    @property
    def first(self) -> jax.Array:
        """[B] bool: this step is an episode's first (`obs` came from a reset): where a recurrent
        policy's hidden state is reset (the carry's `episode_length` was 0)."""
        return self.episode_length == 1


class TrainState(NamedTuple):
    """What the optimiser owns."""

    params: Params
    opt_state: optax.OptState
    update_step: jax.Array  # [] int32, number of gradient updates applied
    env_steps: jax.Array  # [] int32, environment steps those updates consumed


class RunnerState(NamedTuple):
    """Everything the training loop carries from one update to the next."""

    train_state: TrainState
    env: EnvCarry
    algo_state: Any  # what an algorithm keeps besides parameters (a replay buffer); () if nothing
    key: PRNGKey
    last_episode_return: jax.Array  # [] mean return of the latest finished episodes (nan: none yet)
    last_episode_length: jax.Array  # [] their mean length
    updates: jax.Array  # [] int32 updates done that passed the divergence guard
    diverged: jax.Array  # [] int32 0, or which quantities of update `updates + 1` were not
    # finite (bits of `DIVERGED_LOSS`, `DIVERGED_GRADIENT`, `DIVERGED_PARAMS`): the state then
    # holds that update's result and every later update is a no-op


# The `RunnerState` fields that each device of gradient parallelism holds its own of (its
# environments and their share of the algorithm's state), with a leading device axis `[D, ...]`;
# the others are replicated (`a3c_jax.training.parallel`).
RUNNER_PER_DEVICE_FIELDS = ("env", "algo_state")

DIVERGED_LOSS = 1  # a loss (total, actor or critic) was nan or inf
DIVERGED_GRADIENT = 2  # the gradient's global norm was nan or inf
DIVERGED_PARAMS = 4  # a parameter was nan or inf after the optimiser step


class LossMetrics(NamedTuple):
    """The scalars `[]` one gradient step reports: the losses compose them (`losses.combine`),
    the optimiser adds `grad_norm` and `learning_rate` (`optim.gradient_step`).

    Read by field (`m.actor_loss`); `m["actor_loss"]` and `m | {"grad_norm": g}` also work, as
    on the dicts that older code passed around."""

    total_loss: jax.Array  # actor + vf_coef · critic - ent_coef · entropy
    actor_loss: jax.Array
    critic_loss: jax.Array
    entropy: jax.Array  # mean policy entropy over the (valid) batch
    grad_norm: jax.Array | None = None  # global gradient norm before clipping
    learning_rate: jax.Array | None = None  # of the step

    def __getitem__(self, key: int | str) -> Any:
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)

    def __or__(self, changes: dict[str, Any]) -> LossMetrics:
        return self._replace(**changes)


class UpdateOutput(NamedTuple):
    """What one update reports besides its new state."""

    transitions: Transition  # [T, B, ...] the environment steps the update played
    valid: jax.Array  # [T, B] bool: real steps (False: padding after an episode's end)
    loss_metrics: LossMetrics


class UpdateMetrics(NamedTuple):
    """Per-update scalars; `TrainResult.metrics` stacks them into `[num_updates]`."""

    env_steps: jax.Array  # environment steps taken so far, this update included
    episode_return: jax.Array  # mean return of episodes finished in this update (else the last)
    episode_return_min: jax.Array  # lowest return among them (else the last mean)
    episode_return_max: jax.Array  # highest return among them (else the last mean)
    episode_length: jax.Array  # mean length of those episodes (else the last)
    episodes: jax.Array  # number of episodes finished in this update
    total_loss: jax.Array
    actor_loss: jax.Array
    critic_loss: jax.Array
    entropy: jax.Array  # mean policy entropy over the batch
    grad_norm: jax.Array  # global gradient norm before clipping
    learning_rate: jax.Array


class TrainResult(NamedTuple):
    """What `train(key)` returns."""

    params: Params  # final actor and critic parameters
    opt_state: optax.OptState
    metrics: UpdateMetrics  # every field [num_updates] (with leading axes of any vmap)
    runner_state: RunnerState  # the final carry: environments, keys and counters


class Trainer(NamedTuple):
    """The training loop in pieces, for callers that run it in chunks (progress, checkpoints).

    `init(key) -> RunnerState`; `run(runner_state, num_updates, until=None) -> (runner_state,
    metrics)` with metrics `[num_updates]` (num_updates static): it stops early once the budget
    is spent, `until` updates are done in all (a traced int, per seed under `vmap`) or the run
    diverged, so chunks of any size can be chained (see `train.run_while`); `train(key) ->
    TrainResult` is the whole run.
    """

    init: Callable[[PRNGKey], RunnerState]
    run: Callable[..., tuple[RunnerState, UpdateMetrics]]
    train: Callable[[PRNGKey], TrainResult]


# update(train_state, env_carry, algo_state, key)
#     -> (train_state, env_carry, algo_state, UpdateOutput)
UpdateFn = Callable[
    [TrainState, EnvCarry, Any, PRNGKey], tuple[TrainState, EnvCarry, Any, UpdateOutput]
]


class Algorithm(NamedTuple):
    """`init(params, key) -> algo_state` and one `update`. `fixed_batch` is True when every
    update plays exactly `config.num_envs * config.n_steps` environment steps: the registry sets
    it from its entry's `episodic` (`registry.StampedBuilder`); builders leave it."""

    init: Callable[[Params, PRNGKey], Any]
    update: UpdateFn
    fixed_batch: bool = True
