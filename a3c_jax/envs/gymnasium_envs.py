"""Gymnasium environments described for the networks and losses: names, spaces, factories.

A host environment is named `"gymnasium:<id>"` (any id in Gymnasium's registry, Atari's
`"gymnasium:ALE/Pong-v5"` included). `make_spec` describes it as the same `envs.EnvSpec` the
gymnax environments have, so `networks.make_networks`, `envs.clip_action` and the losses serve it
unchanged; its `env` field holds an `EnvFactory` (picklable: a process of an asynchronous vector
environment builds its own copy) instead of a gymnax environment.

Spaces and the heads they get:

- observations: `Box` of any shape, as float32 (`[H, W, C]` images take the CNN torso under
  `torso="auto"`, others the MLP, which flattens them); `Discrete(n)` as a one-hot `[n]`;
- actions: `Discrete(n)` -> categorical over `n` (Gymnasium's `start` offset added back when
  acting); a 1-D `Box` -> diagonal Gaussian, its samples clipped to the box's bounds before they
  reach the environment (the loss keeps the unclipped sample, whose log-probability it takes).

Other spaces (`Dict`, `Tuple`, `MultiDiscrete`, `MultiBinary`, text, graphs) raise `ConfigError`.
Atari ids (entry point in `ale_py`) get the usual preprocessing: `AtariPreprocessing` (no-op
starts, frame skip 4 with max-pooling, 84x84 grey, scaled to [0, 1]) on an environment made
with `frameskip=1`, then `FrameStackObservation(4)`, then the stack moved to the last axis
(`[84, 84, 4]`: channels-last, as the CNN torso expects).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
from typing import Any

import numpy as np

from a3c_jax.envs.spec import EnvSpec, describe_actions
from a3c_jax.errors import ConfigError

PREFIX = "gymnasium:"
ATARI_FRAME_STACK = 4


def gymnasium_id(env_name: str) -> str:
    """`"gymnasium:CartPole-v1"` -> `"CartPole-v1"`."""
    return env_name[len(PREFIX) :]


def _is_atari_id(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def require_gymnasium(env_name: str) -> Any:
    """The `gymnasium` module (with ale-py's ids registered where ale-py is installed), or
    `ConfigError` naming the extra to install."""
    if importlib.util.find_spec("gymnasium") is None:
        raise ConfigError(
            f"env_name={env_name!r} needs Gymnasium, which is not installed: "
            'pip install "a3c_jax[gymnasium]"'
        )
    import gymnasium

    if _is_atari_id(gymnasium_id(env_name)) and importlib.util.find_spec("ale_py") is None:
        raise ConfigError(
            f"env_name={env_name!r} is an Atari game, which needs ale-py (not installed): "
            'pip install "a3c_jax[atari]"'
        )
    _register_ale(gymnasium)
    return gymnasium


def _register_ale(gymnasium: Any) -> None:
    if importlib.util.find_spec("ale_py") is not None:
        import ale_py

        gymnasium.register_envs(ale_py)


def check_env_name(env_name: str) -> None:
    """`ConfigError` unless `env_name` is `"gymnasium:<id>"` with `<id>` in Gymnasium's registry
    (close ids suggested). Nothing is built."""
    gymnasium = require_gymnasium(env_name)
    env_id = gymnasium_id(env_name)
    known = list(gymnasium.envs.registry)
    if env_id not in known:
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(PREFIX + c for c in close)}?" if close else ""
        raise ConfigError(
            f"env_name={env_name!r}: {env_id!r} is not a registered Gymnasium environment{hint} "
            "(register your own with gymnasium.register(id=..., entry_point=...))"
        )


def _channels_last(obs: np.ndarray) -> np.ndarray:
    return np.moveaxis(obs, 0, -1)


@dataclasses.dataclass(frozen=True)
class EnvFactory:
    """Builds one environment of a Gymnasium id (with Atari's preprocessing where it applies).
    Picklable, so that each process of an asynchronous vector environment builds its own."""

    env_name: str

    def __reduce__(self) -> tuple[Any, ...]:
        # Outside Atari, a process unpickles `partial(gymnasium.make, spec)` and builds the
        # environment from its spec alone: it then imports Gymnasium, not a3c_jax and JAX
        # (seconds per process).
        gymnasium = require_gymnasium(self.env_name)
        env_id = gymnasium_id(self.env_name)
        if is_atari(gymnasium, env_id):
            return (EnvFactory, (self.env_name,))
        return (functools.partial, (gymnasium.make, gymnasium.spec(env_id)))

    def __call__(self) -> Any:
        gymnasium = require_gymnasium(self.env_name)
        env_id = gymnasium_id(self.env_name)
        if not is_atari(gymnasium, env_id):
            return gymnasium.make(env_id)
        from gymnasium import spaces, wrappers

        env = gymnasium.make(env_id, frameskip=1)
        env = wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, scale_obs=True)
        env = wrappers.FrameStackObservation(env, ATARI_FRAME_STACK)
        stacked = env.observation_space
        space = spaces.Box(
            _channels_last(stacked.low), _channels_last(stacked.high), dtype=stacked.dtype
        )
        return wrappers.TransformObservation(env, _channels_last, space)


def is_atari(gymnasium: Any, env_id: str) -> bool:
    """True where `env_id`'s entry point lives in ale-py."""
    entry = gymnasium.spec(env_id).entry_point
    return _is_atari_id(env_id) or (isinstance(entry, str) and entry.startswith("ale_py"))


def _unsupported(env_name: str, which: str, space: Any, supported: str) -> ConfigError:
    return ConfigError(
        f"env_name={env_name!r}: its {which} space {space} has no head here; a3c_jax supports "
        f"{supported} (flatten or wrap it with a Gymnasium wrapper, register that as an id)"
    )


def observation_shape(env_name: str, space: Any) -> tuple[int, ...]:
    """The float32 observation shape the networks see: the `Box`'s own, or `[n]` (one-hot) for
    `Discrete(n)`."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return tuple(space.shape)
    if isinstance(space, spaces.Discrete):
        return (int(space.n),)
    raise _unsupported(env_name, "observation", space, "Box and Discrete observations")


def describe(env_name: str, env: Any) -> EnvSpec:
    """The `EnvSpec` of the Gymnasium environment `env` (one instance, spaces read off it)."""
    from gymnasium import spaces

    obs_shape = observation_shape(env_name, env.observation_space)
    action_space = env.action_space
    max_steps = int(getattr(env.spec, "max_episode_steps", None) or 0)
    factory = EnvFactory(env_name)
    discrete = isinstance(action_space, spaces.Discrete)
    if discrete or (isinstance(action_space, spaces.Box) and len(action_space.shape) == 1):
        return describe_actions(
            EnvSpec(env_name, factory, None, obs_shape, discrete, 0, max_episode_steps=max_steps),
            action_space,
            np,
        )
    raise _unsupported(env_name, "action", action_space, "Discrete actions and 1-D Box actions")


@functools.cache
def make_spec(env_name: str) -> EnvSpec:
    """Describes (once per name) the Gymnasium environment `env_name`: builds one instance to
    read its spaces and time limit, then closes it. `ConfigError` for an unknown id, a missing
    extra or a space without a head."""
    check_env_name(env_name)
    gymnasium = require_gymnasium(env_name)
    try:
        env = EnvFactory(env_name)()
    except (ImportError, gymnasium.error.DependencyNotInstalled) as error:
        raise ConfigError(
            f"env_name={env_name!r} needs a package that is not installed: "
            f"{str(error).strip() or type(error).__name__}"
        ) from error
    try:
        return describe(env_name, env)
    finally:
        env.close()


def observe(space: Any, obs: Any) -> np.ndarray:
    """Gymnasium observations `[B, ...]` of `space` (one environment's) as the networks' float32
    `[B, O...]`: `Box` cast, `Discrete(n)` one-hot."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        index = np.asarray(obs, np.int64) - int(space.start)
        return np.eye(int(space.n), dtype=np.float32)[index]
    return np.asarray(obs, np.float32)


def env_actions(space: Any, actions: np.ndarray) -> np.ndarray:
    """The policy's actions `[B, A...]` (clipped already) as `space` (one environment's) takes
    them: `Discrete`'s `start` added, `Box`'s dtype."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return np.asarray(actions, np.int64) + int(space.start)
    return np.asarray(actions, space.dtype)
