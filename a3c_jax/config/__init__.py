"""The configuration layer: `Config` (frozen, validated before anything compiles), the presets
and the algorithm registry (every capability of every algorithm, in one table).

Modules: `config` (`Config` and its field tables), `presets` (defaults per algorithm and
environment), `registry` (the algorithms). Names are imported on first use.
"""

from a3c_jax import _lazy

_NAMES = {
    **dict.fromkeys(
        (
            "ACTION_SPACE_FIELDS",
            "BRAX_FIELDS",
            "NORMALIZER_FIELDS",
            "TRACED_FIELDS",
            "TRAINERS",
            "WRAPPER_FIELDS",
            "Config",
            "coerce_field",
            "field_types",
            "read_config_file",
            "torso_kind",
        ),
        "config",
    ),
    "ConfigError": "config",
}
__getattr__, __dir__ = _lazy.attach(__name__, _NAMES, globals())
__all__ = sorted(_NAMES)
