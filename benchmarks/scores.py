"""The scoreboard: every preset trained over several seeds, against published results.

    python benchmarks/scores.py                          # every row (long on 2 cores)
    python benchmarks/scores.py --only Pendulum-v1 MountainCar-v0
    python benchmarks/scores.py --only CartPole-v1 --algo ac_replay --seeds 8

Each row trains the library's own preset (`Config(env_name=..., algo=...)`, nothing else set)
for its seeds at once through `a3c_jax.jit_train(config, num_seeds)` (the entry point every
figure here comes from: `jit_train`, a plain `jax.jit(make_train(...))` and the CLI compile
with different XLA options, and float results then part ways), seeds
`jax.random.split(PRNGKey(0), seeds)`. It then evaluates each seed greedily over `--episodes`
episodes and prints one markdown table: environment, algorithm, budget, greedy mean ± standard
deviation over seeds, the worst seed, a uniformly random policy's return, wall-clock seconds
(compile included) and the published reference with its source and budget. It writes the rows
to `benchmarks/results/scores.json` and the training curves (mean return of the episodes
finished in each update, per seed) to `benchmarks/results/scores.png`, one panel per
environment and algorithm.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NamedTuple

import common
from check_presets import random_return, train_and_evaluate

CURVE_POINTS = 500  # points per learning curve kept in the results (every k-th update)


class Row(NamedTuple):
    env: str
    algo: str
    seeds: int  # at least 4 (MinAtar: 2)
    reference: str  # the published figure, its source and budget


SCOREBOARD: tuple[Row, ...] = (
    Row("CartPole-v1", "a2c", 8, "500 (RL Zoo A2C, 1M steps)"),
    Row("Acrobot-v1", "a2c", 8, "-83 (RL Zoo A2C, 1M steps)"),
    Row("Pendulum-v1", "a2c", 8, "-163 (RL Zoo A2C with gSDE, 1M steps); gymnax PPO -130"),
    Row("MountainCar-v0", "a2c", 8, "-111 (RL Zoo A2C, 1M steps); gymnax PPO -118"),
    Row(
        "MountainCarContinuous-v0",
        "a2c",
        8,
        "91 (RL Zoo A2C with gSDE, 100k steps); gymnax PPO 92",
    ),
    Row("Catch-bsuite", "a2c", 4, "1.0 (the maximum)"),
    Row("Breakout-MinAtar", "a2c", 2, "~13 at 2M, 17.5 at 5M frames (MinAtar paper, AC(λ))"),
    Row("CartPole-v1", "online_ac", 4, "500 (the maximum)"),
    Row("CartPole-v1", "ac_replay", 4, "500 (the maximum)"),
    Row("CartPole-v1", "da2c", 4, "500 (the maximum)"),
    Row("CartPole-v1", "nstep_da2c", 4, "500 (the maximum)"),
    Row("Acrobot-v1", "da2c", 4, "-83 (RL Zoo A2C, 1M steps)"),
    Row("Acrobot-v1", "nstep_da2c", 4, "-83 (RL Zoo A2C, 1M steps)"),
)


def score(row: Row, seeds: int | None, episodes: int) -> dict[str, Any]:
    """Trains `row`'s preset over its seeds and evaluates each greedily."""
    import jax
    import numpy as np

    import a3c_jax

    num_seeds = seeds or row.seeds
    config = a3c_jax.Config(env_name=row.env, algo=row.algo)
    per_seed, seconds, result = train_and_evaluate(config, num_seeds, episodes)
    metrics = jax.device_get(result.metrics)
    every = max(1, np.shape(metrics.env_steps)[-1] // CURVE_POINTS)  # curves: <= 2x the points
    return {
        "env": row.env,
        "algo": row.algo,
        "seeds": num_seeds,
        "env_steps": config.total_timesteps,
        "mean": float(np.mean(per_seed)),
        "std": float(np.std(per_seed)),
        "worst_seed": min(per_seed),
        "per_seed": per_seed,
        "random": random_return(row.env, episodes),
        "seconds": seconds,
        "reference": row.reference,
        "curve_steps": np.asarray(metrics.env_steps)[:, ::every].tolist(),  # [seeds, points]
        "curve_return": np.round(np.asarray(metrics.episode_return)[:, ::every], 2).tolist(),
    }


def draw(rows: list[dict[str, Any]], path: str) -> bool:
    plt = common.matplotlib_pyplot()
    if plt is None or not rows:
        return False
    import numpy as np

    cols = min(4, len(rows))
    nrows = -(-len(rows) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, row in zip(axes.flat, rows, strict=False):
        steps, returns = np.asarray(row["curve_steps"]), np.asarray(row["curve_return"])
        for s, r in zip(steps, returns, strict=True):
            ax.plot(s, r, lw=0.8, alpha=0.7)
        ax.axhline(row["random"], color="grey", ls=":", lw=1, label="random")
        ax.set_title(f"{row['env']} {row['algo']}", fontsize=9)
        ax.set_xlabel("environment steps", fontsize=8)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("training episode return")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def table(rows: list[dict[str, Any]]) -> str:
    return common.markdown_table(
        [
            "environment",
            "algo",
            "budget",
            "seeds",
            "greedy mean ± std",
            "worst seed",
            "random",
            "wall-clock s",
            "published reference",
        ],
        [
            (
                r["env"],
                r["algo"],
                f"{r['env_steps']:,}",
                r["seeds"],
                f"{r['mean']:.1f} ± {r['std']:.1f}",
                f"{r['worst_seed']:.1f}",
                f"{r['random']:.1f}",
                f"{r['seconds']:.0f}",
                r["reference"],
            )
            for r in rows
        ],
        align="llrrrrrrl",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="environment names")
    parser.add_argument("--algo", nargs="*", default=None, help="algorithm names")
    parser.add_argument("--seeds", type=int, default=None, help="default: the row's own")
    parser.add_argument("--episodes", type=int, default=20, help="greedy episodes per seed")
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=None)
    parser.add_argument("--quick", action="store_true", help="write *_quick result files")
    args = parser.parse_args()
    selected = [
        row
        for row in SCOREBOARD
        if (not args.only or row.env in args.only) and (not args.algo or row.algo in args.algo)
    ]
    if not selected:
        print("no scoreboard row matches --only/--algo", file=sys.stderr)
        return 2
    machine = common.machine_info()
    rows, loads = [], []
    for row in selected:
        rows.append(score(row, args.seeds, args.episodes))
        loads.append(common.load_average())
        r = rows[-1]
        print(
            f"{r['env']} {r['algo']}: {r['mean']:.1f} ± {r['std']:.1f} "
            f"(worst {r['worst_seed']:.1f}) in {r['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"Scoreboard: greedy return over {args.episodes} episodes per seed "
        f"({machine['cpu']}, {machine['cores']} cores; {common.contention_note(loads)})\n"
    )
    print(table(rows))
    common.save_results(
        "scores", args, {"machine": machine, "rows": rows}, lambda path: draw(rows, path)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
