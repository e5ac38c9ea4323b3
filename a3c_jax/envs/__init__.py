"""The environment layer: every backend behind one small interface.

`make_env(name)` describes an environment (`EnvSpec`), whichever backend makes it (the one table,
`vector.BACKENDS`: gymnax by default, `"brax:<name>"` Brax, `"gymnasium:<id>"` Gymnasium and
Atari, stepped on the host); `reset`, `step` and `step_each` step a batch of gymnax or Brax
environments inside a jitted program. Nothing here knows `Config`: `a3c_jax.algorithms.build`
turns a configuration into an environment and its wrappers (`wrappers`).

Modules: `backends` (the backend table), `spec` (`EnvSpec`), `vector` (batched reset and step),
`gymnax_envs`, `brax_envs`, `gymnasium_envs` (one per backend), `wrappers`.
"""

from a3c_jax import _lazy

_NAMES = {
    **dict.fromkeys(
        (
            "DOWNLOADING_ENVS",
            "GYMNAX_ENVS",
            "env_names",
            "import_leaf",
            "make_gymnax",
            "unknown_env_message",
        ),
        "gymnax_envs",
    ),
    **dict.fromkeys(("EnvSpec", "clip_action", "describe_actions"), "spec"),
    **dict.fromkeys(("BACKENDS", "backend", "is_brax_env", "is_host_env"), "backends"),
    **dict.fromkeys(
        (
            "StepDraws",
            "env_keys",
            "make_env",
            "reset",
            "restart",
            "step",
            "step_draws",
            "step_each",
            "steps_as_gymnax",
        ),
        "vector",
    ),
}
__getattr__, __dir__ = _lazy.attach(__name__, _NAMES, globals())
__all__ = sorted(_NAMES)
