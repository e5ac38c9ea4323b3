"""The A3C deck's comparison on CartPole-v1 at a fixed environment-step budget: data parallelism,
gradient parallelism and asynchronous A3C with 1, 2 and 4 workers.

    python benchmarks/parallelism.py            # 3 seeds x 200k steps per mode (~15 min, 2 cores)
    python benchmarks/parallelism.py --quick    # 1 seed x 60k steps

Modes (each with its algorithm's defaults otherwise):
- data: `a2c`, one learner over `num_envs` vmapped environments; the whole run is one jitted
  `lax.scan` (per-update times are interpolated: every update costs the same).
- gradient: `a2c` with `Config(num_devices=2)` over 2 forced CPU devices, gradients averaged
  across devices; "n/a" where this build's `Config` has no `num_devices`.
- a3c-K: `a3c_jax.train_async` with K worker threads, each with one environment and t_max = 5
  (the paper's set-up), RMSprop statistics shared.

Every run is a fresh process, so its figures include tracing and compiling. Per run: compile
seconds, training seconds, training environment steps per second, CPU cores busy while training
(the process's CPU time over wall time, all threads together), the wall-clock to solve (the
first moment the last 20 finished training episodes average at least 475; training seconds, and
with the compile), and the greedy return over 100 episodes at the end. The tables give medians
over seeds; the PNG draws every run's training return (mean of the last 20 episodes) against
training wall-clock. A second table measures whether worker threads overlap: `train_async`
throughput with 1, 2 and 4 workers at equal work per worker (1,500 updates each), for 1 and 32
environments per worker, the fastest of 3 runs each (other jobs on a shared machine only ever
slow a run down). Writes `benchmarks/results/parallelism[_quick].json` (with the tables) and
`.png`; `run_all.py` runs it too.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import common

SOLVE_THRESHOLD = 475.0
SOLVE_WINDOW = 20  # finished training episodes averaged
EVAL_EPISODES = 100
GRADIENT_DEVICES = 2
MODES = ("data", "gradient", "a3c-1", "a3c-2", "a3c-4")


def _solving_curve(metrics):
    """After each update: the mean return of the latest `SOLVE_WINDOW` finished training
    episodes (`a3c_jax.viz.curves.smoothed_return`), NaN until that many have finished (as
    `time_to_solve.py` checks its threshold)."""
    import numpy as np

    from a3c_jax.viz.curves import smoothed_return

    finished = np.cumsum(np.asarray(metrics.episodes), axis=-1)
    return np.where(finished >= SOLVE_WINDOW, smoothed_return(metrics, SOLVE_WINDOW), np.nan)


def _curve_and_solve(metrics, times) -> dict:
    import numpy as np

    from a3c_jax.viz.curves import first_reaching

    rolling = _solving_curve(metrics)
    steps = np.asarray(metrics.env_steps)
    first = first_reaching(rolling, SOLVE_THRESHOLD)
    # At most 400 points per curve.
    keep = np.unique(np.linspace(0, len(times) - 1, min(400, len(times))).astype(int))
    return {
        "solve_s": float(times[first]) if first is not None else None,
        "solve_steps": int(steps[first]) if first is not None else None,
        "curve_t": [float(times[i]) for i in keep],
        "curve_return": [None if np.isnan(rolling[i]) else float(rolling[i]) for i in keep],
    }


def _greedy(config, params, seed: int) -> float:
    import jax
    import numpy as np

    import a3c_jax
    from a3c_jax import envs
    from a3c_jax.algorithms.networks import make_networks

    # A replicated (device-axis) copy of the parameters: evaluate one replica.
    shapes = jax.eval_shape(
        make_networks(config, envs.make_env(config.env_name)).init, jax.random.PRNGKey(0)
    )
    params = jax.tree.map(lambda x, s: x[0] if x.ndim > len(s.shape) else x, params, shapes)
    key = jax.random.PRNGKey(10_000 + seed)
    return float(np.mean(a3c_jax.evaluate(config, params, key, EVAL_EPISODES)))


def run_sync(mode: str, seed: int, budget: int) -> dict:
    """`data` or `gradient`: the synchronous trainer, compiled then timed."""
    import jax
    import numpy as np

    import a3c_jax

    fields = {f.name for f in dataclasses.fields(a3c_jax.Config)}
    config = a3c_jax.Config(algo="a2c", total_timesteps=budget)
    if mode == "gradient":
        if "num_devices" not in fields:
            return {"mode": mode, "seed": seed, "na": "n/a (needs num_devices)"}
        config = config.replace(num_devices=GRADIENT_DEVICES)
    key = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()
    compiled = a3c_jax.jit_train(config).lower(key).compile()
    t1 = time.perf_counter()
    cpu0 = time.process_time()
    result = jax.block_until_ready(compiled(key))
    train_s = time.perf_counter() - t1
    cpu_s = time.process_time() - cpu0
    updates = len(np.asarray(result.metrics.env_steps))
    times = train_s * np.arange(1, updates + 1) / updates  # every update costs the same
    return {
        "mode": mode,
        "seed": seed,
        "devices": len(jax.devices()),
        "compile_s": t1 - t0,
        "train_s": train_s,
        "steps_per_s": config.num_updates * config.batch_size / train_s,
        "cores_busy": cpu_s / train_s,
        "greedy": _greedy(config, result.params, seed),
        **_curve_and_solve(result.metrics, times),
    }


def run_async(
    workers: int, seed: int, budget: int, num_envs: int | None = None, repeats: int = 1
) -> dict:
    """`train_async` with `workers` threads; with `repeats > 1` (the overlap table) the same run
    again in this process (compiled once) and the figures of the fastest: other jobs on a shared
    machine only ever slow a run down."""
    import jax
    import numpy as np

    import a3c_jax

    config = a3c_jax.Config(algo="a3c", num_workers=workers, total_timesteps=budget)
    if num_envs is not None:
        config = config.replace(num_envs=num_envs)
    results = [a3c_jax.train_async(config, jax.random.PRNGKey(seed)) for _ in range(repeats)]
    result = max(results, key=lambda r: r.env_steps_per_second)
    staleness = result.async_metrics.staleness
    return {
        "mode": f"a3c-{workers}",
        "seed": seed,
        "num_envs": config.num_envs,
        "compile_s": results[0].compile_seconds,
        "train_s": result.wall_seconds,
        "steps_per_s": result.env_steps_per_second,
        "steps_per_s_runs": [r.env_steps_per_second for r in results],
        "updates_per_s": result.updates_per_second,
        "cores_busy": result.cores_busy,
        "staleness_mean": result.staleness_mean,
        "staleness_p99": float(np.percentile(staleness, 99)),
        "staleness_max": result.staleness_max,
        "greedy": _greedy(config, result.params, seed),
        **_curve_and_solve(result.metrics, result.async_metrics.wall_time),
    }


def run_one(mode: str, seed: int, budget: int, num_envs: int | None, repeats: int) -> dict:
    if mode in ("data", "gradient"):
        return run_sync(mode, seed, budget)
    return run_async(int(mode.split("-")[1]), seed, budget, num_envs, repeats)


def spawn(mode: str, seed: int, budget: int, num_envs: int | None = None, repeats: int = 1) -> dict:
    """One run in a fresh process (`gradient`: with forced CPU devices)."""
    extra = {}
    if mode == "gradient":
        flag = f"--xla_force_host_platform_device_count={GRADIENT_DEVICES}"
        extra["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    args = [__file__, "--one", mode, "--seed", str(seed), "--budget", str(budget)]
    args += ["--repeats", str(repeats)]
    if num_envs is not None:
        args += ["--num-envs", str(num_envs)]
    out = common.run_child(args, timeout=900, **extra)
    if "error" in out:
        out = {
            "mode": mode,
            "seed": seed,
            "num_envs": num_envs,
            "na": "failed (see the JSON)",
            "error": out["error"],
        }
    out["load_average"] = common.load_average()
    return out


def _median(runs: list[dict], name: str) -> float | None:
    values = [r[name] for r in runs if r.get(name) is not None]
    return statistics.median(values) if values else None


def comparison_table(rows: dict[str, list[dict]], budget: int) -> str:
    lines = [
        f"CartPole-v1, {budget:,} environment steps per run; medians over seeds",
        "",
        "| mode | runs | compile s | train s | env steps/s | cores busy | solved | "
        "train s to solve | s to solve with compile | greedy return (each seed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for mode, runs in rows.items():
        done = [r for r in runs if "na" not in r]
        if not done:
            lines.append(f"| {mode} | 0 | {runs[0]['na']} | | | | | | | |")
            continue
        solved = [r for r in done if r["solve_s"] is not None]
        with_compile = [r["solve_s"] + r["compile_s"] for r in solved]
        greedy = ", ".join(format(r["greedy"], ".0f") for r in done)
        lines.append(
            f"| {mode} | {len(done)} | {common.fmt(_median(done, 'compile_s'), '.1f')} | "
            f"{common.fmt(_median(done, 'train_s'), '.1f')} | "
            f"{common.fmt(_median(done, 'steps_per_s'), ',.0f')} | "
            f"{common.fmt(_median(done, 'cores_busy'), '.2f')} | {len(solved)}/{len(done)} | "
            f"{common.fmt(_median(solved, 'solve_s'), '.1f')} | "
            f"{common.fmt(statistics.median(with_compile) if with_compile else None, '.1f')} | "
            f"{greedy} |"
        )
    stale = [r for runs in rows.values() for r in runs if "staleness_mean" in r]
    if stale:
        lines.append("")
        lines.append(
            "A3C staleness (gradients applied between a worker's copy and its update): "
            + "; ".join(
                f"{mode} mean {_median(runs, 'staleness_mean'):.2f}, 99th percentile "
                f"{_median(runs, 'staleness_p99'):.0f}, max {max(r['staleness_max'] for r in runs)}"
                for mode, runs in rows.items()
                if runs and "staleness_mean" in runs[0]
            )
        )
    return "\n".join(lines)


def overlap_table(rows: list[dict], per_worker: int) -> str:
    lines = [
        f"Worker overlap: train_async throughput at {per_worker:,} updates per worker (fastest of "
        "3 runs)",
        "",
        "| envs per worker | workers | env steps/s | updates/s | cores busy | speed-up vs 1 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    base: dict[int, float] = {}
    for r in rows:
        if "na" in r:
            lines.append(f"| {r.get('num_envs', '?')} | {r['mode']} | {r['na']} | | | |")
            continue
        workers = int(r["mode"].split("-")[1])
        if workers == 1:
            base[r["num_envs"]] = r["steps_per_s"]
        speedup = r["steps_per_s"] / base[r["num_envs"]] if r["num_envs"] in base else None
        lines.append(
            f"| {r['num_envs']} | {workers} | {r['steps_per_s']:,.0f} | {r['updates_per_s']:,.0f} "
            f"| {r['cores_busy']:.2f} | {common.fmt(speedup, '.2f')} |"
        )
    return "\n".join(lines)


def draw(rows: dict[str, list[dict]], path: str, budget: int) -> bool:
    plt = common.matplotlib_pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = dict(zip(MODES, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for mode, runs in rows.items():
        for i, r in enumerate(r for r in runs if "na" not in r):
            ys = [float("nan") if y is None else y for y in r["curve_return"]]
            ax.plot(r["curve_t"], ys, color=colors[mode], lw=1.2, label=mode if i == 0 else None)
    ax.axhline(SOLVE_THRESHOLD, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training wall-clock, s (compile excluded; log scale)")
    ax.set_ylabel(f"training return, mean of last {SOLVE_WINDOW} episodes")
    ax.set_title(f"CartPole-v1, {budget:,} env steps per run, 2-core CPU (shared)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 60k steps")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None, help="environment steps per run")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--no-overlap", action="store_true", help="skip the overlap table")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--num-envs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = args.budget or (60_000 if args.quick else 200_000)
    if args.one:
        common.emit(run_one(args.one, args.seed, budget, args.num_envs, args.repeats))
        return
    seeds = args.seeds or (1 if args.quick else 3)
    machine = common.machine_info()
    rows: dict[str, list[dict]] = {}
    for mode in args.modes:
        rows[mode] = [spawn(mode, seed, budget) for seed in range(seeds)]
        print(f"{mode}: done", file=sys.stderr, flush=True)
    overlap = []
    per_worker = 300 if args.quick else 1_500
    if not args.no_overlap:
        for num_envs in (1, 32):
            for workers in (1, 2, 4):
                steps = per_worker * workers * num_envs * 5
                overlap.append(spawn(f"a3c-{workers}", 0, steps, num_envs, repeats=3))
    loads = [r["load_average"] for runs in rows.values() for r in runs]
    loads += [r["load_average"] for r in overlap]
    note = common.contention_note([machine["load_average_1min"], *loads])
    tables = f"{machine['cpu']}, {machine['cores']} cores; {note}\n\n"
    tables += comparison_table(rows, budget)
    if overlap:
        tables += f"\n\n{overlap_table(overlap, per_worker)}"
    print(f"\n{tables}\n")
    common.save_results(
        "parallelism",
        args,
        {"machine": machine, "budget": budget, "tables": tables, "runs": rows, "overlap": overlap},
        lambda path: draw(rows, path, budget),
    )


if __name__ == "__main__":
    main()
