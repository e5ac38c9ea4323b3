"""The algorithm registry: each algorithm declared once, and every other place reads it."""

import dataclasses

import jax
import pytest

import a3c_jax
from a3c_jax import Config, ConfigError
from a3c_jax.algorithms import ALGORITHM_BUILDERS
from a3c_jax.config import presets, registry


def test_every_entry_is_consistent():
    fields = {f.name for f in dataclasses.fields(Config)}
    for name, spec in registry.REGISTRY.items():
        assert spec.name == name
        assert set(spec.defaults) <= fields, name
        assert set(spec.per_device_rounded_up) <= fields, name
        assert (spec.builder is None) == spec.asynchronous, name
        config = Config(algo=name)
        assert config.episodic == spec.episodic
        assert config.asynchronous == spec.asynchronous
        for field, value in spec.defaults.items():
            assert getattr(config, field) == value, (name, field)
    assert set(a3c_jax.ALGORITHMS) == set(registry.names())
    assert presets.ASYNCHRONOUS_ALGORITHMS == ("a3c",)
    assert set(presets.EPISODIC_ALGORITHMS) == {"da2c", "ac_replay"}
    with pytest.raises(KeyError, match="choose one of"):
        registry.get("ppo")


def test_a_new_algorithm_is_one_entry(monkeypatch):
    """An entry alone makes an algorithm: Config accepts it with its defaults, the views list
    it, and make_train and the chunked run train it (here a2c's builder, episodic off)."""
    entry = registry.AlgorithmSpec(
        "my_a2c", "a3c_jax.algorithms.actor_critic:make_nstep", {"n_steps": 3, "lr": 1e-3}
    )
    monkeypatch.setitem(registry.REGISTRY, "my_a2c", entry)
    config = Config(algo="my_a2c", num_envs=2, total_timesteps=2 * 3 * 4)
    assert (config.n_steps, config.lr, config.episodic) == (3, 1e-3, False)
    assert presets.ALGORITHM_DEFAULTS["my_a2c"] == {"n_steps": 3, "lr": 1e-3}
    assert "my_a2c" in ALGORITHM_BUILDERS and "my_a2c" not in presets.ASYNCHRONOUS_ALGORITHMS
    result = jax.jit(a3c_jax.make_train(config))(jax.random.PRNGKey(0))
    reference = a3c_jax.make_train(config.replace(algo="a2c", n_steps=3, lr=1e-3))
    expected = jax.jit(reference)(jax.random.PRNGKey(0))
    assert int(result.runner_state.updates) == 4
    leaves = zip(jax.tree.leaves(result.params), jax.tree.leaves(expected.params), strict=True)
    assert all(bool((a == b).all()) for a, b in leaves)


def test_asynchronous_entries_are_refused_by_make_train_and_vice_versa():
    with pytest.raises(ConfigError, match="asynchronous"):
        a3c_jax.make_train(Config(algo="a3c"))
    with pytest.raises(ConfigError, match="synchronous"):
        a3c_jax.train_async(Config(algo="a2c"), jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="only meaningful with an asynchronous algorithm"):
        Config(algo="a2c", num_workers=2)
