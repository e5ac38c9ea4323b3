"""Gradient parallelism: training steps per second against devices and against `num_envs`.

    python benchmarks/scaling.py            # full tables (about 10 minutes on 2 CPU cores)
    python benchmarks/scaling.py --quick    # smaller budgets, fewer repeats

`a2c` on CartPole-v1 (default network, `n_steps = 8`), both backends (`shard_map`, `pmap`):

1. steps/s against the device count (1, 2, 4) at a fixed total `num_envs` (each device runs
   `num_envs / D` environments);
2. steps/s against `num_envs` at a fixed device count, next to one device.

On a CPU the devices are forced (`XLA_FLAGS=--xla_force_host_platform_device_count=4`): every
configuration is compiled in one process, then each repeat times every configuration in turn,
so that all see the same background load (report medians; the ratios are the robust figures).
One more process without forced devices times one device alone, to show what forcing costs
it. On a GPU machine the devices are the GPUs (`--devices` up to their number).

Prints markdown tables, writes the raw figures to `--json` and draws `--png`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("shard_map", "pmap")


def plan(devices: list[int], device_envs: list[int], sweep_envs: list[int], sweep_devices: int):
    """The configurations to time: (num_devices, backend, num_envs); backend None for 1."""
    runs = []
    for n in device_envs:
        for d in devices:
            runs += [(d, None, n)] if d == 1 else [(d, b, n) for b in BACKENDS]
    for n in sweep_envs:
        runs += [(1, None, n)] + [(sweep_devices, b, n) for b in BACKENDS]
    return list(dict.fromkeys(runs))  # in order, without repeats


def worker(runs: list, min_steps: int, repeats: int) -> list[dict]:
    """Compiles every configuration, then times each in turn, `repeats` rounds."""
    import jax

    import a3c_jax

    base = a3c_jax.Config()
    compiled = []
    for d, backend, n in runs:
        updates = min(2000, max(10, min_steps // (n * base.n_steps)))
        config = base.replace(
            num_envs=n,
            total_timesteps=updates * n * base.n_steps,
            num_devices=d,
            parallel_backend=backend or "shard_map",
        )
        train = a3c_jax.jit_train(config)
        key = jax.random.PRNGKey(0)
        start = time.perf_counter()
        executable = train.lower(key).compile()
        compile_s = time.perf_counter() - start
        jax.block_until_ready(executable(key))  # warm-up
        compiled.append((config, executable, compile_s))
    times: list[list[float]] = [[] for _ in runs]
    for r in range(repeats):
        for i, (_, executable, _) in enumerate(compiled):
            key = jax.random.PRNGKey(r + 1)
            start = time.perf_counter()
            jax.block_until_ready(executable(key))
            times[i].append(time.perf_counter() - start)
    rows = []
    for (d, backend, n), (config, _, compile_s), runs_s in zip(runs, compiled, times, strict=True):
        steps = config.num_updates * config.batch_size
        run_s = statistics.median(runs_s)
        rows.append(
            {
                "num_devices": d,
                "backend": backend,
                "num_envs": n,
                "envs_per_device": n // d,
                "n_steps": config.n_steps,
                "env_steps": steps,
                "compile_s": compile_s,
                "run_s": run_s,
                "runs_s": runs_s,
                "steps_per_s": steps / run_s,
            }
        )
    return rows


def run_worker(runs: list, min_steps: int, repeats: int, forced: int | None) -> dict:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if forced:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={forced}"
    spec = json.dumps({"runs": runs, "min_steps": min_steps, "repeats": repeats})
    out = subprocess.run(
        [sys.executable, __file__, "--worker", spec],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode:
        sys.exit(f"worker failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker_main(spec: str) -> None:
    import jax

    args = json.loads(spec)
    runs = [tuple(r) for r in args["runs"]]
    rows = worker(runs, args["min_steps"], args["repeats"])
    device = jax.devices()[0]
    print(
        json.dumps(
            {
                "rows": rows,
                "device_kind": device.device_kind,
                "platform": device.platform,
                "device_count": jax.device_count(),
            }
        )
    )


def _label(row: dict) -> str:
    return "1 device" if row["backend"] is None else f"{row['num_devices']} x {row['backend']}"


def draw(rows: list[dict], device_envs: list[int], sweep_devices: int, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for n in device_envs:
        for backend in BACKENDS:
            points = sorted(
                (r["num_devices"], r["steps_per_s"])
                for r in rows
                if r["num_envs"] == n and r["backend"] in (None, backend)
            )
            left.plot(*zip(*points, strict=True), marker="o", label=f"{backend}, {n} envs")
    left.set_xlabel("devices")
    left.set_ylabel("env steps / s")
    left.set_title("against devices, fixed total num_envs")
    left.set_xticks(sorted({r["num_devices"] for r in rows}))
    left.legend(fontsize=8)
    for label in ["1 device"] + [f"{sweep_devices} x {b}" for b in BACKENDS]:
        points = sorted({(r["num_envs"], r["steps_per_s"]) for r in rows if _label(r) == label})
        right.plot(*zip(*points, strict=True), marker="o", label=label)
    right.set_xscale("log", base=2)
    right.set_xlabel("num_envs (total)")
    right.set_ylabel("env steps / s")
    right.set_title(f"against num_envs, {sweep_devices} devices vs 1")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    os.makedirs(os.path.dirname(png) or ".", exist_ok=True)
    fig.savefig(png, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller budgets, fewer repeats")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--device-envs", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument(
        "--sweep-envs", type=int, nargs="+", default=[64, 256, 1024, 2048, 4096, 8192]
    )
    parser.add_argument("--sweep-devices", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--gpu", action="store_true", help="use the accelerators, not forced CPUs")
    parser.add_argument("--json", default="benchmarks/results/scaling.json")
    parser.add_argument("--png", default="benchmarks/results/scaling.png")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return
    repeats = args.repeats or (3 if args.quick else 5)
    min_steps = 300_000 if args.quick else 1_000_000
    runs = plan(args.devices, args.device_envs, args.sweep_envs, args.sweep_devices)
    load_before = os.getloadavg()
    forced = None if args.gpu else max([*args.devices, args.sweep_devices])
    result = run_worker(runs, min_steps, repeats, forced)
    rows = result["rows"]
    # One device in a process of its own, without forced devices.
    plain = None
    if not args.gpu:
        alone = [(1, None, n) for n in args.device_envs]
        plain = run_worker(alone, min_steps, repeats, None)["rows"]
    load_after = os.getloadavg()

    where = f"{result['device_kind']} ({result['platform']}), {os.cpu_count()} cores"
    print(
        f"\nGradient parallelism, a2c on CartPole-v1; {where}; {result['device_count']} "
        f"devices{' (forced)' if forced else ''}; median of {repeats} runs, interleaved; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (shared machine)\n"
    )
    print("Against devices, fixed total num_envs:\n")
    print("| num_envs | devices | backend | envs/device | compile s | run s | steps/s | vs 1 |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    single = {r["num_envs"]: r["steps_per_s"] for r in rows if r["num_devices"] == 1}
    for n in args.device_envs:
        for r in (r for r in rows if r["num_envs"] == n and r["num_devices"] in args.devices):
            print(
                f"| {n} | {r['num_devices']} | {r['backend'] or '-'} | {r['envs_per_device']} | "
                f"{r['compile_s']:.1f} | {r['run_s']:.3f} | {r['steps_per_s']:,.0f} | "
                f"{r['steps_per_s'] / single[n]:.2f} |"
            )
    if plain:
        for r in plain:
            print(
                f"| {r['num_envs']} | 1 | - (no forced devices) | {r['num_envs']} | "
                f"{r['compile_s']:.1f} | {r['run_s']:.3f} | {r['steps_per_s']:,.0f} | "
                f"{r['steps_per_s'] / single[r['num_envs']]:.2f} |"
            )
    d = args.sweep_devices
    print(f"\nAgainst num_envs, {d} devices and 1 (steps/s; ratio to 1 device):\n")
    print(f"| num_envs | 1 device | {d} x shard_map | ratio | {d} x pmap | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sweep_envs:
        by = {_label(r): r["steps_per_s"] for r in rows if r["num_envs"] == n}
        one, sm, pm = by["1 device"], by[f"{d} x shard_map"], by[f"{d} x pmap"]
        print(f"| {n} | {one:,.0f} | {sm:,.0f} | {sm / one:.2f} | {pm:,.0f} | {pm / one:.2f} |")
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(
            {
                **{k: v for k, v in result.items() if k != "rows"},
                "forced_devices": forced,
                "repeats": repeats,
                "load_average_before_after": [load_before[0], load_after[0]],
                "rows": rows,
                "one_device_without_forcing": plain,
            },
            f,
            indent=1,
        )
    draw(rows, args.device_envs, d, args.png)
    print(f"\nwrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
