"""The command line: `a3c-jax train | eval | plot | sweep | tune` (also `python -m a3c_jax ...`).

    a3c-jax train --env CartPole-v1 --algo a2c [--num-seeds 4] [--set lr=7e-4 num_envs=64]
                  [--config file.yaml] [--out runs/NAME] [--overwrite] [--resume runs/NAME]
    a3c-jax eval runs/NAME [--episodes 100] [--stochastic] [--video episode.gif]
    a3c-jax plot runs/A runs/B [--out curves.png]
    a3c-jax sweep | tune ...        (a3c_jax.cli.sweep: a grid or an Optuna study, one compile)

Every `Config` field can be set, from a JSON/YAML file (`--config`) and then `--set FIELD=VALUE`
(which wins). Bad names and values stop with a message naming the field and exit code 2 before
anything is compiled. The interface is plain argparse over the dataclass's fields (no extra
dependency): `--set` parses each value by its field's type, so a new `Config` field is settable
without touching this file.

Exit codes: 0 done; 1 a checkpoint or run folder could not be read or written (disk full, the
folder deleted during training: the message says where the state is); 2 bad input (a setting, a
path, a folder in use by another run); 3 training diverged (the last good state is saved); 130
interrupted by Ctrl-C, 143 by SIGTERM (a checkpoint is saved).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from a3c_jax.cli.args import requested_fields, seed_value
from a3c_jax.config import (
    Config,
    ConfigError,
    field_types,
    registry,
)
from a3c_jax.errors import EXIT_BAD_INPUT, exit_code


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{name}={value} must be a positive integer")


def _check_train_options(args: argparse.Namespace) -> None:
    for name in ("--num-seeds", "--chunk-updates", "--checkpoint-every", "--stop-after"):
        _positive(name, getattr(args, name[2:].replace("-", "_")))
    _positive("--keep-checkpoints", args.keep_checkpoints)
    if args.checkpoint_seconds is not None and not args.checkpoint_seconds > 0:
        raise ConfigError(f"--checkpoint-seconds={args.checkpoint_seconds} must be positive")
    if args.episodes < 0:
        raise ConfigError(f"--episodes={args.episodes} must be 0 (no evaluation) or more")
    if args.tensorboard:
        try:
            import tensorboardX  # noqa: F401
        except ImportError as error:
            raise ConfigError(
                "--tensorboard needs tensorboardX: pip install 'a3c_jax[tensorboard]'"
            ) from error


def _resume_target(args: argparse.Namespace, fields: dict[str, Any]) -> tuple[Config, Path, int]:
    """The saved run's config (with `fields` over it, which must not change it), its folder
    and number of seeds."""
    from a3c_jax import distributed
    from a3c_jax.runs import checkpoint_file as ckpt
    from a3c_jax.runs import chunked
    from a3c_jax.runs.options import check_belongs

    if args.out or args.overwrite:
        raise ConfigError("--resume continues a run in its own folder: drop --out/--overwrite")
    run_dir, checkpoint = chunked.resume_target(args.resume)
    if checkpoint is None:
        checkpoint, saved = chunked.newest_checkpoint(run_dir, lambda _: None)  # train_run says it
    else:
        saved = ckpt.read_checkpoint(checkpoint)
    check_belongs(run_dir, saved.config, checkpoint)  # not a checkpoint copied in
    config = Config.from_dict({**saved.config.to_dict(), **fields}, source="--resume")
    num_seeds = saved.meta.get("num_seeds", 1)
    if args.num_seeds is not None and args.num_seeds != num_seeds:
        raise ConfigError(
            f"--num-seeds={args.num_seeds}: the run in {run_dir} has {num_seeds} seed(s)"
        )
    ckpt.check_config(saved.config, config, str(checkpoint))
    if distributed.is_output_process():
        print(f"resuming {run_dir} from {checkpoint.name} (update {saved.meta['update']})")
    return config, Path(args.resume), num_seeds


def train_command(args: argparse.Namespace) -> int:
    from a3c_jax.runs import chunked, timing

    phases = timing.Phases()  # startup: the interpreter and imports until here
    _check_train_options(args)
    fields = requested_fields(args)
    if args.resume:
        config, run_dir, num_seeds = _resume_target(args, fields)
    else:
        config = Config(**fields)
        num_seeds = args.num_seeds or 1
        run_dir = Path(args.out) if args.out else chunked.default_run_dir(config)
        if not args.dry_run:
            _check_new_run_dir(args, run_dir)  # fails before any compile
    if not args.dry_run:
        from a3c_jax.training import memory_estimate

        memory_estimate.check_fits(config, num_seeds)
    if args.dry_run:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    from a3c_jax.training.xla import enable_compilation_cache

    if not args.no_cache:
        enable_compilation_cache()
    return _train_in_folder(args, config, run_dir, num_seeds, phases)


def _check_new_run_dir(args: argparse.Namespace, run_dir: Path) -> None:
    import jax

    from a3c_jax import distributed
    from a3c_jax.runs import run_claim

    if jax.process_count() > 1 and not args.out:
        raise ConfigError(
            "a run over several processes needs --out DIR: the same run folder on every process"
        )
    if distributed.is_output_process():
        run_claim.check_new(run_dir, args.overwrite)  # deletes nothing (train_run replaces)


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run-folder options of `train` for `chunked.train_run` and
    `worker_runs.train_async_run`."""
    return {
        "seed": args.seed,
        "resume": bool(args.resume),
        "chunk_updates": args.chunk_updates,
        "checkpoint_every": args.checkpoint_every,
        "checkpoint_seconds": args.checkpoint_seconds,
        "keep_checkpoints": args.keep_checkpoints,
        "stop_after": args.stop_after,
        "progress": not args.no_progress,
        "tensorboard": args.tensorboard,
        "overwrite": args.overwrite,
    }


def _train_in_folder(
    args: argparse.Namespace, config: Config, run_dir: Path, num_seeds: int, phases: Any
) -> int:
    """`a3c_jax.train` into the run folder with the command line's options, then its report
    (`REPORTS[config.trainer]`) and greedy evaluation. Over several processes
    (`a3c_jax.launch`) all train the one run; process 0 alone writes the folder and reports."""
    from a3c_jax import api, distributed
    from a3c_jax.runs import chunked, run_folder

    output = distributed.is_output_process()
    if output:
        print(config)
        print(f"run folder: {chunked.resume_target(run_dir)[0] if args.resume else run_dir}")
    if args.episodes and output and config.trainer == "jit":
        from a3c_jax.training.evaluation import compile_evaluation

        compile_evaluation(config, args.episodes)  # compiles while training runs
    phases.lap("config")
    t0 = time.perf_counter()
    trained = api.train(
        config,
        run_dir=run_dir,
        num_seeds=num_seeds,
        log=print if output else lambda _: None,
        **_run_options(args),
    )
    outcome = trained.extras
    phases.lap("build", compile=outcome.compile_s, train=outcome.train_s, write=outcome.write_s)
    if not output:
        return 0
    REPORTS[config.trainer](config, outcome, time.perf_counter() - t0, num_seeds)
    print(f"checkpoint: {outcome.checkpoint}")
    if outcome.status in ("interrupted", "stopped"):
        print(f"resume with: a3c-jax train --resume {outcome.run_dir}")
        return 128 + (outcome.signal or 2) if outcome.status == "interrupted" else 0
    params = distributed.fetch(trained.params)
    _report_greedy(config, _seeds(params, num_seeds), args.episodes)
    phases.lap("evaluate")
    folder = run_folder.RunFolder(outcome.run_dir)
    folder.write_info({**folder.read_info(), "timings": phases.seconds})
    print(f"wall-clock: {phases.summary()}")
    return 0


def _report_jit(config: Config, outcome: Any, elapsed: float, num_seeds: int) -> None:
    """The jitted trainer's run (`chunked.RunOutcome`): steps, compile and train time, rate."""
    import numpy as np

    from a3c_jax import distributed
    from a3c_jax.runs import metrics_log

    steps = int(np.sum(distributed.fetch(outcome.runner_state.train_state.env_steps)))
    metrics = metrics_log.read_metrics(outcome.run_dir)
    rate = float(np.median(metrics["steps_per_second"])) if metrics["update"].size else 0.0
    print(
        f"{outcome.status} at update {outcome.update} of {config.num_updates} "
        f"({steps:,} env steps over {num_seeds} seed(s)) in {elapsed:.2f} s: compile "
        f"{outcome.compile_s:.2f} s, train {outcome.train_s:.2f} s; {rate:,.0f} env steps/s "
        "(median over chunks)"
    )


def _report_workers(config: Config, outcome: Any, elapsed: float, num_seeds: int) -> None:
    """A worker trainer's run (`worker_runs.AsyncRunOutcome`): its parallelism, rate, how busy
    the cores were and the gradients' staleness."""
    del elapsed, num_seeds
    result = outcome.result
    if config.trainer == "threads":
        parallelism = f"{config.num_workers} workers"
    elif config.trainer == "ray":
        nodes = len({n["node_id"] for n in result.worker_nodes})
        parallelism = (
            f"{config.num_workers} Ray workers ({config.parallelism}) on {nodes} node(s), "
            f"{sum(result.worker_restarts)} restart(s)"
        )
    else:
        parallelism = f"{config.num_envs} {config.vector_env} environments"
    print(
        f"{outcome.status} at update {outcome.update} of {config.num_updates}: compile "
        f"{outcome.compile_s:.2f} s, train {result.wall_seconds:.2f} s with "
        f"{parallelism}, {result.env_steps_per_second:,.0f} env steps/s, "
        f"{result.cores_busy:.2f} cores busy, staleness mean {result.staleness_mean:.2f} max "
        f"{result.staleness_max}"
    )


REPORTS = {
    "jit": _report_jit,
    "threads": _report_workers,
    "host": _report_workers,
    "ray": _report_workers,
}


def _report_greedy(
    config: Config,
    params_per_seed: Sequence[Any],
    episodes: int,
    last_returns: Sequence[float] | None = None,
) -> None:
    """Prints each seed's greedy evaluation over `episodes` (nothing if 0), after its last
    training return if given."""
    import jax
    import numpy as np

    import a3c_jax

    for i, params in enumerate(params_per_seed if episodes else []):
        returns = np.asarray(
            a3c_jax.evaluate(config, params, jax.random.PRNGKey(10_000 + i), episodes)
        )
        last = "" if last_returns is None else f"last training return {last_returns[i]:.1f}; "
        print(
            f"seed {i}: {last}greedy evaluation over {episodes} episodes: "
            f"{returns.mean():.1f} ± {returns.std():.1f}"
        )


def _seeds(params: Any, num_seeds: int) -> list[Any]:
    """`[S, ...]` parameters as a list of each seed's (unbatched when `num_seeds` is 1)."""
    import jax

    if num_seeds == 1:
        return [params]
    return [jax.tree.map(lambda x, i=i: x[i], params) for i in range(num_seeds)]


def eval_command(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    import a3c_jax
    from a3c_jax.runs import chunked

    if args.episodes < 1:
        raise ConfigError(f"--episodes={args.episodes} must be positive")
    if args.video_steps < 1:
        raise ConfigError(f"--video-steps={args.video_steps} must be positive")
    if args.video:
        _check_video(args.video, None)  # before the checkpoint is read
    saved = chunked.load(args.run_dir)
    config = saved.config
    if args.video:
        _check_video(args.video, config)  # before the evaluation, not after it
    num_seeds = chunked.seed_axis(saved.meta)
    indices = range(num_seeds) if num_seeds else [None]
    if args.index is not None:
        if args.index not in indices and not (num_seeds is None and args.index == 0):
            raise ConfigError(f"--index={args.index}: the run has seeds 0..{(num_seeds or 1) - 1}")
        indices = [args.index if num_seeds else None]
    mode = "stochastic" if args.stochastic else "greedy"
    means = []
    for i in indices:
        params = saved.params if i is None else jax.tree.map(lambda x, i=i: x[i], saved.params)
        key = jax.random.PRNGKey(args.seed + (i or 0))
        returns = np.asarray(
            a3c_jax.evaluate(config, params, key, args.episodes, greedy=not args.stochastic)
        )
        means.append(returns.mean())
        label = "" if i is None else f"seed {i}: "
        print(
            f"{label}{config.env_name} {config.algo}, {mode} over {args.episodes} episodes: "
            f"{returns.mean():.2f} ± {returns.std():.2f}"
        )
    if len(means) > 1:
        print(f"mean over {len(means)} seeds: {np.mean(means):.2f} ± {np.std(means):.2f}")
    if args.video:
        from a3c_jax.viz import video

        index = indices[0]
        params = saved.params if index is None else jax.tree.map(lambda x: x[index], saved.params)
        path, total, frames = video.record_episode(
            config,
            params,
            jax.random.PRNGKey(args.seed),
            args.video,
            greedy=not args.stochastic,
            max_steps=args.video_steps,
        )
        print(f"video: {path} ({frames} frames, return {total:.2f})")
    return 0


def _check_video(path: str, config: Config | None) -> None:
    """Raises `ConfigError` if `eval --video path` cannot record `config`'s environment (None:
    only the path is checked): a .gif that does not exist yet (never overwritten)."""
    from a3c_jax.viz import video

    if not path.lower().endswith(".gif"):
        raise ConfigError(f"--video {path}: only .gif videos are written")
    if os.path.lexists(path):
        raise ConfigError(
            f"--video {path}: exists already; a3c-jax never overwrites a file: choose a new name"
        )
    if config is not None and not video.can_render(config.env_name):
        raise ConfigError(
            f"--video {path}: no renderer for {config.env_name}; videos are drawn for "
            f"{', '.join(video.STATE_RENDERERS)} and environments with grid observations"
        )


def plot_command(args: argparse.Namespace) -> int:
    from a3c_jax.viz import plotting

    out = plotting.plot_runs(args.run_dirs, args.out, title=args.title)
    print(f"plot: {out}")
    return 0


def _fields_help() -> str:
    kinds = field_types()
    parts = [
        f"{field.name} ({getattr(kinds[field.name], '__name__', 'ints, e.g. 64,64')})"
        for field in dataclasses.fields(Config)
    ]
    return (
        "Config fields for --set FIELD=VALUE and --config: " + ", ".join(parts) + ". Unset "
        "fields come from the (env, algo) preset; --dry-run prints the resolved values."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a3c-jax",
        description="Train, evaluate and plot actor-critic agents on gymnax environments.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    _add_eval_parser(sub)
    _add_plot_parser(sub)
    from a3c_jax.cli import sweep

    sweep.add_parsers(sub)
    return parser


def _add_train_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train an agent into a run folder (and evaluate it greedily)",
        epilog=_fields_help(),
    )
    train.add_argument("--env", help="a gymnax environment name (default CartPole-v1)")
    train.add_argument("--algo", help=f"the algorithm: {', '.join(registry.names())} (default a2c)")
    train.add_argument(
        "--config", metavar="FILE", help="a .json/.yaml file of Config fields (--set wins)"
    )
    train.add_argument(
        "--set",
        nargs="*",
        action="extend",  # --set a=1 --set b=2 keeps both
        default=[],
        metavar="FIELD=VALUE",
        help="any Config field, e.g. --set lr=7e-4 num_envs=64 hidden_sizes=64,64",
    )
    train.add_argument("--seed", type=seed_value, default=0)
    train.add_argument(
        "--num-seeds", type=int, default=None, help="seeds trained at once with vmap (default 1)"
    )
    train.add_argument("--out", metavar="DIR", help="run folder (default runs/ALGO_ENV_TIME)")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    train.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint"
    )
    train.add_argument(
        "--chunk-updates",
        type=int,
        default=None,
        help="updates per jitted chunk between progress/metrics (default: ~50 chunks per run)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="UPDATES",
        help="updates between checkpoints (default: every --checkpoint-seconds; a final one "
        "is always written)",
    )
    train.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=None,
        help="wall-clock seconds between checkpoints when --checkpoint-every is not given "
        "(default 60; a resume keeps the run's checkpoint options unless given again)",
    )
    _add_run_options(train)


def _add_run_options(train: argparse.ArgumentParser) -> None:
    train.add_argument(
        "--keep-checkpoints", type=int, default=None, help="newest ones kept (default 3)"
    )
    train.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="UPDATES",
        help="stop after this many updates (whole chunks), checkpoint; continue with --resume",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also write TensorBoard event files",
    )
    train.add_argument(
        "--episodes",
        type=int,
        default=100,
        help="greedy evaluation episodes per seed after training (0: none)",
    )
    train.add_argument(
        "--no-cache", action="store_true", help="do not use the persistent compilation cache"
    )
    train.add_argument(
        "--dry-run", action="store_true", help="check the options, print the config, exit"
    )


def _add_eval_parser(sub: Any) -> None:
    ev = sub.add_parser("eval", help="evaluate a saved run, optionally record a video")
    ev.add_argument("run_dir", help="a run folder (or a checkpoint file)")
    ev.add_argument("--episodes", type=int, default=100)
    ev.add_argument("--stochastic", action="store_true", help="sample actions (default greedy)")
    ev.add_argument("--seed", type=seed_value, default=0, help="PRNG seed of the evaluation")
    ev.add_argument("--index", type=int, default=None, help="evaluate only this seed of the run")
    ev.add_argument("--video", metavar="FILE.gif", help="record one episode as a GIF")
    ev.add_argument(
        "--video-steps", type=int, default=1000, help="at most this many frames in the video"
    )


def _add_plot_parser(sub: Any) -> None:
    plot = sub.add_parser("plot", help="learning curves of runs to a PNG")
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--out", default="curves.png", help="PNG file (default curves.png)")
    plot.add_argument("--title", default=None)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from a3c_jax.cli import sweep

    commands = {"train": train_command, "eval": eval_command, "plot": plot_command}
    command = {**commands, **sweep.COMMANDS}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        print("a3c-jax: aborted (the checkpoints written so far are intact)", file=sys.stderr)
        return exit_code(KeyboardInterrupt())
    except Exception as error:
        return _known_failure(error)


def _known_failure(error: Exception) -> int:
    """The exit code (`errors.EXIT_CODES`) and one-line message of a failure that is not a bug;
    re-raises any other, with its traceback."""
    code = exit_code(error)
    if code is not None:
        print(f"a3c-jax: error: {error}", file=sys.stderr)
        return code
    if "RESOURCE_EXHAUSTED" in str(error):  # XLA ran out of memory compiling or running
        first = str(error).strip().splitlines()[0][:300]
        print(
            f"a3c-jax: error: out of memory ({first}); lower num_envs, n_steps or --num-seeds",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    raise error


def run() -> NoReturn:
    """The `a3c-jax` command (and `python -m a3c_jax`): `main`, then the process ends as a
    normal exit does (threads joined, `atexit` handlers run, output flushed) but without the
    interpreter's teardown of every module, which takes seconds once JAX is loaded.

    Before anything else it joins the multi-process run its environment describes
    (`a3c_jax.launch`), and makes JAX's CPU computations run inline (host runs call a small
    jitted policy step at every environment step): the process settings that `import a3c_jax`
    leaves alone."""
    from a3c_jax import distributed
    from a3c_jax.training import xla

    try:
        distributed.initialize_from_env()
    except Exception as error:  # a bad address, or the processes did not meet: one line
        code = _known_failure(error)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)  # not atexit: JAX's join may still wait in its thread
    xla.prefer_inline_dispatch()
    code = main()
    getattr(threading, "_shutdown", lambda: None)()  # what the interpreter's exit runs first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`a3c-jax train | head`)
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
