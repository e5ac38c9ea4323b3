"""The interface every algorithm builder returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from a3c_jax.types import EnvCarry, Params, PRNGKey, TrainState, UpdateOutput

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


def no_state(params: Params, key: PRNGKey) -> tuple[()]:
    """`Algorithm.init` of algorithms that keep nothing besides their parameters."""
    del params, key
    return ()
