"""What a `Config` trains on: the environment it names, wrapped as it asks.

The environment layer (`a3c_jax.envs`) knows no `Config`; this is where a configuration's fields
become an environment backend's options and a chain of wrappers.
"""

from __future__ import annotations

import dataclasses

from a3c_jax import envs
from a3c_jax.config import Config
from a3c_jax.envs import wrappers


def wrapper_list(config: Config, axis_name: str | None = None, training: bool = True):
    """The wrappers `config` asks for, in order: transforms, then (when `training`) the
    normalisers, whose statistics are merged over `axis_name`."""
    out = []
    if config.mask_velocity:
        out.append(wrappers.mask_velocity(config.env_name))
    if config.frame_stack > 1:
        out.append(wrappers.frame_stack(config.frame_stack))
    if training and config.normalize_obs:
        out.append(wrappers.normalize_obs(config.obs_clip, axis_name))
    if training and config.normalize_reward:
        out.append(wrappers.normalize_reward(config.gamma, config.reward_clip, axis_name))
    return out


def env_spec(config: Config, axis_name: str | None = None, training: bool = True) -> envs.EnvSpec:
    """The environment `config` trains on (`training`: with its normalisers, statistics merged
    over `axis_name`) or is evaluated on (transforms only: the networks apply the frozen
    observation statistics, `export_params`)."""
    spec = envs.make_env(config.env_name, **config.env_options)
    chosen = wrapper_list(config, axis_name, training)
    if not chosen:
        return spec
    wrapper = wrappers.chain(*chosen)
    return dataclasses.replace(spec, obs_shape=wrapper.obs_shape(spec.obs_shape), wrapper=wrapper)
