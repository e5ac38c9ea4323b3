"""The environment layer over gymnax: creation, vectorisation, episode statistics.

gymnax auto-resets: `env.step` returns the first observation of the next episode when one ends,
and keeps the observation the action led to in `info["final_observation"]`. `step` below returns
that one as `Transition.next_obs`, and keeps termination and truncation apart, so that a truncated
episode can bootstrap from the critic's value of the state it was cut off in.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import importlib.util
import sys
import threading
import types
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from a3c_jax.types import EnvCarry, PRNGKey, Transition

# gymnax's environments by name: "family.module:Class" under `gymnax.environments` (the same
# table as `gymnax.registered_envs`, tested). Each is imported from its own module, without
# gymnax's package `__init__`s, which import every family (and through `misc.pong` seaborn,
# matplotlib, pandas and scipy) whichever one a run uses.
GYMNAX_ENVS: dict[str, str] = {
    "CartPole-v1": "classic_control.cartpole:CartPole",
    "Pendulum-v1": "classic_control.pendulum:Pendulum",
    "Acrobot-v1": "classic_control.acrobot:Acrobot",
    "MountainCar-v0": "classic_control.mountain_car:MountainCar",
    "MountainCarContinuous-v0": "classic_control.continuous_mountain_car:ContinuousMountainCar",
    "Asterix-MinAtar": "minatar.asterix:MinAsterix",
    "Breakout-MinAtar": "minatar.breakout:MinBreakout",
    "Freeway-MinAtar": "minatar.freeway:MinFreeway",
    "Seaquest-MinAtar": "minatar.seaquest:MinSeaquest",
    "SpaceInvaders-MinAtar": "minatar.space_invaders:MinSpaceInvaders",
    "Catch-bsuite": "bsuite.catch:Catch",
    "DeepSea-bsuite": "bsuite.deep_sea:DeepSea",
    "MemoryChain-bsuite": "bsuite.memory_chain:MemoryChain",
    "UmbrellaChain-bsuite": "bsuite.umbrella_chain:UmbrellaChain",
    "DiscountingChain-bsuite": "bsuite.discounting_chain:DiscountingChain",
    "MNISTBandit-bsuite": "bsuite.mnist:MNISTBandit",
    "SimpleBandit-bsuite": "bsuite.bandit:SimpleBandit",
    "FourRooms-misc": "misc.rooms:FourRooms",
    "MetaMaze-misc": "misc.meta_maze:MetaMaze",
    "PointRobot-misc": "misc.point_robot:PointRobot",
    "BernoulliBandit-misc": "misc.bernoulli_bandit:BernoulliBandit",
    "GaussianBandit-misc": "misc.gaussian_bandit:GaussianBandit",
    "Reacher-misc": "misc.reacher:Reacher",
    "Swimmer-misc": "misc.swimmer:Swimmer",
    "Pong-misc": "misc.pong:Pong",
    "FrozenLake-misc": "misc.frozen_lake:FrozenLake",
}
# gymnax environments refused by `Config`: what they would do that a run must not.
DOWNLOADING_ENVS: dict[str, str] = {
    "MNISTBandit-bsuite": "downloads the MNIST data set when it is created",
}


def env_names() -> list[str]:
    """The environment names `make_env` knows: gymnax's, and any registered at run time with
    `gymnax.register` (once gymnax's registry has been imported)."""
    registration = sys.modules.get("gymnax.registration")
    extra = [] if registration is None else list(registration.registered_envs)
    return list(GYMNAX_ENVS) + [name for name in extra if name not in GYMNAX_ENVS]


def unknown_env_message(env_name: str) -> str | None:
    """`None` if `env_name` is known, else a message with close matches and the known names."""
    known = env_names()
    if env_name in known:
        return None
    close = difflib.get_close_matches(env_name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return (
        f"env_name={env_name!r} is not a registered gymnax environment{hint} "
        f"(known: {', '.join(known)}; Gymnasium environments: 'gymnasium:<id>'; Brax "
        "environments: 'brax:<name>')"
    )


def import_leaf(name: str) -> types.ModuleType:
    """Imports the module `name` (e.g. "gymnax.environments.classic_control.cartpole") without
    running the `__init__` of packages above it that are not imported yet.

    Each such package is put in `sys.modules` as its real module object (name, `__path__`,
    spec) with its `__init__` deferred (PEP 562 `__getattr__`): a missing attribute that names
    a submodule imports just that submodule, any other runs the package's `__init__` once. So a
    later `import gymnax; gymnax.make(...)` works as usual and shares these modules' classes.
    """
    with _IMPORT_LOCK:  # threads (a background compile) may create environments too
        if name in sys.modules:
            return sys.modules[name]
        parts = name.split(".")
        for i in range(1, len(parts)):
            package = ".".join(parts[:i])
            if package not in sys.modules:
                _deferred_package(package)
        return importlib.import_module(name)


_IMPORT_LOCK = threading.RLock()


def _deferred_package(name: str) -> None:
    parent, _, child = name.rpartition(".")
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an importable package")
    module = importlib.util.module_from_spec(spec)

    def __getattr__(attr: str) -> Any:  # PEP 562: called for attributes the module lacks
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        del module.__dict__["__getattr__"]  # the real __init__ runs once, from here
        try:
            spec.loader.exec_module(module)
        except BaseException:
            module.__getattr__ = __getattr__  # still deferred: a later attribute tries again
            raise
        return getattr(module, attr)

    module.__getattr__ = __getattr__
    sys.modules[name] = module
    if parent:
        setattr(sys.modules[parent], child, module)


def make_gymnax(env_name: str) -> tuple[Any, Any]:
    """`gymnax.make(env_name)` importing only the environment's own module: `(env, params)`."""
    if env_name not in GYMNAX_ENVS:
        if message := unknown_env_message(env_name):
            raise ValueError(message)
        return sys.modules["gymnax.registration"].make(env_name)  # registered at run time
    module, _, cls = GYMNAX_ENVS[env_name].partition(":")
    env = getattr(import_leaf(f"gymnax.environments.{module}"), cls)()
    return env, env.default_params


@dataclasses.dataclass(frozen=True, eq=False)
class EnvSpec:
    """A gymnax environment with what the networks and losses need to know about it."""

    name: str
    env: Any
    env_params: Any
    obs_shape: tuple[int, ...]
    discrete: bool
    num_actions: int  # discrete: number of actions; continuous: action dimension
    action_low: Any = None  # continuous only: [d] bounds, actions are clipped to them
    action_high: Any = None
    max_episode_steps: int = 0
    # a3c_jax.wrappers.VecWrapper applied to every reset and step (obs_shape is its output's)
    wrapper: Any = None

    @property
    def action_shape(self) -> tuple[int, ...]:
        return () if self.discrete else (self.num_actions,)


def describe_actions(spec: EnvSpec, action_space: Any, xp: Any) -> EnvSpec:
    """`spec` (with `discrete` set) completed from its action space: the number of actions of a
    `Discrete` space, or the dimension and float32 bounds (arrays of `xp`: `jnp` for gymnax,
    `np` for host environments) of a 1-D `Box`. Shared by gymnax and `a3c_jax.host`."""
    if spec.discrete:
        return dataclasses.replace(spec, num_actions=int(action_space.n))
    shape = action_space.shape
    low, high = (
        xp.array(xp.broadcast_to(xp.asarray(b, xp.float32), shape))
        for b in (action_space.low, action_space.high)
    )
    return dataclasses.replace(spec, num_actions=int(shape[0]), action_low=low, action_high=high)


@functools.cache
def make_env(env_name: str, **options: Any) -> EnvSpec:
    """Creates (once per name) the gymnax environment `env_name` and describes its spaces.
    `"gymnasium:<id>"` names describe a host environment instead (`a3c_jax.host.spaces`),
    `"brax:<name>"` names a Brax environment (`a3c_jax.brax_envs`) made with the backend
    `options` (`backend_options(config)`)."""
    if env_name.startswith("gymnasium:"):
        from a3c_jax.host import spaces as host_spaces

        return host_spaces.make_spec(env_name)
    if env_name.startswith("brax:"):
        from a3c_jax import brax_envs

        return brax_envs.make_spec(env_name, **options)
    env, env_params = make_gymnax(env_name)
    spaces = import_leaf("gymnax.environments.spaces")
    action_space = env.action_space(env_params)
    obs_shape = tuple(env.observation_space(env_params).shape)
    max_steps = int(getattr(env_params, "max_steps_in_episode", 0))
    discrete = isinstance(action_space, spaces.Discrete)
    if discrete or (isinstance(action_space, spaces.Box) and len(action_space.shape) == 1):
        return describe_actions(
            EnvSpec(env_name, env, env_params, obs_shape, discrete, 0, max_episode_steps=max_steps),
            action_space,
            jnp,
        )
    raise ValueError(
        f"{env_name}: action space {action_space!r} is neither Discrete nor a 1-D Box; "
        "a3c_jax supports categorical and diagonal-Gaussian policies only"
    )


def backend_options(config: Any) -> dict[str, Any]:
    """The options of `make_env` that `config` (an `a3c_jax.Config`) sets for its backend."""
    if config.env_name.startswith("brax:"):
        from a3c_jax import brax_envs

        return brax_envs.options(config)
    return {}


def _obs(x: jax.Array) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def clip_action(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """Clips continuous actions `[..., d]` to the action space's bounds (discrete: unchanged)."""
    if spec.discrete:
        return action
    low = jnp.broadcast_to(spec.action_low, action.shape)
    high = jnp.broadcast_to(spec.action_high, action.shape)
    return jnp.clip(action, low, high)


def env_keys(key: PRNGKey, env_id: jax.Array) -> jax.Array:
    """One key per environment: `fold_in(key, env_id)`, `[B]` keys (raw: `[B, 2]`) for `[B]` ids.

    An environment's random draws depend on the shared `key` and on its own global index alone,
    not on how many environments share its batch: a batch split over devices (each with its slice
    of `env_id`) plays exactly as the whole batch would on one device.
    """
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, env_id)


def reset(spec: EnvSpec, key: PRNGKey, num_envs: int, first_env: int | jax.Array = 0) -> EnvCarry:
    """Resets `num_envs` environments numbered `first_env, ..., first_env + num_envs - 1`, each
    from its own key `env_keys(key, env_id)` (a device holding a slice of a larger batch passes the
    index of its first environment)."""
    env_id = jnp.arange(num_envs, dtype=jnp.int32) + jnp.asarray(first_env, jnp.int32)
    return _reset_ids(spec, key, env_id)


def restart(spec: EnvSpec, key: PRNGKey, carry: EnvCarry) -> EnvCarry:
    """Fresh episodes in the environments of `carry` (the same `env_id`s), from `key`; the
    wrappers keep their statistics, the policy its hidden state's shape (reset at each
    episode's first step by the networks)."""
    fresh = _reset_ids(spec, key, carry.env_id, carry.wrapper_state)
    return fresh._replace(core_state=carry.core_state)


def _reset_ids(
    spec: EnvSpec, key: PRNGKey, env_id: jax.Array, wrapper_state: Any = None
) -> EnvCarry:
    obs, env_state = jax.vmap(spec.env.reset, in_axes=(0, None))(
        env_keys(key, env_id), spec.env_params
    )
    obs = _obs(obs)
    if spec.wrapper is not None:
        wrapper_state, obs = spec.wrapper.reset(wrapper_state, obs)
    zeros = jnp.zeros(env_id.shape, jnp.float32)
    ints = jnp.zeros(env_id.shape, jnp.int32)
    return EnvCarry(
        env_state, obs, zeros, ints, env_id, () if spec.wrapper is None else wrapper_state
    )


class StepDraws(NamedTuple):
    """What `B` gymnax environments draw at random in one step, drawn ahead of it (`step_draws`):
    gymnax's `Environment.step` splits each environment's key into a key for `step_env` and one
    for the `reset_env` of its auto-reset, and computes that reset at every step."""

    key: jax.Array  # [B] each environment's key for `step_env` (raw: [B, 2])
    reset_obs: Any  # [B, O...] the first observation of the episode an auto-reset would start
    reset_state: Any  # [B] the environment state it would start from


def steps_as_gymnax(spec: EnvSpec) -> bool:
    """Whether `spec`'s environment steps with gymnax's own `Environment.step` (not DeepSea,
    which keeps statistics over its resets, nor a Brax or host environment): then its draws can
    be made ahead (`step_draws`)."""
    base = sys.modules.get("gymnax.environments.environment")
    return base is not None and type(spec.env).step is base.Environment.step


def step_draws(spec: EnvSpec, keys: jax.Array) -> StepDraws | jax.Array:
    """The draws of one step of `B` environments from their step keys `keys` `[B]` (raw `[B, 2]`),
    as gymnax's `Environment.step` would make them (the same splits, the same resets, bitwise).

    Made for a whole rollout at once (vmapped over its steps) they cost one hashing pass and
    one batch of resets instead of one of each at every step (on the CPU backend each hashing
    pass is a small XLA loop, costly to run at every step). Environments that do not step as
    gymnax does (`steps_as_gymnax`) get their keys back, which `step_each` hands to their own
    `step`.
    """
    if not steps_as_gymnax(spec):
        return keys

    def one(key: PRNGKey) -> StepDraws:
        key_step, key_reset = jax.random.split(key)
        obs, state = spec.env.reset_env(key_reset, spec.env_params)
        return StepDraws(key_step, obs, state)

    return jax.vmap(one)(keys)


@functools.partial(jax.jit, static_argnums=0)
def _step_drawn(
    env: Any, draws: StepDraws, state: Any, action: jax.Array, params: Any
) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
    """gymnax's `Environment.step` of one environment with its draws made ahead: the same
    step, truncation and auto-reset selection, jitted as gymnax's is (so XLA simplifies and
    fuses it alike: the same float results, bitwise)."""
    obs_st, state_st, reward, terminated, info = env.step_env(draws.key, state, action, params)
    truncated = env.is_truncated(state_st, params)
    done = jnp.logical_or(terminated, truncated)
    state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), draws.reset_state, state_st)
    obs = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), draws.reset_obs, obs_st)
    info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_st}
    return obs, state, reward, terminated, truncated, info


def step(
    spec: EnvSpec, key: PRNGKey, carry: EnvCarry, action: jax.Array
) -> tuple[EnvCarry, Transition]:
    """Steps `B` environments with `action` `[B, A...]`; auto-resets finished episodes. Each
    environment draws from its own key, `env_keys(key, carry.env_id)` (see `step_each`)."""
    return step_each(spec, env_keys(key, carry.env_id), carry, action)


def step_each(
    spec: EnvSpec, keys: StepDraws | jax.Array, carry: EnvCarry, action: jax.Array
) -> tuple[EnvCarry, Transition]:
    """`step` with the environments' own keys given, `[B]` (raw: `[B, 2]`), or their draws made
    ahead (`step_draws`): for callers that draw many steps' keys at once
    (`rollout.rollout_keys`, `rollout.rollout_draws`).

    Returns the new carry and the `Transition` of this step, whose `episode_return` and
    `episode_length` hold the finished episode's totals where `done`.
    """
    env_action = clip_action(spec, action)
    env_step = (
        functools.partial(_step_drawn, spec.env) if isinstance(keys, StepDraws) else spec.env.step
    )
    obs, env_state, reward, terminated, truncated, info = jax.vmap(
        env_step, in_axes=(0, 0, 0, None)
    )(keys, carry.env_state, env_action, spec.env_params)
    reward = jnp.asarray(reward, jnp.float32)
    terminated = jnp.asarray(terminated, bool)
    truncated = jnp.asarray(truncated, bool) & ~terminated
    done = terminated | truncated
    episode_return = carry.episode_return + reward
    episode_length = carry.episode_length + 1
    transition = Transition(
        obs=carry.obs,
        action=action,
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        next_obs=_obs(info["final_observation"]),
        episode_return=episode_return,
        episode_length=episode_length,
    )
    obs, wrapper_state = _obs(obs), carry.wrapper_state
    if spec.wrapper is not None:  # after the episode statistics: those stay the raw returns
        wrapper_state, transition, obs = spec.wrapper.step(wrapper_state, transition, obs)
    new_carry = EnvCarry(
        env_state=env_state,
        obs=obs,
        episode_return=jnp.where(done, 0.0, episode_return),
        episode_length=jnp.where(done, 0, episode_length),
        env_id=carry.env_id,
        wrapper_state=wrapper_state,
        core_state=carry.core_state,
    )
    return new_carry, transition
