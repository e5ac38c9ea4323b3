"""gymnax's environments: the table of names, importing only an environment's own module, and
the `EnvSpec` of one (`make_spec`). `a3c_jax.envs.vector` steps them."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

import jax.numpy as jnp

from a3c_jax.envs.spec import EnvSpec, describe_actions
from a3c_jax.errors import ConfigError

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


def make_spec(env_name: str) -> EnvSpec:
    """The `EnvSpec` of the gymnax environment `env_name` (created once per name by
    `a3c_jax.envs.make_env`)."""
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


def check_env_name(env_name: str) -> None:
    """Raises `ConfigError` unless `env_name` is a gymnax environment a run may create."""
    if env_name in DOWNLOADING_ENVS:
        raise ConfigError(
            f"env_name={env_name!r} is not supported: it {DOWNLOADING_ENVS[env_name]}, "
            "which a3c_jax never does (runs must work offline)"
        )
    message = unknown_env_message(env_name)
    if message is not None:
        raise ConfigError(message)
