"""What progress reporting costs: chunked training (`a3c_jax.train_run`) against one whole-run
jit, and `jax.debug.callback` reporting from inside the whole-run scan; plus what the divergence
guard costs.

    python benchmarks/progress_overhead.py             # defaults: a2c on CartPole-v1, 200k steps
    python benchmarks/progress_overhead.py --repeats 5 --set num_envs=64
    TTY_COMPATIBLE=1 python benchmarks/progress_overhead.py   # draw the rich bar as on a terminal

Run time excludes compilation: each variant is compiled first, then all variants run in turn,
`--repeats` rounds after a warm-up round (interleaved, so that the load of other processes hits
every variant alike); medians reported. Both wall-clock and process CPU time (all threads: XLA's
and Python's) are reported, each against the whole-run jit's.
Variants, all the same training run:

- `whole-run jit`: `jit_train(config)`, one `lax.scan` over every update, nothing reported;
- `chunked (train_run)`: the CLI's loop: chunks of `chunk_updates` updates, each chunk's metrics
  to metrics.csv and the progress bar, periodic checkpoints (~10) and a final one, the next
  chunk dispatched before this one's host work;
- `debug.callback every k`: the whole-run scan, with a `jax.debug.callback` that hands the
  update's metrics to the host every k updates;
- `no guard`: the whole-run jit without the divergence guard (`jit_train(config, guard=False)`:
  a plain `lax.scan`, no finiteness check, no stopping test), to price the guard.

"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time


def main() -> int:
    import jax

    import a3c_jax
    from a3c_jax.cli.args import parse_overrides
    from a3c_jax.runs import chunked
    from a3c_jax.training.xla import compiler_options

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--chunks", type=int, nargs="*", default=[20, 50])
    parser.add_argument("--callback-every", type=int, nargs="*", default=[10, 100])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    config = a3c_jax.Config(**parse_overrides(args.set))
    key = jax.random.PRNGKey(0)
    rows = []

    variants: dict[str, tuple[float, object]] = {}  # name -> (compile seconds, run())

    # 1. The whole run under one jit.
    t0 = time.perf_counter()
    compiled = a3c_jax.jit_train(config).lower(key).compile()
    variants["whole-run jit"] = (
        time.perf_counter() - t0,
        lambda: jax.block_until_ready(compiled(key)),
    )

    # 2. Chunked, as the CLI trains (metrics.csv, progress bar, final checkpoint): the whole
    # call, with the run folder's set-up and the initialisation (the chunk compiled before).
    for num_chunks in args.chunks:
        for progress in (False, True):
            chunk = chunked.default_chunk_updates(config.num_updates, num_chunks)

            def train_in_folder(chunk=chunk, progress=progress):
                with tempfile.TemporaryDirectory() as folder:
                    return chunked.train_run(
                        config,
                        f"{folder}/run",
                        chunk_updates=chunk,
                        progress=progress,
                        log=lambda _: None,
                    )

            compile_s = train_in_folder().compile_s
            bar = "on" if progress else "off"
            name = f"train_run: {num_chunks} chunks of {chunk}, progress bar {bar}"
            variants[name] = (compile_s, train_in_folder)

    # 3. jax.debug.callback from inside the whole-run scan.
    trainer = a3c_jax.make_trainer(config)
    options = compiler_options(config)
    for every in args.callback_every:

        def on_host(update, env_steps, episode_return):
            del update, env_steps, episode_return  # a progress bar would draw them

        def train_with_callback(key, every=every, on_host=on_host):
            def body(runner, i):
                runner, metrics = trainer.run(runner, 1)
                jax.lax.cond(
                    (i + 1) % every == 0,
                    lambda: jax.debug.callback(
                        on_host, i + 1, metrics.env_steps[0], metrics.episode_return[0]
                    ),
                    lambda: None,
                )
                return runner, metrics

            runner, metrics = jax.lax.scan(
                body, trainer.init(key), jax.numpy.arange(config.num_updates)
            )
            return runner.train_state.params, metrics

        t0 = time.perf_counter()
        compiled_cb = jax.jit(train_with_callback, compiler_options=options).lower(key).compile()
        variants[f"debug.callback every {every} updates"] = (
            time.perf_counter() - t0,
            lambda c=compiled_cb: jax.block_until_ready(c(key)),
        )

    # 4. The whole run without the divergence guard.
    t0 = time.perf_counter()
    unguarded = a3c_jax.jit_train(config, guard=False).lower(key).compile()
    variants["whole-run jit, no divergence guard"] = (
        time.perf_counter() - t0,
        lambda: jax.block_until_ready(unguarded(key)),
    )

    # Interleaved repeats (after a warm-up), so that the machine's load hits every variant alike.
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats + 1):
        for name, (_, run) in variants.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    print(f"{config.env_name} {config.algo}: {config.num_updates} updates of {config.batch_size}")
    print("| variant | compile s | run s (wall) | vs whole-run | run s (CPU) | vs whole-run |")
    print("|---|---:|---:|---:|---:|---:|")
    base_wall = statistics.median(walls["whole-run jit"][1:])
    base_cpu = statistics.median(cpus["whole-run jit"][1:])
    for name, (compile_s, _) in variants.items():
        wall, cpu = statistics.median(walls[name][1:]), statistics.median(cpus[name][1:])
        rows.append(
            {
                "variant": name,
                "compile_s": compile_s,
                "wall_s": wall,
                "cpu_s": cpu,
                "walls": walls[name][1:],
                "cpus": cpus[name][1:],
            }
        )
        print(
            f"| {name} | {compile_s:.2f} | {wall:.3f} | {100 * (wall / base_wall - 1):+.1f}% | "
            f"{cpu:.3f} | {100 * (cpu / base_cpu - 1):+.1f}% |"
        )

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": config.to_dict(), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
