"""Each algorithm of the decks as a configuration over the shared parts.

An algorithm is its defaults (in `a3c_jax.presets.ALGORITHM_DEFAULTS`) and the builder of its
update step here: `make_update(config, spec, networks, optimizer) -> update`, where
`update(train_state, env_carry, key) -> (train_state, env_carry, transitions [T, B], metrics)`.
"""

from __future__ import annotations

from a3c_jax.algorithms import actor_critic

UPDATE_BUILDERS = {
    "a2c": actor_critic.make_nstep_update,
    "nstep_da2c": actor_critic.make_nstep_update,
}

__all__ = ["UPDATE_BUILDERS", "actor_critic"]
