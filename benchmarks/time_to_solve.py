"""Time for `a2c` to reach a return threshold, cold and warm, one seed or many at once.

    python benchmarks/time_to_solve.py            # 5 seeds x 3 environments, vmap N = 1, 8, 64
    python benchmarks/time_to_solve.py --quick    # fewer seeds (3, and 2 on MinAtar)

Each environment runs with its `a2c` defaults (`a3c_jax.Config(env_name=...)`, presets included):

| environment | threshold | why |
|---|---|---|
| CartPole-v1 | 475 | the Gym "solved" line (the maximum is 500) |
| Acrobot-v1 | -100 | the Gym "solved" line (random policy: about -500) |
| Breakout-MinAtar | 3 | six times a random policy's 0.5 (the preset reaches about 24 at 2M steps) |

"Reached" is the first update at which the mean return of the latest 20 finished training
episodes (`a3c_jax.viz.curves.smoothed_return`, once 20 episodes have finished) is at least the
threshold (`first_reaching`); the greedy return of the parameters at that update (100 episodes)
confirms it (the "greedy ≥ threshold" column).

1. One seed at a time, in a fresh process each. **Cold**: an empty persistent compilation cache
   (`a3c_jax.enable_compilation_cache` on a new temporary folder, which the run fills, as a first
   `a3c-jax train` does). **Warm**: the same seed again in a new process on the folder the cold run
   filled. The run is timed from the call that builds the trainer (`make_trainer`; imports apart)
   to the solving update, with tracing and compile (or cache load) reported apart. It trains in
   chunks of 1% of the budget (`make_trainer(config).run`, one compiled `lax.scan` per chunk) and
   stops at the end of the chunk holding the solving update: the time is real wall-clock, not
   prorated, and at most one chunk late.
2. N seeds at once (`jit_train(config, num_seeds=N)`, one compiled loop vmapped over keys) for
   N = 1, 8, 64, each in a fresh process with an empty cache: the whole budget's wall-clock
   (compile apart), its cost per seed and the ratio to N = 1. Each seed's time to the threshold
   is prorated by environment steps (all seeds advance together in one compiled loop).

Prints markdown tables, writes `benchmarks/results/time_to_solve[_quick].json` and `.png`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import common
import numpy as np

# (environment, threshold). Budgets are the presets' `total_timesteps`.
ENVIRONMENTS: dict[str, float] = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "Breakout-MinAtar": 3.0,
}
WINDOW_EPISODES = 20  # training episodes in the smoothed return
CHUNKS = 100  # a single-seed run trains in chunks of 1% of its budget
VMAP_SEEDS = (1, 8, 64)
VMAP_TARGET_RATIO = 4.0  # issue 7: 64 seeds at once cost at most 4x one seed's wall-clock


def solving_curve(metrics) -> np.ndarray:
    """The return the threshold is checked on, after each update `[..., U]`: the mean of the
    latest `WINDOW_EPISODES` finished training episodes (`a3c_jax.viz.curves.smoothed_return`), and
    NaN until that many episodes have finished (`smoothed_return` averages fewer at the start,
    where a few lucky episodes would count as solving)."""
    from a3c_jax.viz.curves import smoothed_return

    finished = np.cumsum(np.asarray(metrics.episodes), axis=-1)
    return np.where(finished >= WINDOW_EPISODES, smoothed_return(metrics, WINDOW_EPISODES), np.nan)


def _config(env_name: str, total_timesteps: int | None):
    import a3c_jax

    config = a3c_jax.Config(env_name=env_name, algo="a2c")
    if total_timesteps is not None:
        config = config.replace(total_timesteps=total_timesteps)
    return config


def _cache_entries(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def solve_child(
    env_name: str,
    seed: int,
    cache_dir: str,
    eval_episodes: int,
    total_timesteps: int | None,
    threshold: float,
) -> dict[str, Any]:
    """One seed trained until it reaches `threshold` (in this fresh process)."""
    t_import = time.perf_counter()
    import jax
    import numpy as np

    import a3c_jax
    from a3c_jax.core.types import UpdateMetrics
    from a3c_jax.training.loop import compiler_options
    from a3c_jax.viz.curves import first_reaching

    jax.devices()  # backend start-up belongs to the imports, not to the call to train
    import_s = time.perf_counter() - t_import
    a3c_jax.enable_compilation_cache(cache_dir)
    entries_before = _cache_entries(cache_dir)

    t0 = time.perf_counter()
    config = _config(env_name, total_timesteps)
    trainer = a3c_jax.make_trainer(config)
    chunk = max(1, config.num_updates // CHUNKS)
    options = compiler_options(config)
    key = jax.random.PRNGKey(seed)
    init = jax.jit(trainer.init, compiler_options=options).lower(key).compile()
    runner = init(key)  # (milliseconds) its shapes lower `run` without tracing `init` again
    run = (
        jax.jit(trainer.run, static_argnums=1, compiler_options=options)
        .lower(runner, chunk)
        .compile()
    )
    t1 = time.perf_counter()
    chunks: list[UpdateMetrics] = []
    solve_update = None
    for _ in range(config.num_updates // chunk):
        runner, metrics = run(runner)
        chunks.append(jax.device_get(metrics))
        history = UpdateMetrics(*(np.concatenate(field) for field in zip(*chunks, strict=True)))
        solve_update = first_reaching(solving_curve(history), threshold)
        if solve_update is not None:
            break
    t2 = time.perf_counter()
    steps_played = int(runner.train_state.env_steps)

    greedy = np.asarray(
        a3c_jax.evaluate(
            config, runner.train_state.params, jax.random.PRNGKey(10_000 + seed), eval_episodes
        )
    )
    t3 = time.perf_counter()
    solved = solve_update is not None
    return {
        "env": env_name,
        "seed": seed,
        "threshold": threshold,
        "cache_entries_before": entries_before,
        "cache": "warm" if entries_before else "cold",
        "import_s": import_s,
        "compile_s": t1 - t0,
        "train_s": t2 - t1,
        "time_to_solve_s": t2 - t0 if solved else None,
        "solved": solved,
        "solve_update": solve_update,
        "solve_env_steps": int(history.env_steps[solve_update]) if solved else None,
        "env_steps_played": steps_played,
        "steps_per_s": steps_played / (t2 - t1),
        "chunk_updates": chunk,
        "budget": config.total_timesteps,
        "num_envs": config.num_envs,
        "n_steps": config.n_steps,
        "greedy_mean": float(greedy.mean()),
        "greedy_min": float(greedy.min()),
        "greedy_episodes": eval_episodes,
        "greedy_confirms": bool(greedy.mean() >= threshold),
        "eval_s": t3 - t2,
        "device": jax.devices()[0].device_kind,
    }


def vmap_child(
    env_name: str,
    num_seeds: int,
    cache_dir: str,
    eval_episodes: int,
    total_timesteps: int | None,
    threshold: float,
) -> dict[str, Any]:
    """`num_seeds` seeds trained at once over the whole budget (in this fresh process)."""
    import jax
    import numpy as np

    import a3c_jax
    from a3c_jax.viz.curves import first_reaching

    jax.devices()
    a3c_jax.enable_compilation_cache(cache_dir)
    config = _config(env_name, total_timesteps)
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    t0 = time.perf_counter()
    compiled = a3c_jax.jit_train(config, num_seeds=num_seeds).lower(keys).compile()
    t1 = time.perf_counter()
    result = jax.block_until_ready(compiled(keys))
    t2 = time.perf_counter()
    compile_s, run_s = t1 - t0, t2 - t1
    steps = np.asarray(result.metrics.env_steps)  # [N, U]
    curves = solving_curve(result.metrics)
    reach_steps, reach_s = [], []
    for seed in range(num_seeds):
        i = first_reaching(curves[seed], threshold)
        if i is not None:
            reach_steps.append(int(steps[seed, i]))
            reach_s.append(compile_s + run_s * steps[seed, i] / steps[seed, -1])
    evaluate = jax.jit(jax.vmap(lambda p, k: a3c_jax.evaluate(config, p, k, eval_episodes).mean()))
    greedy = np.asarray(evaluate(result.params, jax.random.split(jax.random.PRNGKey(1), num_seeds)))
    total_steps = int(np.asarray(result.runner_state.train_state.env_steps).sum())
    return {
        "env": env_name,
        "num_seeds": num_seeds,
        "threshold": threshold,
        "compile_s": compile_s,
        "run_s": run_s,
        "total_s": compile_s + run_s,
        "env_steps_all_seeds": total_steps,
        "steps_per_s": total_steps / run_s,
        "seeds_reaching": len(reach_steps),
        "steps_to_threshold": common.summary(reach_steps),
        "seconds_to_threshold": common.summary(reach_s),
        "greedy_per_seed": greedy.tolist(),
        "seeds_greedy_at_threshold": int(np.sum(greedy >= threshold)),
        "budget": config.total_timesteps,
        "num_envs": config.num_envs,
    }


def _child_args(mode: str, env_name: str, n: int, cache_dir: str, args) -> list[str]:
    out = [__file__, mode, env_name, str(n), cache_dir, "--eval-episodes", str(args.eval_episodes)]
    if args.total_timesteps:
        out += ["--total-timesteps", str(args.total_timesteps)]
    return out


def measure_solves(env_name: str, seeds: int, args) -> list[dict[str, Any]]:
    rows = []
    for seed in range(seeds):
        cache_dir = tempfile.mkdtemp(prefix="a3c_jax_bench_cache_")
        try:
            for cache in ("cold", "warm"):
                child = _child_args("--child-solve", env_name, seed, cache_dir, args)
                row = common.run_child(child)
                row.setdefault("env", env_name)
                row.setdefault("seed", seed)
                row["requested_cache"] = cache
                row["load_average_1min"] = common.load_average()
                rows.append(row)
                _progress(row)
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return rows


def measure_vmap(env_name: str, counts: list[int], args) -> list[dict[str, Any]]:
    rows = []
    for n in counts:
        cache_dir = tempfile.mkdtemp(prefix="a3c_jax_bench_cache_")
        try:
            row = common.run_child(_child_args("--child-vmap", env_name, n, cache_dir, args))
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        row.setdefault("env", env_name)
        row.setdefault("num_seeds", n)
        row["load_average_1min"] = common.load_average()
        rows.append(row)
        if "error" in row:
            print(row["error"], file=sys.stderr, flush=True)
        else:
            print(
                f"  vmap {env_name} N={n}: compile {row['compile_s']:.2f} s, run "
                f"{row['run_s']:.2f} s, {row['seeds_reaching']}/{n} reach",
                flush=True,
            )
    return rows


def _progress(row: dict[str, Any]) -> None:
    if "error" in row:
        print(row["error"], file=sys.stderr, flush=True)
        return
    at = f"{row['solve_env_steps']:,} steps" if row["solved"] else "not reached"
    print(
        f"  {row['env']} seed {row['seed']} {row['cache']}: compile {row['compile_s']:.2f} s, "
        f"{at}, time to solve {common.fmt(row['time_to_solve_s'])} s, "
        f"greedy {row['greedy_mean']:.1f}",
        flush=True,
    )


def solve_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for env_name in dict.fromkeys(r["env"] for r in rows):
        for cache in ("cold", "warm"):
            group = [
                r
                for r in rows
                if r["env"] == env_name and r.get("requested_cache") == cache and "error" not in r
            ]
            if not group:
                continue
            solved = [r for r in group if r["solved"]]
            out.append(
                [
                    env_name,
                    f"{group[0]['threshold']:g}",
                    cache,
                    f"{len(solved)}/{len(group)}",
                    common.fmt_spread(common.summary(r["solve_env_steps"] for r in solved), ",.0f"),
                    common.fmt_spread(common.summary(r["compile_s"] for r in group)),
                    common.fmt_spread(common.summary(r["train_s"] for r in solved)),
                    common.fmt_spread(common.summary(r["time_to_solve_s"] for r in solved)),
                    f"{sum(r['greedy_confirms'] for r in solved)}/{len(solved)}",
                ]
            )
    header = [
        "env",
        "threshold",
        "cache",
        "solved",
        "env steps to solve",
        "compile s",
        "training s to solve",
        "time to solve s (compile incl.)",
        "greedy ≥ threshold",
    ]
    return common.markdown_table(header, out)


def vmap_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for env_name in dict.fromkeys(r["env"] for r in rows):
        group = [r for r in rows if r["env"] == env_name and "error" not in r]
        base = next((r for r in group if r["num_seeds"] == 1), None)
        for r in group:
            ratio = r["total_s"] / base["total_s"] if base else None
            run_ratio = r["run_s"] / base["run_s"] if base else None
            out.append(
                [
                    env_name,
                    r["num_seeds"],
                    f"{r['compile_s']:.2f}",
                    f"{r['run_s']:.2f}",
                    f"{r['total_s']:.2f}",
                    common.fmt(ratio, ".2f") + "x",
                    common.fmt(run_ratio, ".2f") + "x",
                    f"{r['total_s'] / r['num_seeds']:.3f}",
                    f"{r['steps_per_s']:,.0f}",
                    f"{r['seeds_reaching']}/{r['num_seeds']}",
                    common.fmt_spread(r["seconds_to_threshold"]),
                    f"{r['seeds_greedy_at_threshold']}/{r['num_seeds']}",
                ]
            )
    header = [
        "env",
        "seeds N",
        "compile s",
        "run s",
        "total s",
        "total / N=1",
        "run / N=1",
        "s per seed",
        "steps/s (all seeds)",
        "reach threshold",
        "s to threshold (prorated)",
        "final greedy ≥ threshold",
    ]
    return common.markdown_table(header, out)


def plot(solves: list[dict[str, Any]], vmaps: list[dict[str, Any]], path: str) -> bool:
    plt = common.matplotlib_pyplot()
    if plt is None:
        return False
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5))
    env_names = list(dict.fromkeys(r["env"] for r in solves))
    width = 0.38
    colours = {"cold": ("#9ecae1", "#2171b5"), "warm": ("#a1d99b", "#238b45")}
    for j, cache in enumerate(("cold", "warm")):
        compile_med, train_med, low, high = [], [], [], []
        for env_name in env_names:
            group = [
                r
                for r in solves
                if r["env"] == env_name and r.get("requested_cache") == cache and r.get("solved")
            ]
            total = common.summary(r["time_to_solve_s"] for r in group)
            c = common.summary(r["compile_s"] for r in group)["median"] or 0.0
            t = (total["median"] or 0.0) - c
            compile_med.append(c)
            train_med.append(max(t, 0.0))
            low.append((total["median"] or 0.0) - (total["min"] or 0.0))
            high.append((total["max"] or 0.0) - (total["median"] or 0.0))
        x = [i + (j - 0.5) * width for i in range(len(env_names))]
        light, dark = colours[cache]
        ax.bar(x, compile_med, width, color=light, label=f"{cache}: trace + compile")
        ax.bar(
            x,
            train_med,
            width,
            bottom=compile_med,
            color=dark,
            yerr=[low, high],
            capsize=3,
            label=f"{cache}: training to the threshold",
        )
    ax.set_xticks(range(len(env_names)), env_names)
    ax.set_ylabel("seconds from the call to train (median, min-max)")
    ax.set_title("a2c: time to the threshold, one seed per process")
    ax.legend(fontsize=8)
    for env_name in dict.fromkeys(r["env"] for r in vmaps):
        group = sorted(
            (r for r in vmaps if r["env"] == env_name and "error" not in r),
            key=lambda r: r["num_seeds"],
        )
        if not group:
            continue
        n = [r["num_seeds"] for r in group]
        bx.plot(n, [r["total_s"] for r in group], "o-", label=f"{env_name}: wall-clock (all seeds)")
        bx.plot(n, [r["total_s"] / r["num_seeds"] for r in group], "s--", label="per seed")
        base = group[0]["total_s"] if group[0]["num_seeds"] == 1 else None
        if base:
            bx.axhline(VMAP_TARGET_RATIO * base, color="grey", ls=":", label="target: 4x one seed")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    bx.set_xscale("log", base=2)
    bx.set_yscale("log")
    counts = sorted({r["num_seeds"] for r in vmaps if "error" not in r})
    bx.set_xticks(counts, [str(n) for n in counts])
    bx.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    bx.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    bx.yaxis.set_minor_formatter(NullFormatter())
    bx.set_xlabel("seeds trained at once (vmap)")
    bx.set_ylabel("seconds (compile included)")
    bx.set_title("whole budget, N seeds in one compiled loop")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds (2 on MinAtar)")
    parser.add_argument("--envs", nargs="*", default=list(ENVIRONMENTS), choices=ENVIRONMENTS)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per environment")
    parser.add_argument("--vmap-seeds", type=int, nargs="*", default=list(VMAP_SEEDS))
    parser.add_argument("--vmap-envs", nargs="*", default=["CartPole-v1"], choices=ENVIRONMENTS)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument(
        "--total-timesteps", type=int, default=None, help="override every budget (smoke tests)"
    )
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=None)
    parser.add_argument("child", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--child-solve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-vmap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_solve or args.child_vmap:
        env_name, n, cache_dir = args.child[0], int(args.child[1]), args.child[2]
        child = solve_child if args.child_solve else vmap_child
        common.emit(
            child(
                env_name,
                n,
                cache_dir,
                args.eval_episodes,
                args.total_timesteps,
                ENVIRONMENTS[env_name],
            )
        )
        return

    started = time.perf_counter()
    machine = common.machine_info(with_jax=False)
    solves: list[dict[str, Any]] = []
    for env_name in args.envs:
        seeds = args.seeds or (5 if not args.quick else (2 if "MinAtar" in env_name else 3))
        print(f"{env_name}: {seeds} seeds, cold then warm", flush=True)
        solves += measure_solves(env_name, seeds, args)
    vmaps: list[dict[str, Any]] = []
    for env_name in args.vmap_envs:
        vmaps += measure_vmap(env_name, args.vmap_seeds, args)

    loads = [machine["load_average_1min"]] + [r["load_average_1min"] for r in solves + vmaps]
    device = next((r["device"] for r in solves if "device" in r), "unknown device")
    note = common.contention_note(loads)
    tables = [
        f"Time to the threshold, a2c, one seed per fresh process ({device}, "
        f"{machine['cores']} cores, {machine['cpu']}; {note})",
        "",
        solve_table(solves),
        "",
        f"N seeds at once (vmap), whole budget, cold process each ({device})",
        "",
        vmap_table(vmaps),
    ]
    text = "\n".join(tables)
    print("\n" + text)
    common.save_results(
        "time_to_solve",
        args,
        {
            "machine": machine,
            "contention": note,
            "settings": {
                "window_episodes": WINDOW_EPISODES,
                "chunks": CHUNKS,
                "eval_episodes": args.eval_episodes,
                "total_timesteps_override": args.total_timesteps,
                "quick": args.quick,
            },
            "solve": solves,
            "vmap": vmaps,
            "tables": text,
            "wall_s": time.perf_counter() - started,
        },
        lambda path: plot(solves, vmaps, path),
    )


if __name__ == "__main__":
    main()
