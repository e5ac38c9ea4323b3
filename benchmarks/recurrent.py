"""Recurrent (LSTM) against feed-forward `a2c`: training speed, and learning on tasks that need
memory.

    python benchmarks/recurrent.py            # speed at 64, 512, 2048 envs; curves, 3 seeds
    python benchmarks/recurrent.py --quick    # fewer repeats and seeds, shorter runs
    python benchmarks/recurrent.py --part speed|curves
    python benchmarks/recurrent.py --part speed --cores lstm:32,gru:32,lstm:64

- **speed**: `make_train` of `a2c` on CartPole-v1 (8 steps per rollout, separate 64x64 tanh
  actor and critic; recurrent: a core after each torso, `--cores` (default LSTM 64 and 128;
  the memory tasks below use 32 units)), at 64, 512 and 2048 environments: lower+compile
  seconds apart, median seconds of the run over repeats, and environment steps per second
  (the whole jitted run: rollout with the cores, the loss's re-run with the critic's bootstrap
  values, and its gradient); the ratio recurrent / feed-forward.
- **curves**: training curves (mean return of the episodes finished in each update, against
  environment steps), vmapped over seeds, and the final greedy return (`evaluate`, 20 episodes
  per seed), recurrent (LSTM) and feed-forward, on CartPole-v1 with the velocities masked
  (`mask_velocity`: cart position and pole angle only) and MemoryChain-bsuite (gymnax's
  default memory length 5: the context bit is observed at the first steps only and must be
  recalled at the 6th, the only rewarded step: +1 right, -1 wrong).

Prints markdown tables, writes `benchmarks/results/recurrent[_quick].json` and `.png`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import common

# The memory tasks' settings (the learning tests in tests/test_recurrent.py use the same).
TASKS: dict[str, dict[str, Any]] = {
    "CartPole-v1 (velocities masked)": dict(
        env_name="CartPole-v1",
        mask_velocity=True,
        recurrent_size=32,
        num_envs=8,
        n_steps=32,
        total_timesteps=500_000,
        # Gradient norm 1 (the default's 0.5 left 2 of seeds 0-5 below 260 on an Intel Xeon).
        max_grad_norm=1.0,
    ),
    "MemoryChain-bsuite (memory 5)": dict(
        env_name="MemoryChain-bsuite", recurrent_size=32, total_timesteps=30_000
    ),
}


def parse_cores(text: str) -> list[tuple[str, int]]:
    """`"lstm:64,gru:32"` -> `[("lstm", 64), ("gru", 32)]`."""
    cores = []
    for item in text.split(","):
        cell, _, size = item.strip().partition(":")
        if cell not in ("lstm", "gru") or not size.isdigit():
            raise SystemExit(f"--cores: {item!r} is not CELL:SIZE with CELL lstm or gru")
        cores.append((cell, int(size)))
    return cores


def speed(num_envs: int, core: tuple[str, int] | None, repeats: int, steps: int) -> dict[str, Any]:
    import jax

    import a3c_jax

    updates = max(4, steps // (num_envs * 8))
    config = a3c_jax.Config(
        algo="a2c",
        num_envs=num_envs,
        total_timesteps=num_envs * 8 * updates,
        recurrent=None if core is None else core[0],
        recurrent_size=None if core is None else core[1],
    )
    key = jax.random.PRNGKey(0)
    start = time.perf_counter()
    train = jax.jit(a3c_jax.make_train(config)).lower(key).compile()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(train(key).params)
        times.append(time.perf_counter() - start)
    run_s = statistics.median(times)
    return {
        "num_envs": num_envs,
        "recurrent": None if core is None else core[0],
        "recurrent_size": None if core is None else core[1],
        "compile_s": compile_s,
        "run_s": run_s,
        "steps": config.num_updates * config.batch_size,
        "steps_per_s": config.num_updates * config.batch_size / run_s,
        "load": common.load_average(),
    }


def curves(task: str, recurrent: str | None, seeds: int, scale: float) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import a3c_jax

    fields = dict(TASKS[task])
    fields["total_timesteps"] = int(fields["total_timesteps"] * scale)
    if recurrent is None:
        fields.pop("recurrent_size")
    config = a3c_jax.Config(algo="a2c", recurrent=recurrent, **fields)
    start = time.perf_counter()
    keys = jnp.stack([jax.random.PRNGKey(seed) for seed in range(seeds)])  # the tests' seeds
    result = a3c_jax.jit_train(config, seeds)(keys)
    jax.block_until_ready(result.params)
    seconds = time.perf_counter() - start
    greedy = [
        float(
            jnp.mean(
                a3c_jax.evaluate(
                    config,
                    jax.tree.map(lambda x, i=i: x[i], result.params),
                    jax.random.PRNGKey(100 + i),
                    num_episodes=20,
                )
            )
        )
        for i in range(seeds)
    ]
    returns = np.asarray(result.metrics.episode_return)  # [seeds, updates]
    steps = np.asarray(result.metrics.env_steps)[0]
    every = max(1, len(steps) // 100)
    return {
        "task": task,
        "recurrent": recurrent,
        "config": {k: v for k, v in config.to_dict().items() if k in (*fields, "algo")},
        "seconds_with_compile": seconds,
        "greedy_return_per_seed": greedy,
        "env_steps": steps[::every].tolist(),
        "episode_return_per_seed": returns[:, ::every].tolist(),
    }


def draw(data: dict[str, Any]) -> Callable[[str], bool]:
    def drawn(path: str) -> bool:
        plt = common.matplotlib_pyplot()
        if plt is None:
            return False
        import numpy as np

        machine = data["machine"]
        fig, axes = plt.subplots(1, len(TASKS), figsize=(6 * len(TASKS), 4))
        for ax, task in zip(np.atleast_1d(axes), TASKS, strict=True):
            for run in data["curves"]:
                if run["task"] != task:
                    continue
                label = run["recurrent"] or "feed-forward"
                ys = np.asarray(run["episode_return_per_seed"])
                line = ax.plot(run["env_steps"], ys.mean(0), label=label)[0]
                ax.fill_between(
                    run["env_steps"], ys.min(0), ys.max(0), alpha=0.2, color=line.get_color()
                )
            ax.set_title(task)
            ax.set_xlabel("environment steps")
            ax.set_ylabel("training episode return (mean, min-max over seeds)")
            ax.legend()
        fig.suptitle(f"a2c, recurrent vs feed-forward ({machine['cpu']}, {machine['cores']} cores)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return True

    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=("speed", "curves", "all"), default="all")
    parser.add_argument(
        "--cores", default="lstm:64,lstm:128", help="recurrent cores to time, CELL:SIZE,..."
    )
    parser.add_argument("--json")
    parser.add_argument("--png")
    args = parser.parse_args()
    data: dict[str, Any] = {"machine": common.machine_info(), "speed": [], "curves": []}
    loads = [common.load_average()]
    if args.part in ("speed", "all"):
        repeats, steps = (1, 50_000) if args.quick else (2, 200_000)
        cores = [None, *parse_cores(args.cores)]
        for num_envs in (64, 512, 2048):
            for core in cores:
                data["speed"].append(speed(num_envs, core, repeats, steps))
                loads.append(data["speed"][-1]["load"])
        rows = []
        for i in range(0, len(data["speed"]), len(cores)):
            ff, *recurrent = data["speed"][i : i + len(cores)]
            rows.append(
                [ff["num_envs"], f"{ff['steps_per_s']:,.0f}"]
                + [
                    f"{r['steps_per_s']:,.0f} ({r['steps_per_s'] / ff['steps_per_s']:.2f})"
                    for r in recurrent
                ]
                + [" / ".join(f"{r['compile_s']:.1f}" for r in (ff, *recurrent))]
            )
        names = [f"{cell.upper()}-{size}" for cell, size in cores[1:]]
        header = [
            "num_envs",
            "feed-forward steps/s",
            *(f"{name} steps/s (ratio)" for name in names),
            f"compile s (ff / {' / '.join(names)})",
        ]
        print(common.markdown_table(header, rows))
    if args.part in ("curves", "all"):
        seeds, scale = (2, 0.5) if args.quick else (3, 1.0)
        for task in TASKS:
            for recurrent in ("lstm", None):
                data["curves"].append(curves(task, recurrent, seeds, scale))
                loads.append(common.load_average())
        rows = [
            [
                run["task"],
                run["recurrent"] or "feed-forward",
                f"{run['config']['total_timesteps']:,}",
                ", ".join(f"{g:.1f}" for g in run["greedy_return_per_seed"]),
                f"{run['seconds_with_compile']:.0f}",
            ]
            for run in data["curves"]
        ]
        header = ["task", "policy", "env steps", "greedy return per seed", "s (with compile)"]
        print(common.markdown_table(header, rows))
    data["contention"] = common.contention_note(loads)
    print(data["contention"])
    common.save_results("recurrent", args, data, draw(data) if data["curves"] else None)


if __name__ == "__main__":
    main()
