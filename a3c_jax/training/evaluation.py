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

from a3c_jax import envs
from a3c_jax.algorithms import build
from a3c_jax.algorithms.networks import Networks, make_networks
from a3c_jax.algorithms.rollout import (
    EpisodeState,
    PolicyFn,
    episode_step,
    rollout_keys,
    start_episodes,
    with_initial_state,
)
from a3c_jax.config import Config, ConfigError
from a3c_jax.core.types import CoreState, Params, PRNGKey, RunnerState
from a3c_jax.envs import wrappers
from a3c_jax.training import background, program_cache
from a3c_jax.training.xla import compiler_options


def acting_policy(networks: Networks, spec: envs.EnvSpec, greedy: bool) -> PolicyFn:
    """The policy of trained parameters: the distribution's mode (`greedy`) or a sample,
    clipped to the action bounds; `(params, obs [B, O...], first [B], state, key) -> (action
    [B, A...], state)` (`rollout.PolicyFn`)."""

    def policy_fn(
        params: Params, obs: jax.Array, first: jax.Array, state: CoreState, key: PRNGKey | None
    ) -> tuple[jax.Array, CoreState]:
        pi, _, state = networks.step(params, jnp.asarray(obs, jnp.float32), first, state)
        return envs.clip_action(spec, pi.mode() if greedy else pi.sample(key)), state

    return policy_fn


@functools.lru_cache(maxsize=64)
def _jitted_act(config: Config, greedy: bool) -> tuple[Callable, Networks]:
    spec = build.env_spec(config, training=False)
    networks = make_networks(config, spec)
    return jax.jit(acting_policy(networks, spec, greedy)), networks


class Act:
    """A jitted policy for any loop (`make_act`).

    Feed-forward: `act(obs, key=None) -> action`. Recurrent (`Config.recurrent`): stateful,
    `act(obs, state, key=None, first=None) -> (action, state)`, from `state = act.init(batch)`
    at the start of the episodes; `first` `[B]` bool marks environments at their episode's first
    step (their state is reset, as in training), for vector environments that reset on their
    own. Observations `[O...]` or `[B, O...]`; `act.init(batch)` holds `[batch, ...]` (1 for an
    unbatched observation).
    """

    def __init__(self, config: Config, params: Params, greedy: bool) -> None:
        self._jitted, self._networks = _jitted_act(config, greedy)
        self._params = params
        self._greedy = greedy
        self._obs_ndim = len(build.env_spec(config, training=False).obs_shape)
        self.recurrent = config.recurrent is not None

    def init(self, batch: int = 1) -> CoreState:
        """The initial hidden state of `batch` environments (`()` leaves: feed-forward)."""
        return self._networks.initial_state(batch)

    def _run(
        self, obs: Any, state: CoreState, key: PRNGKey | None = None, first: Any = None
    ) -> tuple[jax.Array, CoreState]:
        if not self._greedy and key is None:
            raise ValueError("a stochastic act (greedy=False) needs a PRNG key: act(obs, key)")
        obs = jnp.asarray(obs, jnp.float32)
        single = obs.ndim == self._obs_ndim
        batch = obs[None] if single else obs
        first = jnp.zeros(batch.shape[:1], bool) if first is None else first
        first = jnp.broadcast_to(jnp.asarray(first, bool), batch.shape[:1])
        action, state = self._jitted(self._params, batch, first, state, key)
        return (action[0] if single else action), state

    def __call__(self, obs: Any, *args: Any, **kwargs: Any) -> Any:
        if self.recurrent:
            return self._run(obs, *args, **kwargs)  # (obs, state, key=None, first=None)
        return self._run(obs, CoreState(), *args, **kwargs)[0]  # (obs, key=None)


def make_act(config: Config, params: Params, greedy: bool = True) -> Act:
    """A jitted policy for observations `[O...]` or `[B, O...]` (`Act`): `act(obs, key=None) ->
    action`, or, for a recurrent policy, `act(obs, state, key=None) -> (action, state)` from
    `state = act.init(batch)`.

    Observations are the environment's own (after `config`'s transforms, `wrappers.make_env`):
    parameters trained with `normalize_obs` carry their frozen statistics (`TrainResult.params`,
    `a3c_jax.load`) and normalise them here.

    Greedy (the distribution's mode: argmax, or the Gaussian mean clipped to the action bounds)
    by default; with `greedy=False` it samples and needs `key`.
    """
    return Act(config, params, greedy)


def play_episodes(
    spec: envs.EnvSpec,
    policy_fn: PolicyFn,
    params: Params,
    key: PRNGKey,
    num_episodes: int,
    networks: Networks | None = None,
) -> jax.Array:
    """Undiscounted returns `[num_episodes]` of whole episodes, one per environment, played in
    parallel with `policy_fn` (`rollout.PolicyFn`; each environment acting on its own
    observation with its own key: `rollout.episode_step`) until each ends (termination or time
    limit; at most 100,000 steps for environments without a limit), from `networks`' initial
    hidden state (None: a policy without one). A `while_loop` that stops with the longest
    episode; each step's keys are drawn in the loop."""
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
    if networks is not None:
        carry = with_initial_state(networks, carry)
    totals = jnp.zeros((num_episodes,), jnp.float32)
    loop = (start_episodes(carry), key, totals, jnp.zeros((), jnp.int32))
    return jax.lax.while_loop(cond, body, loop)[2]


@functools.lru_cache(maxsize=64)
def _make_evaluator(
    config: Config, num_episodes: int, greedy: bool
) -> Callable[[Params, PRNGKey], jax.Array]:
    spec = build.env_spec(config, training=False)
    networks = make_networks(config, spec)
    policy_fn = acting_policy(networks, spec, greedy)
    # An evaluation is a short run: XLA's faster-compiling CPU options (`xla.compiler_options`).
    return jax.jit(
        lambda params, key: play_episodes(spec, policy_fn, params, key, num_episodes, networks),
        compiler_options=compiler_options(short=True),
    )


def policy_params(config: Config, runner: RunnerState, batched: bool) -> Params:
    """The parameters of `runner` as `evaluate` takes them (with a leading seed axis if
    `batched`), with any frozen observation statistics (`wrappers.export_params`). Both device
    backends return the replicated parameters once (`parallel.spread`), so they are the
    runner's own; the environments' state has a device axis over several devices."""
    from a3c_jax.training import parallel

    device_axis = parallel.num_devices(config) > 1
    return wrappers.export_params(
        runner.train_state.params, runner.env.wrapper_state, batched, device_axis
    )


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
    if config.host_env:
        raise ConfigError(
            f"env_name={config.env_name!r} is a host environment: a3c_jax.evaluate plays it "
            "in a Python loop (workers.host_evaluation), not in a jitted program"
        )
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
    from a3c_jax.training.loop import make_trainer

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

        def compile_program() -> Callable:
            return _make_evaluator(config, num_episodes, greedy).lower(*args).compile()

        signature = _signature(args)
        parts = ("evaluation", config, num_episodes, greedy, str(signature))
        return signature, program_cache.load_or_compile(config, parts, compile_program)

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
