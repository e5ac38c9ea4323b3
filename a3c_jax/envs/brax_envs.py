"""Brax physics environments (`env_name="brax:<name>"`) behind the gymnax interface of `envs`.

`BraxEnv` wraps one of Brax's *raw* environments (`brax.envs.get_environment`, none of Brax's
training wrappers) in the gymnax calling convention that `envs.reset` and `envs.step_each` vmap:
`reset(key, params) -> (obs, state)` and `step(key, state, action, params) -> (obs, state,
reward, terminated, truncated, info)`, with the time limit, action repeat and auto-reset done here:

- `terminated`: Brax's `done` (the pendulum fell, the hopper's torso left its healthy range);
- `truncated`: the episode reached `episode_length` physics steps (`ceil(episode_length /
  action_repeat)` agent steps) without terminating;
- after either, the state is a fresh `reset` drawn from the step's key, and the observation the
  action led to is kept in `info["final_observation"]`, so a truncated episode bootstraps from
  the critic's value of the state it was cut off in, exactly as for gymnax. (Brax's own
  `AutoResetWrapper` overwrites that observation with the first one of the next episode, which
  its PPO works around by masking truncated steps.)

Brax is an optional extra (`pip install "a3c_jax[brax]"`), imported only when a `brax:` name is
used; without it, `check_env_name` raises `ConfigError` before anything is compiled. Brax acts
in `[-1, 1]^d` (each environment scales to its actuators' ranges), the action box given here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib.util
import io
import threading
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from a3c_jax.core.types import PRNGKey
from a3c_jax.envs.spec import EnvSpec, describe_actions
from a3c_jax.errors import ConfigError

PREFIX = "brax:"
# Brax's physics pipelines (`brax.envs.get_environment(..., backend=...)`). On CPU, "spring"
# compiles and runs fastest; "generalized" is Brax's default and the most accurate.
BACKENDS = ("spring", "positional", "generalized")
# The options of `make_spec` and their defaults (`Config.brax_backend`, `episode_length` and
# `action_repeat` set them).
DEFAULT_OPTIONS: dict[str, Any] = {"backend": "spring", "episode_length": 1000, "action_repeat": 1}

_IMPORT_LOCK = threading.Lock()


def brax_name(env_name: str) -> str:
    """`"brax:hopper"` -> `"hopper"`."""
    return env_name[len(PREFIX) :]


def available() -> bool:
    """True when Brax is installed (checked without importing it)."""
    return importlib.util.find_spec("brax") is not None


def import_brax_envs() -> Any:
    """`brax.envs`, imported once with its import-time noise kept out of our output (mujoco's
    "Failed to import warp" print, Brax's maintenance `UserWarning`s)."""
    with _IMPORT_LOCK, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import brax.envs

    return brax.envs


def env_names() -> list[str]:
    """The `brax:` names of Brax's registered environments (imports Brax)."""
    return [PREFIX + name for name in sorted(import_brax_envs()._envs)]


def check_env_name(env_name: str) -> None:
    """Raises `ConfigError` if Brax is not installed or `env_name` names no Brax environment."""
    if not available():
        raise ConfigError(
            f'env_name={env_name!r} needs Brax, which is not installed: pip install "a3c_jax[brax]"'
        )
    known = env_names()
    if env_name not in known:
        close = difflib.get_close_matches(env_name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"env_name={env_name!r} is not a Brax environment{hint} (known: {', '.join(known)})"
        )


@contextlib.contextmanager
def _brax_numpy() -> Iterator[None]:
    """Where Brax's own code is traced: NumPy's implicit rank promotion allowed (Brax relies on
    it), whatever `jax_numpy_rank_promotion` our code (and our tests: "raise") runs under; and
    the `DeprecationWarning`s Brax's physics raise about MuJoCo's fields kept quiet."""
    with jax.numpy_rank_promotion("allow"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


class BraxState(NamedTuple):
    """The state of one wrapped Brax environment."""

    inner: Any  # brax.envs.State: physics state, obs, reward, done, metrics, info
    time: jax.Array  # [] int32 agent steps of the running episode


@dataclasses.dataclass(frozen=True, eq=False)
class BraxEnv:
    """A raw Brax environment with a time limit, action repeat and auto-reset, called as a
    gymnax environment on one (unbatched) environment; `params` is unused (`None`)."""

    env: Any  # brax.envs.Env without wrappers
    episode_length: int  # physics steps per episode (as Brax's EpisodeWrapper counts them)
    action_repeat: int

    @property
    def max_steps(self) -> int:
        """Agent steps per episode: `ceil(episode_length / action_repeat)`."""
        return -(-self.episode_length // self.action_repeat)

    def reset(self, key: PRNGKey, params: Any = None) -> tuple[jax.Array, BraxState]:
        """A fresh episode: its first observation `[O]` and state."""
        with _brax_numpy():
            inner = self.env.reset(key)
        return inner.obs, BraxState(inner, jnp.zeros((), jnp.int32))

    def step(
        self, key: PRNGKey, state: BraxState, action: jax.Array, params: Any = None
    ) -> tuple[jax.Array, BraxState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """`action` `[d]` repeated `action_repeat` times (rewards summed, Brax's `done` of the
        last physics step, as Brax's EpisodeWrapper), then the time limit and auto-reset."""

        def physics(inner: Any, _: None) -> tuple[Any, jax.Array]:
            with _brax_numpy():
                inner = self.env.step(inner, action)
            return inner, inner.reward

        inner, rewards = jax.lax.scan(physics, state.inner, None, self.action_repeat)
        time = state.time + 1
        terminated = inner.done > 0.5
        truncated = (time >= self.max_steps) & ~terminated
        done = terminated | truncated
        reset_obs, reset_state = self.reset(key)
        stepped = BraxState(inner, time)
        new_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, stepped)
        obs = jnp.where(done, reset_obs, inner.obs)
        reward = jnp.sum(rewards)
        info = {"final_observation": inner.obs, "terminated": terminated, "truncated": truncated}
        return obs, new_state, reward, terminated, truncated, info


def make_spec(env_name: str, **options: Any) -> EnvSpec:
    """The `EnvSpec` (one per name and options) of the Brax environment `env_name`
    (`"brax:<name>"`) with the `options` given (`backend`, `episode_length`: physics steps per
    episode, `action_repeat`), the others at their `DEFAULT_OPTIONS`."""
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise TypeError(f"make_spec: unknown options {sorted(unknown)}")
    return _make_spec(env_name, **{**DEFAULT_OPTIONS, **options})


@functools.cache
def _make_spec(env_name: str, backend: str, episode_length: int, action_repeat: int) -> EnvSpec:
    check_env_name(env_name)
    if backend not in BACKENDS:
        raise ConfigError(f"brax_backend={backend!r} must be one of {BACKENDS}")
    brax_envs = import_brax_envs()
    with warnings.catch_warnings():  # "Brax System, pipelines and environments are not ..."
        warnings.simplefilter("ignore", UserWarning)
        raw = brax_envs.get_environment(brax_name(env_name), backend=backend)
    if not isinstance(raw.observation_size, int):
        raise ConfigError(
            f"env_name={env_name!r} observes {raw.observation_size!r} (a dict of arrays); "
            "a3c_jax takes one observation vector"
        )
    env = BraxEnv(raw, episode_length, action_repeat)
    box = _Box(shape=(int(raw.action_size),), low=-1.0, high=1.0)
    spec = EnvSpec(
        env_name,
        env,
        None,
        (int(raw.observation_size),),
        False,
        0,
        max_episode_steps=env.max_steps,
    )
    return describe_actions(spec, box, jnp)


class _Box(NamedTuple):
    """The action box Brax acts in, as `envs.describe_actions` reads it."""

    shape: tuple[int, ...]
    low: float
    high: float
