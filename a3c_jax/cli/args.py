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
