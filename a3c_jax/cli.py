"""The command line: `a3c-jax train ...` (also `python -m a3c_jax train ...`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import types
import typing
from collections.abc import Sequence
from typing import Any

from a3c_jax import presets
from a3c_jax.config import Config, ConfigError


def _field_types() -> dict[str, tuple[Any, ...]]:
    """Each `Config` field's value types, in the order a `--set` value is tried against them
    (`num_devices: int | str`: an integer, else a string such as "all")."""
    hints = typing.get_type_hints(Config)
    out = {}
    for field in dataclasses.fields(Config):
        hint = hints[field.name]
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            out[field.name] = tuple(a for a in typing.get_args(hint) if a is not type(None))
        else:
            out[field.name] = (hint,)
    return out


def _parse_value(kind: Any, text: str) -> Any:
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    if typing.get_origin(kind) is tuple:
        return tuple(int(v) for v in text.split(",") if v)
    return kind(text)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`["lr=7e-4", "hidden_sizes=64,64", "anneal_lr=false"]` -> typed `Config` arguments."""
    types_by_name = _field_types()
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE")
        if name not in types_by_name:
            raise ConfigError(
                f"--set {name}: no such Config field; fields: {', '.join(sorted(types_by_name))}"
            )
        kinds = types_by_name[name]
        for kind in kinds:
            try:
                overrides[name] = _parse_value(kind, text)
                break
            except ValueError:
                continue
        else:
            allowed = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
            raise ConfigError(f"--set {name}={text!r}: not a valid {allowed}")
    return overrides


def train_command(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    import a3c_jax
    from a3c_jax import distributed

    config = Config(env_name=args.env, algo=args.algo, **parse_overrides(args.set))
    if not args.no_cache:
        a3c_jax.enable_compilation_cache()
    # In a run over several processes (a3c_jax.launch) all train; process 0 alone reports.
    output = distributed.is_output_process()
    if output:
        print(config)
    if config.algo in presets.ASYNCHRONOUS_ALGORITHMS:
        return train_async_command(config, args)
    num_seeds = args.num_seeds
    train = a3c_jax.jit_train(config, num_seeds=num_seeds if num_seeds > 1 else None)
    key = jax.random.PRNGKey(args.seed)
    keys = jax.random.split(key, num_seeds) if num_seeds > 1 else key
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    t1 = time.perf_counter()
    result = jax.block_until_ready(compiled(keys))
    t2 = time.perf_counter()
    if not output:
        return 0
    steps = config.num_updates * config.batch_size * num_seeds
    rate = steps / (t2 - t1)
    print(f"trace+compile {t1 - t0:.2f} s, train {t2 - t1:.2f} s, {rate:,.0f} env steps/s")
    all_params = distributed.fetch(result.params)
    params = (
        [all_params]
        if num_seeds == 1
        else [jax.tree.map(lambda x, i=i: x[i], all_params) for i in range(num_seeds)]
    )
    final = distributed.fetch(result.metrics.episode_return).reshape(num_seeds, -1)[:, -1]
    for i, p in enumerate(params):
        returns = np.asarray(
            a3c_jax.evaluate(config, p, jax.random.PRNGKey(10_000 + i), args.episodes)
        )
        print(
            f"seed {i}: last training return {final[i]:.1f}; greedy evaluation over "
            f"{args.episodes} episodes: {returns.mean():.1f} ± {returns.std():.1f}"
        )
    return 0


def train_async_command(config: Config, args: argparse.Namespace) -> int:
    """`a3c` and the like: threads, so seeds one after the other (no vmap)."""
    import jax
    import numpy as np

    import a3c_jax

    key = jax.random.PRNGKey(args.seed)
    keys = jax.random.split(key, args.num_seeds) if args.num_seeds > 1 else [key]
    for i, seed_key in enumerate(keys):
        result = a3c_jax.train_async(config, seed_key)
        print(
            f"seed {i}: compile {result.compile_seconds:.2f} s, train {result.wall_seconds:.2f} s "
            f"with {config.num_workers} workers, {result.env_steps_per_second:,.0f} env steps/s, "
            f"{result.updates_per_second:,.0f} updates/s, staleness mean "
            f"{result.staleness_mean:.2f} max {result.staleness_max}"
            + (" (interrupted)" if result.interrupted else "")
        )
        returns = np.asarray(
            a3c_jax.evaluate(config, result.params, jax.random.PRNGKey(10_000 + i), args.episodes)
        )
        print(
            f"seed {i}: last training return {result.metrics.episode_return[-1]:.1f}; greedy "
            f"evaluation over {args.episodes} episodes: {returns.mean():.1f} ± {returns.std():.1f}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="a3c-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent and evaluate it greedily")
    train.add_argument("--env", default="CartPole-v1", help="a gymnax environment name")
    train.add_argument("--algo", default="a2c")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--num-seeds", type=int, default=1, help="seeds trained at once (vmap)")
    train.add_argument("--episodes", type=int, default=100, help="greedy evaluation episodes")
    train.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="any Config field, e.g. --set lr=7e-4 num_envs=64",
    )
    train.add_argument(
        "--no-cache", action="store_true", help="do not use the persistent compilation cache"
    )
    args = parser.parse_args(argv)
    try:
        if args.num_seeds < 1 or args.episodes < 1:
            raise ConfigError("--num-seeds and --episodes must be positive")
        return train_command(args)
    except ConfigError as error:
        print(f"a3c-jax: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
