"""What every subcommand reads from its command line: the `Config` fields asked for."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from a3c_jax.config import ConfigError, coerce_field, read_config_file


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`["lr=7e-4", "hidden_sizes=64,64", "anneal_lr=false"]` -> typed `Config` arguments."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE")
        overrides[name.strip()] = coerce_field(name.strip(), text, source="--set")
    return overrides


def requested_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The `Config` fields the command line asks for: `--config` file, then `--env`/`--algo`,
    then `--set` (later wins). Checked field by field; nothing compiled."""
    fields: dict[str, Any] = {}
    if args.config:
        fields.update(
            {
                name: coerce_field(name, value, source=f"--config {args.config}")
                for name, value in read_config_file(args.config).items()
            }
        )
    if args.env is not None:
        fields["env_name"] = args.env
    if args.algo is not None:
        fields["algo"] = args.algo
    fields.update(parse_overrides(args.set))
    return fields


SEED_LIMIT = 2**32  # seeds are 0 .. 2**32 - 1 (a PRNG key holds 32 bits of them)


def seed_value(text: str) -> int:
    """argparse's `type` of `--seed`: an integer in 0 .. 2**32 - 1 (argparse's error, exit code
    2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} must lie in 0 .. {SEED_LIMIT - 1}")
    return value
