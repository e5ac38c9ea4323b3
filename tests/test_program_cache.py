"""program_cache: compiled programs kept on disk by their recipe, loaded by a later start."""

import jax
import numpy as np
import pytest

from a3c_jax import Config
from a3c_jax.config import registry
from a3c_jax.training import compiled, evaluation, program_cache
from a3c_jax.training.loop import make_trainer

CONFIG = Config(num_envs=4, n_steps=4, total_timesteps=4 * 4 * 6)


def _persistent_cache(path):
    """Sets JAX's persistent cache folder (None: off) and yields; then puts back the old one."""
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", path)
    yield
    jax.config.update("jax_compilation_cache_dir", previous)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """JAX's persistent cache on in `tmp_path` for this test, and no program in memory."""
    monkeypatch.setattr(compiled, "_CHUNKS", {})
    monkeypatch.setenv(program_cache.ENABLE, "1")
    for _ in _persistent_cache(str(tmp_path)):
        yield tmp_path / program_cache.FOLDER


@pytest.fixture
def no_cache():
    yield from _persistent_cache(None)


def _chunk(runner):
    return compiled.compiled_chunk(make_trainer(CONFIG), CONFIG, 3, runner)


def _runner():
    keys = jax.random.split(jax.random.PRNGKey(0), 1)
    return compiled.compiled_init(make_trainer(CONFIG), CONFIG, 1)(keys)


def test_a_kept_chunk_loads_and_trains_bitwise_as_compiled(cache_dir, monkeypatch):
    runner = _runner()
    until = np.full((1,), 6, np.int32)
    first, _ = _chunk(runner)(runner, until)
    assert len(list(cache_dir.glob("*.bin"))) == 1  # kept

    monkeypatch.setattr(compiled, "_CHUNKS", {})  # a new process: nothing in memory
    calls = []
    real = program_cache.load_or_compile
    monkeypatch.setattr(
        program_cache,
        "load_or_compile",
        lambda config, parts, fn: real(config, parts, lambda: calls.append(1) or fn()),
    )
    again, _ = _chunk(runner)(runner, until)
    assert not calls  # loaded, not compiled
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_torn_entry_is_compiled_again(cache_dir):
    runner = _runner()
    _chunk(runner)
    (entry,) = cache_dir.glob("*.bin")
    entry.write_bytes(entry.read_bytes()[:100])  # half written by a process that died
    compiled._CHUNKS.clear()
    program = _chunk(runner)
    state, _ = program(runner, np.full((1,), 6, np.int32))
    assert int(state.updates[0]) == 3
    assert entry.stat().st_size > 100  # written whole again


def test_the_key_changes_with_what_makes_the_program(monkeypatch):
    key = program_cache.program_key("chunk", CONFIG, 3)
    assert key == program_cache.program_key("chunk", CONFIG, 3)
    assert key != program_cache.program_key("chunk", CONFIG.replace(lr=1e-3), 3)
    assert key != program_cache.program_key("chunk", CONFIG, 4)
    monkeypatch.setattr(program_cache, "_SOURCE_DIGEST", ["an edited a3c_jax"])
    assert key != program_cache.program_key("chunk", CONFIG, 3)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    monkeypatch.setattr(program_cache, "_SOURCE_DIGEST", [])
    assert key != program_cache.program_key("chunk", CONFIG, 3)


def test_nothing_is_kept_without_the_persistent_cache(no_cache, monkeypatch, tmp_path):
    monkeypatch.setenv(program_cache.ENABLE, "1")
    assert program_cache.folder() is None
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    monkeypatch.delenv(program_cache.ENABLE)
    assert program_cache.folder() is None  # off unless asked for
    assert program_cache.load_or_compile(CONFIG, ("x",), lambda: 42) == 42


def test_only_own_algorithms_on_one_device_are_kept(monkeypatch):
    assert program_cache.keeps(CONFIG)
    from a3c_jax.training import parallel

    with monkeypatch.context() as patch:
        patch.setattr(parallel, "num_devices", lambda config: 2)
        assert not program_cache.keeps(CONFIG)  # placed over two devices
    entry = registry.get(CONFIG.algo)
    monkeypatch.setitem(registry.REGISTRY, CONFIG.algo, entry._replace(builder=lambda c: None))
    assert not program_cache.keeps(CONFIG)  # a builder substituted at run time


def test_the_evaluation_is_kept_too(cache_dir):
    future = evaluation.compile_evaluation(CONFIG, 3)
    future.result()
    assert len(list(cache_dir.glob("*.bin"))) == 1
    params = make_trainer(CONFIG).init(jax.random.PRNGKey(0)).train_state.params
    returns = evaluation.evaluate(CONFIG, params, jax.random.PRNGKey(1), 3)
    assert returns.shape == (3,)
