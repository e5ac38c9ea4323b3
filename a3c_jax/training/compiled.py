"""The compiled pieces of a chunked run, kept for the process.

Both take and return states with a seed axis `[S, ...]` (S >= 1): several seeds are vmapped, one
seed runs the plain trainer with the axis added and dropped inside the jit (free: no `vmap`,
whose batched `while_loop` would select over the whole state at every update). A run repeated or
resumed in the same process finds its programs here instead of compiling them again.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from a3c_jax.config import Config, registry
from a3c_jax.core.types import RunnerState, Trainer
from a3c_jax.training import program_cache
from a3c_jax.training.xla import compiler_options

CACHE_SIZE = 8  # compiled programs kept per kind (the newest)
_INITS: dict[tuple, Callable] = {}
_CHUNKS: dict[tuple, Any] = {}


def _add_seed_axis(tree: Any) -> Any:
    return jax.tree.map(lambda x: x[None], tree)


def _drop_seed_axis(tree: Any) -> Any:
    return jax.tree.map(lambda x: x[0], tree)


def over_seeds(fn: Callable, num_seeds: int) -> Callable:
    """`fn` over arguments and results with a leading seed axis `[num_seeds, ...]`."""
    if num_seeds > 1:
        return jax.vmap(fn)
    return lambda *args: _add_seed_axis(fn(*_drop_seed_axis(args)))


def _remember(cache: dict[tuple, Any], key: tuple, make: Callable[[], Any]) -> Any:
    if key not in cache:
        while len(cache) >= CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def _cache_key(config: Config, *rest: Any) -> tuple:
    """`config` and its algorithm's builder (replaced in tests) plus `rest`."""
    return (config, registry.get(config.algo).builder, *rest)


def compiled_init(
    trainer: Trainer, config: Config, num_seeds: int
) -> Callable[[jax.Array], RunnerState]:
    """`trainer.init` jitted over keys `[S, 2]` -> `RunnerState` `[S, ...]`."""
    return _remember(
        _INITS,
        _cache_key(config, num_seeds),
        lambda: jax.jit(
            over_seeds(trainer.init, num_seeds),
            compiler_options=compiler_options(config, num_seeds),
        ),
    )


def compiled_chunk(trainer: Trainer, config: Config, chunk: int, runner: RunnerState) -> Any:
    """`trainer.run(runner, chunk, until)` compiled for `runner` `[S, ...]` (and `until` `[S]`):
    `(runner, until) -> (runner, metrics [S, chunk])`."""
    num_seeds = int(np.shape(runner.updates)[0])
    avals = tuple(
        (x.shape, x.dtype, getattr(x, "weak_type", False)) for x in jax.tree.leaves(runner)
    )
    key = _cache_key(config, chunk, num_seeds, jax.tree.structure(runner), avals)

    def compile_chunk() -> Any:
        def run_chunk(runner: RunnerState, until: jax.Array) -> tuple[RunnerState, Any]:
            return trainer.run(runner, chunk, until)

        options = compiler_options(config, num_seeds)
        jitted = jax.jit(over_seeds(run_chunk, num_seeds), compiler_options=options)
        until = np.zeros((num_seeds,), np.int32)
        parts = ("chunk", config, chunk, num_seeds, str(jax.tree.structure(runner)), avals, options)
        return program_cache.load_or_compile(
            config, parts, lambda: jitted.lower(runner, until).compile()
        )

    return _remember(_CHUNKS, key, compile_chunk)


def compiled_chunk_ahead(
    trainer: Trainer, config: Config, chunk: int, keys: jax.Array
) -> concurrent.futures.Future | None:
    """Starts `compiled_chunk` for the state that `compiled_init(...)(keys)` will return, in a
    background thread (its shapes from `jax.eval_shape`), so that the chunk compiles while the
    initial state compiles and runs; the future holds the compiled chunk. None, nothing started,
    over several devices or processes (there the state's placement is part of the program)."""
    from a3c_jax.training import background, parallel

    if parallel.num_devices(config) != 1 or jax.process_count() > 1:
        return None
    shapes = jax.eval_shape(compiled_init(trainer, config, int(keys.shape[0])), keys)
    return background.start(
        compiled_chunk, trainer, config, chunk, shapes, name="a3c_jax-compile-chunk"
    )
