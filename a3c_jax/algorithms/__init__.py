"""Each algorithm of the decks as a configuration over the shared parts.

An algorithm is its defaults (in `a3c_jax.presets.ALGORITHM_DEFAULTS`) and the builder of its
`Algorithm` here: `make(config, spec, networks, optimizer) -> Algorithm`.
"""

from __future__ import annotations

from collections.abc import Callable

from a3c_jax.algorithms import ac_replay, actor_critic
from a3c_jax.algorithms.base import Algorithm, UpdateFn, no_state

ALGORITHM_BUILDERS: dict[str, Callable[..., Algorithm]] = {
    "online_ac": actor_critic.make_nstep,
    "ac_replay": ac_replay.make_ac_replay,
    "da2c": actor_critic.make_episodic,
    "nstep_da2c": actor_critic.make_nstep,
    "a2c": actor_critic.make_nstep,
}

__all__ = [
    "ALGORITHM_BUILDERS",
    "Algorithm",
    "UpdateFn",
    "ac_replay",
    "actor_critic",
    "no_state",
]
