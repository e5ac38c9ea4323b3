"""The first deck's progression, measured: every algorithm on the same environment-step budget.

    python benchmarks/progression.py            # 8 seeds, CartPole-v1 and Acrobot-v1 (~10 min)
    python benchmarks/progression.py --quick    # 4 seeds, smaller budgets

For each environment and algorithm (`online_ac`, `ac_replay`, `da2c`, `nstep_da2c`, `a2c`, each
with its defaults) it trains all seeds at once (`vmap` over seeds, one jit) and prints a markdown
table: final greedy return over seeds (mean ± std over seeds of each seed's mean over
`--episodes` greedy episodes), environment steps and wall-clock to reach the threshold (the mean
return of the latest 20 finished training episodes, median over the seeds that reach it;
"not reached" if fewer than half do), and training environment steps per second (all seeds
together; compile apart). It writes the raw figures to `--json` and the learning curves (return
against environment steps, mean ± std over seeds, one line per algorithm) to `--png`.
Wall-clock to the threshold is the compile time plus the run time prorated by environment steps
(the whole run is one compiled loop; its time grows linearly with the steps played).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
import shrink_results

import a3c_jax
from a3c_jax.viz.curves import first_reaching, smoothed_return

ALGORITHMS = ("online_ac", "ac_replay", "da2c", "nstep_da2c", "a2c")
# (environment, threshold, budget, quick budget)
ENVIRONMENTS = (
    ("CartPole-v1", 475.0, 200_000, 100_000),
    ("Acrobot-v1", -100.0, 300_000, 150_000),
)


def run_one(env_name: str, algo: str, budget: int, seeds: int, episodes: int, threshold: float):
    config = a3c_jax.Config(env_name=env_name, algo=algo, total_timesteps=budget)
    train = a3c_jax.jit_train(config, num_seeds=seeds)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    t1 = time.perf_counter()
    result = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - t1
    compile_s = t1 - t0
    steps = np.asarray(result.metrics.env_steps)  # [seeds, U]
    curves = smoothed_return(result.metrics)  # [seeds, U]
    total_steps = int(np.asarray(result.runner_state.train_state.env_steps).sum())
    reach_steps, reach_s = [], []
    for seed in range(seeds):
        i = first_reaching(curves[seed], threshold)
        if i is not None:
            reach_steps.append(int(steps[seed, i]))
            # Under vmap all seeds advance together: prorate by this seed's share of its run.
            reach_s.append(compile_s + run_s * steps[seed, i] / steps[seed, -1])
    greedy = [
        float(
            a3c_jax.evaluate(
                config,
                jax.tree.map(lambda x, s=seed: x[s], result.params),
                jax.random.PRNGKey(1000 + seed),
                num_episodes=episodes,
            ).mean()
        )
        for seed in range(seeds)
    ]
    reached = len(reach_steps) * 2 >= seeds
    return {
        "env": env_name,
        "algo": algo,
        "budget": budget,
        "seeds": seeds,
        "num_envs": config.num_envs,
        "greedy_per_seed": greedy,
        "greedy_mean": float(np.mean(greedy)),
        "greedy_std": float(np.std(greedy)),
        "seeds_reaching": len(reach_steps),
        "steps_to_threshold": float(np.median(reach_steps)) if reached else None,
        "seconds_to_threshold": float(np.median(reach_s)) if reached else None,
        "compile_s": compile_s,
        "run_s": run_s,
        "steps_per_s": total_steps / run_s,
        # Curves for the plot: env steps and smoothed return per seed.
        "curve_steps": steps.tolist(),
        "curve_return": np.nan_to_num(curves, nan=float("nan")).tolist(),
    }


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_names = list(dict.fromkeys(r["env"] for r in rows))
    fig, axes = plt.subplots(1, len(env_names), figsize=(6 * len(env_names), 4.2))
    axes = np.atleast_1d(axes)
    for ax, env_name in zip(axes, env_names, strict=True):
        for row in (r for r in rows if r["env"] == env_name):
            grid = np.linspace(0, row["budget"], 200)
            per_seed = [
                np.interp(grid, s, np.nan_to_num(c, nan=np.nanmin(c)), left=np.nan)
                for s, c in zip(row["curve_steps"], row["curve_return"], strict=True)
            ]
            mean, std = np.nanmean(per_seed, axis=0), np.nanstd(per_seed, axis=0)
            ax.plot(grid, mean, label=row["algo"])
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
        ax.set_title(f"{env_name} ({rows[0]['seeds']} seeds, mean ± std)")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("training return (last 20 episodes)")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(rows: list[dict]) -> str:
    lines = [
        "| env | algo | greedy return | seeds reaching | steps to threshold | s to threshold "
        "| steps/s | compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = f"{r['steps_to_threshold']:,.0f}" if r["steps_to_threshold"] else "not reached"
        secs = f"{r['seconds_to_threshold']:.1f}" if r["seconds_to_threshold"] else "not reached"
        lines.append(
            f"| {r['env']} | {r['algo']} | {r['greedy_mean']:.1f} ± {r['greedy_std']:.1f} "
            f"| {r['seeds_reaching']}/{r['seeds']} | {steps} | {secs} "
            f"| {r['steps_per_s']:,.0f} | {r['compile_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 seeds, half budgets")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=20, help="greedy episodes per seed")
    parser.add_argument("--envs", nargs="*", default=[e[0] for e in ENVIRONMENTS])
    parser.add_argument("--algos", nargs="*", default=list(ALGORITHMS))
    parser.add_argument("--json", default="benchmarks/results/progression.json")
    parser.add_argument("--png", default="benchmarks/results/progression.png")
    args = parser.parse_args()
    seeds = args.seeds or (4 if args.quick else 8)
    rows = []
    for env_name, threshold, budget, quick_budget in ENVIRONMENTS:
        if env_name not in args.envs:
            continue
        for algo in args.algos:
            row = run_one(
                env_name,
                algo,
                quick_budget if args.quick else budget,
                seeds,
                args.episodes,
                threshold,
            )
            row["threshold"] = threshold
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    print()
    print(f"{jax.devices()[0].device_kind}, {jax.device_count()} device(s)")
    print(table(rows))
    plot(rows, args.png)  # from the full curves; the file keeps them down-sampled
    with open(args.json, "w") as f:
        json.dump(shrink_results.shrink(rows), f)
    print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
