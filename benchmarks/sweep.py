"""A hyperparameter sweep in one compiled program against the same settings trained one by one.

    python benchmarks/sweep.py            # Acrobot-v1 a2c, 24 settings x 4 seeds (200k steps each)
    python benchmarks/sweep.py --quick    # CartPole-v1, 8 settings x 2 seeds, 20k steps

Each contestant runs in a fresh process (no persistent compilation cache), timed from inside:

- **one run**: `jit_train(setting)(key)` then a greedy evaluation of 20 episodes, compile
  included, for `--sequential` different settings one after the other (each compiles anew: its
  hyperparameters are constants of its program). The full grid's 96 sequential runs are
  extrapolated from their mean (said so in the table).
- **sweep**: `a3c_jax.sweep(config, grid, num_seeds)`: one compile, then the whole grid in batches,
  each (setting, seed) evaluated greedily over 20 episodes inside the program.
- **tune**: `a3c_jax.sweeps.tune.tune` with `--batch` trials x the seeds per round, `--rounds`
  rounds: the seconds of each round and the compiles counted after the first (`jax.monitoring`).

The target on this project's 2-core CPU: the whole sweep within 15x one run's wall-clock (96 runs
for the time of 15). Prints markdown tables and the sweep's own table; writes
`benchmarks/results/sweep[_quick].json` and the sweep's picture beside it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import common

FULL = {
    "config": {"env_name": "Acrobot-v1", "algo": "a2c"},
    "space": {
        "lr": [3e-4, 1e-3, 3e-3, 1e-2],
        "ent_coef": [0.0, 0.01],
        "gae_lambda": [0.9, 0.95, 1.0],
    },
    "seeds": 4,
}
QUICK = {
    "config": {"env_name": "CartPole-v1", "algo": "a2c", "total_timesteps": 20_000},
    "space": {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "ent_coef": [0.0, 0.01]},
    "seeds": 2,
}
EPISODES = 20


def child_one_runs(setup: dict, count: int) -> dict:
    import jax

    import a3c_jax
    from a3c_jax.sweeps import grid as sw

    config = a3c_jax.Config(**setup["config"])
    settings = sw.grid(setup["space"])
    seconds = []
    for i in range(count):
        setting = settings[(i * 7) % len(settings)]
        t0 = time.perf_counter()
        c = config.replace(**setting)
        result = a3c_jax.jit_train(c)(jax.random.PRNGKey(i))
        returns = a3c_jax.evaluate(c, result.params, jax.random.PRNGKey(100 + i), EPISODES)
        jax.block_until_ready(returns)
        seconds.append(time.perf_counter() - t0)
    return {"seconds": seconds}


def child_sweep(setup: dict, png: str) -> dict:
    import jax

    import a3c_jax
    from a3c_jax.viz import plotting

    config = a3c_jax.Config(**setup["config"])
    t0 = time.perf_counter()
    result = a3c_jax.sweep(
        config, setup["space"], setup["seeds"], jax.random.PRNGKey(0), episodes=EPISODES
    )
    total = time.perf_counter() - t0
    plotting.plot_sweep(result.settings, result.per_seed(), png)
    return {
        "seconds": total,
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "batch_size": result.batch_size,
        "table": result.markdown(),
        "best": result.settings[result.best_index],
        "best_return": float(result.score()[result.best_index]),
        "preset_return": _preset_score(result, config),
    }


def _preset_score(result, config) -> float | None:
    """The score of the setting equal to the preset's values, if the grid holds it."""
    for i, setting in enumerate(result.settings):
        if all(abs(getattr(config, n) - v) < 1e-12 for n, v in setting.items()):
            return float(result.score()[i])
    return None


def child_tune(setup: dict, batch: int, rounds: int) -> dict:
    import jax

    import a3c_jax
    from a3c_jax.sweeps import tune

    compiles = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    config = a3c_jax.Config(**setup["config"])
    space = {n: tune.DEFAULT_SPACE[n] for n in ("lr", "ent_coef", "gae_lambda")}
    folder = tempfile.mkdtemp(prefix="a3c_jax_tune_")
    rounds_s, compiles_in_round = [], []

    def on_round(index: int, seconds: float, study) -> None:
        rounds_s.append(seconds)
        compiles_in_round.append(len(compiles))

    try:
        t0 = time.perf_counter()
        tune.tune(
            config, space, __import__("pathlib").Path(folder), trials=batch * rounds, batch=batch,
            num_seeds=setup["seeds"], episodes=EPISODES, on_round=on_round,
        )  # fmt: skip
        total = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    after_first = compiles_in_round[-1] - compiles_in_round[0] if compiles_in_round else None
    return {"seconds": total, "rounds": rounds_s, "compiles_after_first_round": after_first}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sequential", type=int, default=3, help="one-by-one runs timed")
    parser.add_argument("--batch", type=int, default=16, help="tune: trials per round")
    parser.add_argument("--rounds", type=int, default=2, help="tune: rounds")
    parser.add_argument("--child", choices=("one", "sweep", "tune"), help=argparse.SUPPRESS)
    parser.add_argument("--png", help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup = QUICK if args.quick else FULL
    if args.child == "one":
        common.emit(child_one_runs(setup, args.sequential))
        return 0
    if args.child == "sweep":
        common.emit(child_sweep(setup, args.png))
        return 0
    if args.child == "tune":
        common.emit(child_tune(setup, args.batch, args.rounds))
        return 0

    script = os.path.abspath(__file__)
    flags = ["--quick"] if args.quick else []
    png = common.result_path("sweep", args.quick, "png")
    loads = [common.load_average()]
    one = common.run_child([script, *flags, "--child", "one", "--sequential", str(args.sequential)])
    loads.append(common.load_average())
    swept = common.run_child([script, *flags, "--child", "sweep", "--png", png])
    loads.append(common.load_average())
    tune_flags = ["--batch", str(args.batch), "--rounds", str(args.rounds)]
    tuned = common.run_child([script, *flags, "--child", "tune", *tune_flags])
    loads.append(common.load_average())
    for name, result in (("one run", one), ("sweep", swept), ("tune", tuned)):
        if "error" in result:
            print(f"{name} failed: {result['error']}", file=sys.stderr)
            return 1

    settings = 1
    for values in setup["space"].values():
        settings *= len(values)
    pairs = settings * setup["seeds"]
    per_run = common.summary(one["seconds"])
    sequential = per_run["median"] * pairs
    rows = [
        ["one run (compile, train, 20 greedy episodes)", common.fmt_spread(per_run, ".1f"), "1x"],
        [
            f"{pairs} runs one by one (extrapolated from {per_run['n']})",
            f"{sequential:.0f}",
            f"{sequential / per_run['median']:.0f}x",
        ],
        [
            f"sweep: {settings} settings x {setup['seeds']} seeds, batches of "
            f"{swept['batch_size']} (compile {swept['compile_seconds']:.1f} s once)",
            f"{swept['seconds']:.1f}",
            f"{swept['seconds'] / per_run['median']:.1f}x",
        ],
    ]
    env = setup["config"]["env_name"]
    print(f"\n### {env} {setup['config']['algo']}: wall-clock seconds (target: sweep <= 15x)\n")
    print(common.markdown_table(["", "seconds", "x one run"], rows))
    print(
        f"\nsweep / one-by-one: {sequential / swept['seconds']:.1f}x faster. "
        f"best setting {swept['best']}: {swept['best_return']:.1f}"
        + (
            f" (the preset's values: {swept['preset_return']:.1f})"
            if swept["preset_return"] is not None
            else ""
        )
    )
    print("\n" + swept["table"])
    rounds = ", ".join(f"{s:.1f}" for s in tuned["rounds"])
    print(
        f"tune: {args.rounds} rounds of {args.batch} trials x {setup['seeds']} seeds: {rounds} s "
        f"per round; compiles after the first round: {tuned['compiles_after_first_round']}"
    )
    note = common.contention_note(loads)
    print(f"\n{note}")
    machine = common.machine_info()
    common.save_results(
        "sweep",
        args,
        {"machine": machine, "setup": setup, "one": one, "sweep": swept, "tune": tuned,
         "note": note},
    )  # fmt: skip
    print(f"picture: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
