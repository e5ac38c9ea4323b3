"""Training throughput against `num_envs`, and wall-clock time for `a2c` to solve CartPole-v1.

    python benchmarks/throughput.py            # full table (a few minutes on 2 CPU cores)
    python benchmarks/throughput.py --quick    # smaller budgets, fewer repeats

Prints two markdown tables and writes their raw figures to `--json`:
1. training environment-steps per second (compile apart) for `num_envs` in 1, 8, 64, 512, 4096 on
   CartPole-v1 with the `a2c` defaults otherwise: lower (trace) and compile seconds, median run
   seconds over repeats, steps per second;
2. time to solve CartPole-v1 with the default `Config()`: each repeat is a fresh process with an
   empty compilation cache (cold), so the figure includes tracing and XLA's compile. "Solved" is
   the first update whose finished training episodes average at least 475; the table also gives
   the final greedy evaluation over 100 episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SOLVE_THRESHOLD = 475.0


def measure_throughput(num_envs: int, min_steps: int, repeats: int) -> dict:
    import jax

    import a3c_jax

    base = a3c_jax.Config()
    # Enough updates for a stable timing, at most 2000 (small batches run slowly).
    updates = min(2000, max(20, min_steps // (num_envs * base.n_steps)))
    config = base.replace(num_envs=num_envs, total_timesteps=updates * num_envs * base.n_steps)
    train = a3c_jax.jit_train(config)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    lowered = train.lower(key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    runs = []
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.PRNGKey(i)))
        runs.append(time.perf_counter() - start)
    run_s = statistics.median(runs)
    steps = config.num_updates * config.batch_size
    return {
        "num_envs": num_envs,
        "n_steps": config.n_steps,
        "env_steps": steps,
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "run_s": run_s,
        "runs_s": runs,
        "steps_per_s": steps / run_s,
    }


def solve_once() -> dict:
    """One cold run of the default config, timed from the call to train (tracing included)."""
    import jax
    import numpy as np

    import a3c_jax

    config = a3c_jax.Config()
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    train = a3c_jax.jit_train(config)
    compiled = train.lower(key).compile()
    t1 = time.perf_counter()
    result = jax.block_until_ready(compiled(key))
    t2 = time.perf_counter()
    returns = np.asarray(result.metrics.episode_return)
    steps = np.asarray(result.metrics.env_steps)
    solved = np.nonzero(returns >= SOLVE_THRESHOLD)[0]
    first = int(solved[0]) if solved.size else None
    run_s = t2 - t1
    greedy = a3c_jax.evaluate(config, result.params, jax.random.PRNGKey(1), num_episodes=100)
    return {
        "compile_s": t1 - t0,
        "run_s": run_s,
        "total_s": t2 - t0,
        "solve_update": first,
        "solve_env_steps": int(steps[first]) if first is not None else None,
        # Run time is linear in updates: the solving update is reached this far into the run.
        "time_to_solve_s": (t1 - t0) + run_s * (first + 1) / len(steps)
        if first is not None
        else None,
        "greedy_mean": float(greedy.mean()),
        "greedy_min": float(greedy.min()),
        "total_timesteps": config.total_timesteps,
    }


def measure_solve(repeats: int) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    results = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--solve-once"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller budgets, fewer repeats")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 8, 64, 512, 4096])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", default="benchmarks/results/throughput.json")
    parser.add_argument("--solve-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.solve_once:
        print(json.dumps(solve_once()))
        return
    import jax

    repeats = args.repeats or (3 if args.quick else 5)
    min_steps = 200_000 if args.quick else 2_000_000
    rows = [measure_throughput(n, min_steps, repeats) for n in args.num_envs]
    print(
        f"\nTraining throughput, a2c on CartPole-v1 ({jax.devices()[0].device_kind}, "
        f"{os.cpu_count()} cores; median of {repeats} runs)\n"
    )
    print("| num_envs | n_steps | env steps | lower s | compile s | run s | steps/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['num_envs']} | {r['n_steps']} | {r['env_steps']:,} | {r['lower_s']:.2f} | "
            f"{r['compile_s']:.2f} | {r['run_s']:.3f} | {r['steps_per_s']:,.0f} |"
        )

    solves = measure_solve(repeats)
    print(
        f"\nTime to solve CartPole-v1 with the default Config() (cold process each, "
        f"{repeats} runs)\n"
    )
    print(
        "| run | compile s | run s | solved at env step | time to solve s | total s | "
        "greedy mean (min) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for i, s in enumerate(solves):
        at = s["solve_env_steps"]
        solved_at = f"{at:,}" if at is not None else "not reached"
        tts = f"{s['time_to_solve_s']:.2f}" if s["time_to_solve_s"] is not None else "-"
        print(
            f"| {i} | {s['compile_s']:.2f} | {s['run_s']:.2f} | {solved_at} | {tts} | "
            f"{s['total_s']:.2f} | {s['greedy_mean']:.1f} ({s['greedy_min']:.0f}) |"
        )
    times = [s["time_to_solve_s"] for s in solves if s["time_to_solve_s"] is not None]
    if times:
        print(
            f"\nmedian time to solve: {statistics.median(times):.2f} s "
            f"({len(times)}/{len(solves)} runs solved); median total run "
            f"{statistics.median(s['total_s'] for s in solves):.2f} s"
        )
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"throughput": rows, "solve": solves}, f, indent=1)


if __name__ == "__main__":
    main()
