"""How a3c_jax compiles: XLA's compiler options and JAX's persistent compilation cache.

Host-side settings only; nothing here traces. Every `jax.jit` of the library compiles with
`compiler_options(config, num_seeds)`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax

if TYPE_CHECKING:
    from a3c_jax.config import Config

# XLA's CPU backend spends most of a short run compiling. Backend optimisation level 1 cut the
# compile of the default training loop from 4.0 s to 3.3 s here, at equal run time.
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
# Short runs also use XLA's older loop emitter instead of its MLIR fusion emitters: measured on
# this project's 2-core CPU, the default CartPole-v1 loop then compiled in 1.1-1.6 s instead of
# 1.8-2.9 s, while its kernels ran 0-25% slower up to 512 environments and 40% slower at 2,048.
# Compile is then the larger cost up to about a million environment steps.
SHORT_RUN_STEPS = 1_000_000
SHORT_RUN_COMPILER_OPTIONS = {**CPU_COMPILER_OPTIONS, "xla_cpu_use_fusion_emitters": False}


def compiler_options(
    config: Config | None = None, num_seeds: int = 1, short: bool = False
) -> dict | None:
    """The options every a3c_jax `jax.jit` compiles with. On accelerators, XLA's defaults. On the
    CPU, `CPU_COMPILER_OPTIONS`, or `SHORT_RUN_COMPILER_OPTIONS` (faster to compile, a little
    slower to run) for a short program (`short`: an evaluation) or a run of `config` over
    `num_seeds` seeds that plays at most `SHORT_RUN_STEPS` environment steps in all."""
    if jax.default_backend() != "cpu":
        return None
    if short or (config is not None and config.total_timesteps * num_seeds <= SHORT_RUN_STEPS):
        return SHORT_RUN_COMPILER_OPTIONS
    return CPU_COMPILER_OPTIONS


# JAX's CPU client runs each call on a worker thread by default ("async dispatch"), which costs
# a thread hand-off per call: a jitted policy step on 8 observations took 350-470 us that way and
# 45-90 us inline on this project's 2-core CPU. Host runs make one such call per environment
# step; the gymnax trainers' few large calls do not notice (`a3c-jax train`: equal wall-clock).
INLINE_DISPATCH_FLAG = "jax_cpu_enable_async_dispatch"


def prefer_inline_dispatch() -> bool:
    """Makes JAX's CPU client run computations inline (`jax_cpu_enable_async_dispatch=False`)
    unless the user chose (the `JAX_CPU_ENABLE_ASYNC_DISPATCH` variable) or JAX's backend is
    already up (the client reads the flag once, when it is made). Process-wide, results
    unchanged. Returns whether it set the flag."""
    try:  # JAX's own test of whether a client exists; private, so its absence costs nothing
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:
        return False
    if INLINE_DISPATCH_FLAG.upper() in os.environ or backends_are_initialized():
        return False
    jax.config.update(INLINE_DISPATCH_FLAG, False)
    return True


def compile_ahead(fn: Callable, *args: Any, config: Config) -> Any:
    """`fn` jitted with `config`'s compiler options, lowered for `args` (arrays or
    `jax.ShapeDtypeStruct`s) and compiled now: the compiled program, called with arrays of
    those shapes."""
    return jax.jit(fn, compiler_options=compiler_options(config)).lower(*args).compile()


def compile_side_by_side(
    programs: dict[str, tuple[Callable, ...]], config: Config
) -> dict[str, Any]:
    """`compile_ahead` of each `name: (fn, *args)` in `programs`, each in its own thread (XLA's
    compile releases the GIL, so on several cores they overlap): `name: compiled program`. The
    first error is raised once all have ended."""
    from a3c_jax.training import background

    compile_now = functools.partial(compile_ahead, config=config)
    futures = {
        name: background.start(compile_now, *program, name=f"a3c_jax-compile-{name}")
        for name, program in programs.items()
    }
    concurrent.futures.wait(futures.values())
    return {name: future.result() for name, future in futures.items()}


def enable_compilation_cache(path: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache (default `~/.cache/a3c_jax/xla`, or
    `$A3C_JAX_CACHE_DIR`): a repeated start then loads the compiled loop instead of compiling it."""
    path = (
        path
        or os.environ.get("A3C_JAX_CACHE_DIR")
        or os.path.join(os.path.expanduser("~"), ".cache", "a3c_jax", "xla")
    )
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
