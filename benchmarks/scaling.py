"""Gradient parallelism: training steps per second against devices and against `num_envs`.

    python benchmarks/scaling.py            # full tables (about 10 minutes on 2 CPU cores)
    python benchmarks/scaling.py --quick    # smaller budgets, fewer repeats
    python benchmarks/scaling.py --gpu --devices 1 2 4 8   # the accelerators of a GPU machine

`a2c` on CartPole-v1 (default network, `n_steps = 8`), both backends (`shard_map`, `pmap`):

1. steps/s against the device count `D` (1, 2, 4) at a fixed total `num_envs` (each device runs
   `num_envs / D` environments);
2. steps/s against `num_envs` at a fixed device count, next to one device.

On a CPU each device count runs in a process of its own with exactly that many forced devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=D`; one device: no flag, as a user runs it).
Each process compiles its configurations (one process at a time), then waits; the timing runs
in rounds, each round timing every configuration of every process once, in turn, so that all
see the same background load on a shared machine. The tables give the median and the best (least
disturbed) round; "vs 1" is the median over rounds of the speed relative to one device in the
same round, the figure least moved by other work on the machine.

Prints markdown tables, writes the raw figures to `--json` and draws `--png` (needs matplotlib:
`pip install -e ".[bench]"`).
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


# --- The worker: one process, one device count --------------------------------------------


def worker_main(spec: str) -> None:
    """Compiles the configurations of `spec`, prints `ready`, then for every line `run` on
    stdin times each configuration once and prints the seconds as a JSON list."""
    import jax

    import a3c_jax

    args = json.loads(spec)
    base = a3c_jax.Config()
    compiled = []
    for d, backend, n in args["runs"]:
        updates = min(2000, max(10, args["min_steps"] // (n * base.n_steps)))
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
        compiled.append((executable, config.num_updates * config.batch_size, compile_s))
    device = jax.devices()[0]
    info = {
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "env_steps": [steps for _, steps, _ in compiled],
        "compile_s": [c for _, _, c in compiled],
    }
    print("ready " + json.dumps(info), flush=True)
    for r, line in enumerate(sys.stdin):
        if line.strip() != "run":
            break
        seconds = []
        for executable, _, _ in compiled:
            key = jax.random.PRNGKey(r + 1)
            start = time.perf_counter()
            jax.block_until_ready(executable(key))
            seconds.append(time.perf_counter() - start)
        print(json.dumps(seconds), flush=True)


class Worker:
    """A worker process for the configurations `runs`, all on `devices` devices."""

    def __init__(self, runs: list, devices: int, min_steps: int, gpu: bool) -> None:
        env = dict(os.environ)
        env.pop("XLA_FLAGS", None)
        if not gpu and devices > 1:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        spec = json.dumps({"runs": runs, "min_steps": min_steps})
        self.runs = runs
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.info = json.loads(self._read().removeprefix("ready "))

    def _read(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            sys.exit(f"a benchmark worker died (status {self.process.returncode})")
        return line

    def time_once(self) -> list[float]:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return json.loads(self._read())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def measure(runs: list, min_steps: int, repeats: int, gpu: bool) -> tuple[list[dict], dict]:
    by_devices: dict[int, list] = {}
    for run in runs:
        by_devices.setdefault(run[0], []).append(run)
    workers = {d: Worker(r, d, min_steps, gpu) for d, r in sorted(by_devices.items())}
    times = {d: [[] for _ in w.runs] for d, w in workers.items()}
    for _ in range(repeats):
        for d, w in workers.items():
            for i, seconds in enumerate(w.time_once()):
                times[d][i].append(seconds)
    rows = []
    for d, w in workers.items():
        w.close()
        for i, (_, backend, n) in enumerate(w.runs):
            steps = w.info["env_steps"][i]
            run_s = statistics.median(times[d][i])
            rows.append(
                {
                    "num_devices": d,
                    "backend": backend,
                    "num_envs": n,
                    "envs_per_device": n // d,
                    "env_steps": steps,
                    "compile_s": w.info["compile_s"][i],
                    "run_s": run_s,
                    "runs_s": times[d][i],
                    "steps_per_s": steps / run_s,
                    "best_steps_per_s": steps / min(times[d][i]),
                    "devices_in_process": w.info["device_count"],
                }
            )
    return rows, workers[min(workers)].info


def _ratio(row: dict, rows: list[dict]) -> float:
    """Median over rounds of this row's speed relative to one device's in the same round."""
    one = next(r for r in rows if r["num_devices"] == 1 and r["num_envs"] == row["num_envs"])
    return statistics.median(o / t for t, o in zip(row["runs_s"], one["runs_s"], strict=True))


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
        points = sorted((r["num_envs"], r["steps_per_s"]) for r in rows if _label(r) == label)
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
    repeats = args.repeats or (3 if args.quick else 7)
    min_steps = 300_000 if args.quick else 1_000_000
    runs = plan(args.devices, args.device_envs, args.sweep_envs, args.sweep_devices)
    load_before = os.getloadavg()
    rows, info = measure(runs, min_steps, repeats, args.gpu)
    load_after = os.getloadavg()

    where = f"{info['device_kind']} ({info['platform']}), {os.cpu_count()} cores"
    forced = "" if args.gpu else ", CPU devices forced per process"
    print(
        f"\nGradient parallelism, a2c on CartPole-v1; {where}{forced}; median of {repeats} "
        f"interleaved rounds; load average {load_before[0]:.1f} before, {load_after[0]:.1f} "
        "after (a shared machine)\n"
    )
    print("Against devices, fixed total num_envs:\n")
    print(
        "| num_envs | devices | backend | envs/device | compile s | run s | steps/s | "
        "best steps/s | vs 1 |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in args.device_envs:
        for r in (r for r in rows if r["num_envs"] == n and r["num_devices"] in args.devices):
            print(
                f"| {n} | {r['num_devices']} | {r['backend'] or '-'} | {r['envs_per_device']} | "
                f"{r['compile_s']:.1f} | {r['run_s']:.3f} | {r['steps_per_s']:,.0f} | "
                f"{r['best_steps_per_s']:,.0f} | {_ratio(r, rows):.2f} |"
            )
    d = args.sweep_devices
    print(f"\nAgainst num_envs, {d} devices and 1 (steps/s; speed relative to 1 device):\n")
    print(f"| num_envs | 1 device | {d} x shard_map | vs 1 | {d} x pmap | vs 1 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sweep_envs:
        by = {_label(r): r for r in rows if r["num_envs"] == n}
        one, sm, pm = by["1 device"], by[f"{d} x shard_map"], by[f"{d} x pmap"]
        print(
            f"| {n} | {one['steps_per_s']:,.0f} | {sm['steps_per_s']:,.0f} | "
            f"{_ratio(sm, rows):.2f} | {pm['steps_per_s']:,.0f} | {_ratio(pm, rows):.2f} |"
        )
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(
            {
                "device_kind": info["device_kind"],
                "platform": info["platform"],
                "cpu_count": os.cpu_count(),
                "repeats": repeats,
                "load_average_before_after": [load_before[0], load_after[0]],
                "rows": [{**r, "vs_one_device": _ratio(r, rows)} for r in rows],
            },
            f,
            indent=1,
        )
    draw(rows, args.device_envs, d, args.png)
    print(f"\nwrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
