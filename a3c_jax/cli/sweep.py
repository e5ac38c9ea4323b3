"""`a3c-jax sweep` and `a3c-jax tune`: a grid, or an Optuna study, in one compiled program.

    a3c-jax sweep --env Acrobot-v1 --algo a2c --grid lr=1e-4,3e-4,1e-3 ent_coef=0,0.01 \\
                  --num-seeds 4 --out runs/sweep
    a3c-jax tune  --env Acrobot-v1 --algo a2c --trials 64 --batch 16 --num-seeds 4 \\
                  [--space lr=1e-5:1e-2:log ent_coef=0:0.05] --out runs/tune [--resume runs/tune]

Both take the base configuration as `train` does (`--env`, `--algo`, `--config`, `--set`), check
every setting before anything compiles (exit code 2 naming the field and value), and write a
folder (`a3c_jax.sweeps.output`, `a3c_jax.sweeps.tune`). Importing this module imports no JAX.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from a3c_jax.cli.args import seed_value
from a3c_jax.config import TRACED_FIELDS, ConfigError, coerce_field


def parse_grid(items: list[str]) -> dict[str, list[float]]:
    """`["lr=1e-4,3e-4", "ent_coef=0,0.01"]` -> `{"lr": [1e-4, 3e-4], "ent_coef": [0.0, 0.01]}`."""
    if not items:
        raise ConfigError("--grid: give at least one FIELD=V1,V2,... (e.g. lr=1e-4,3e-4)")
    space: dict[str, list[float]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not text:
            raise ConfigError(f"--grid {item!r}: expected FIELD=V1,V2,...")
        if name in space:
            raise ConfigError(f"--grid: {name} is given twice")
        values = [coerce_field(name, v, source="--grid") for v in text.split(",")]
        space[name] = [float(v) for v in values]
    return space


def _base_config(args: argparse.Namespace) -> Any:
    from a3c_jax.cli.args import requested_fields
    from a3c_jax.config import Config

    return Config(**requested_fields(args))


def _print_progress(total: int, t0: float) -> Any:
    def on_batch(first: int, out: Any) -> None:
        done = first + len(out.greedy_return)
        print(f"  settings {done}/{total} done ({time.perf_counter() - t0:.1f} s)", flush=True)

    return on_batch


def sweep_command(args: argparse.Namespace) -> int:
    from a3c_jax.sweeps import grid as sw
    from a3c_jax.sweeps import output

    if args.num_seeds < 1:
        raise ConfigError(f"--num-seeds={args.num_seeds} must be at least 1")
    if args.episodes < 0:
        raise ConfigError(f"--episodes={args.episodes} must be 0 (no evaluation) or more")
    config = _base_config(args)
    space = parse_grid(args.grid)
    settings = sw.grid(space)
    sw.check_settings(config, settings)  # every value, before anything compiles
    folder = output.new_folder(args.out)
    import jax

    print(config)
    print(f"sweep: {len(settings)} settings x {args.num_seeds} seeds into {folder}")
    t0 = time.perf_counter()
    result = sw.sweep(
        config,
        space,
        args.num_seeds,
        jax.random.PRNGKey(args.seed),
        episodes=args.episodes,
        batch_size=args.batch_size,
        on_batch=_print_progress(len(settings), t0),
    )
    output.write_sweep(folder, result, space, args.threshold)
    print(result.markdown(args.threshold), end="")
    print(
        f"{len(settings)} settings x {args.num_seeds} seeds in batches of {result.batch_size}: "
        f"compile {result.compile_seconds:.1f} s (once), run {result.run_seconds:.1f} s"
    )
    print(f"best: {result.settings[result.best_index]}; its config: {folder / 'best.json'}")
    return 0


def _tune_space(args: argparse.Namespace) -> dict[str, Any]:
    from a3c_jax.sweeps import tune

    if not args.space:
        return dict(tune.DEFAULT_SPACE)
    space = {}
    for item in args.space:
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--space {item!r}: expected FIELD=LOW:HIGH[:log]")
        space[name.strip()] = tune.parse_range(name.strip(), text)
    return space


def _tune_setup(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Path, dict[str, Any]]:
    """The base config, the space, the folder and the study's options: from the command line,
    or from the folder's `tune.json` when resuming (where the command line may only add
    trials)."""
    from a3c_jax.config import Config
    from a3c_jax.sweeps import output, tune

    if args.resume:
        folder = Path(args.resume)
        info = tune.read_tune_info(folder)
        config = Config.from_dict(info["config"], source=f"--resume {folder}")
        space = {n: tune.parse_range(n, t) for n, t in info["space"].items()}
        options = {k: info[k] for k in ("batch", "num_seeds", "seed", "episodes", "quantile")}
        return config, space, folder, options
    if not args.out:
        raise ConfigError("tune needs --out DIR (a new folder) or --resume DIR")
    for name in ("batch", "num_seeds"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.quantile is not None and not 0 <= args.quantile <= 1:
        raise ConfigError(f"--quantile={args.quantile} must be within [0, 1]")
    config = _base_config(args)
    space = _tune_space(args)
    tune.check_space(config, space)
    options = {
        "batch": args.batch,
        "num_seeds": args.num_seeds,
        "seed": args.seed,
        "episodes": args.episodes,
        "quantile": args.quantile,
    }
    return config, space, output.new_folder(args.out), options


def tune_command(args: argparse.Namespace) -> int:
    from a3c_jax.sweeps import tune

    if args.trials < 1:
        raise ConfigError(f"--trials={args.trials} must be at least 1")
    tune.require_optuna()  # the extra is there, before anything compiles
    config, space, folder, options = _tune_setup(args)
    print(config)
    print(
        f"tune: {args.trials} trials in rounds of {options['batch']} x {options['num_seeds']} "
        f"seeds over {', '.join(f'{n} {r.to_text()}' for n, r in space.items())} into {folder}"
    )

    def on_round(index: int, seconds: float, study: Any) -> None:
        best = tune.best_config(config, study)
        value = max((t.value for t in study.trials if t.value is not None), default=math.nan)
        where = ", ".join(f"{n}={getattr(best, n):.3g}" for n in space) if best else "none yet"
        print(
            f"  round {index}: {seconds:.1f} s; {len(study.trials)} trials, best {value:.1f} "
            f"({where})",
            flush=True,
        )

    study = tune.tune(
        config,
        space,
        folder,
        trials=args.trials,
        resume=bool(args.resume),
        on_round=on_round,
        **options,
    )
    best = tune.best_config(config, study)
    print(f"study: {folder / tune.STUDY_FILE}; trials: {folder / 'trials.csv'}")
    if best is not None:
        print(f"best config: {folder / 'best.json'} (a3c-jax train --config {folder}/best.json)")
    return 0


def _add_base_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", help="a gymnax environment name (default CartPole-v1)")
    parser.add_argument("--algo", help="a synchronous algorithm (default a2c)")
    parser.add_argument("--config", metavar="FILE", help="a .json/.yaml file of Config fields")
    parser.add_argument(
        "--set",
        nargs="*",
        action="extend",
        default=[],
        metavar="FIELD=VALUE",
        help="any Config field of the base configuration",
    )
    parser.add_argument("--seed", type=seed_value, default=0)
    parser.add_argument("--num-seeds", type=int, default=4, help="seeds per setting (default 4)")
    parser.add_argument(
        "--episodes",
        type=int,
        default=20,
        help="greedy evaluation episodes per setting and seed, inside the program (default 20)",
    )


def add_parsers(sub: Any) -> None:
    """The `sweep` and `tune` subcommands."""
    fields = ", ".join(TRACED_FIELDS)
    sweep = sub.add_parser(
        "sweep",
        help="train a grid of settings x seeds in one compiled program",
        epilog=f"Sweepable fields: {fields}.",
    )
    _add_base_options(sweep)
    sweep.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        default=[],
        metavar="FIELD=V1,V2,...",
        help="the values of each swept field; the grid is their product",
    )
    sweep.add_argument("--out", required=True, metavar="DIR", help="a new folder")
    sweep.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="settings per call of the program (default: as many as fit in memory)",
    )
    sweep.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="also report the environment steps at which the training return reached this",
    )
    tune = sub.add_parser(
        "tune",
        help="an Optuna study, each round a batch of trials in one compiled program",
        epilog=f"Tunable fields: {fields}.",
    )
    _add_base_options(tune)
    tune.add_argument("--trials", type=int, default=64, help="finished trials in all")
    tune.add_argument("--batch", type=int, default=16, help="trials per round (one call)")
    tune.add_argument(
        "--space",
        nargs="+",
        action="extend",
        default=[],
        metavar="FIELD=LOW:HIGH[:log]",
        help="search ranges (default: lr, ent_coef, vf_coef, gae_lambda, max_grad_norm)",
    )
    tune.add_argument(
        "--quantile",
        type=float,
        default=None,
        help="tell Optuna this quantile of the seeds' returns instead of their mean",
    )
    tune.add_argument("--out", metavar="DIR", help="a new folder for the study")
    tune.add_argument("--resume", metavar="DIR", help="continue the study in DIR")


COMMANDS = {"sweep": sweep_command, "tune": tune_command}
