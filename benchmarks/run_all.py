"""Runs every benchmark and gathers their tables into one summary.

    python benchmarks/run_all.py --quick    # small budgets, for a check (under 15 minutes, quiet)
    python benchmarks/run_all.py            # the README's figures

Measured on the 2-core CPU while other processes loaded it (load average 8): the quick run took
16 minutes, its XLA compiles taking 2-5x their quiet time; the full run plays
5 seeds instead of 2-3, 7 sizes instead of 4 and adds `progression.py`.

In order: `throughput.py`, `breakdown.py`, `time_to_solve.py`, `vs_pytorch.py` (skipped, with a
note, when the `bench` extra is not installed: `pip install -e ".[bench]"`), `parallelism.py` and,
in the full run, `progression.py`. Each script prints its tables and writes its JSON (and PNG) to
`benchmarks/results/` (quick runs as `<name>_quick.*`, so they never overwrite the full figures);
this script then writes `benchmarks/results/summary[_quick].md` with every table, the machine and
the time each script took. Run it on a quiet machine: other processes on the CPU slow XLA's compile
and the baselines' workers unevenly, and every script flags a busy machine in its header."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import common

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = (
    "throughput",
    "breakdown",
    "time_to_solve",
    "vs_pytorch",
    "parallelism",
    "progression",
    "startup",
)
BENCH_EXTRA = ("torch", "stable_baselines3", "gymnasium")


def missing_bench_extra() -> list[str]:
    return [name for name in BENCH_EXTRA if importlib.util.find_spec(name) is None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (< 15 min quiet)")
    parser.add_argument(
        "--only", nargs="*", choices=SCRIPTS, default=None, help="run only these scripts"
    )
    parser.add_argument("--skip", nargs="*", choices=SCRIPTS, default=[])
    args = parser.parse_args()
    names = args.only or [s for s in SCRIPTS if not (args.quick and s == "progression")]
    names = [s for s in names if s not in args.skip]

    started = time.perf_counter()
    machine = common.machine_info()
    sections, timings = [], {}
    for name in names:
        if name == "vs_pytorch" and (missing := missing_bench_extra()):
            note = (
                f"vs_pytorch skipped: {', '.join(missing)} not installed "
                "(pip install -e '.[bench]')"
            )
            print(note, flush=True)
            sections.append(f"## vs_pytorch\n\n{note}\n")
            continue
        command = [sys.executable, os.path.join(HERE, f"{name}.py")]
        if args.quick:
            command.append("--quick")
        print(f"\n=== {' '.join(command[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call(command, cwd=os.path.dirname(HERE))
        timings[name] = time.perf_counter() - t0
        # progression.py writes its own fixed paths; the others follow common.result_path.
        path = (
            os.path.join(common.RESULTS_DIR, "progression.json")
            if name == "progression"
            else common.result_path(name, args.quick)
        )
        tables = f"(exit code {code}; see the output above)"
        if code == 0 and os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
            if name == "progression":
                import progression

                tables = progression.table(data)
            else:
                tables = data["tables"]
        sections.append(f"## {name} ({timings[name] / 60:.1f} min)\n\n{tables}\n")

    total = time.perf_counter() - started
    header = (
        f"# Benchmarks{' (quick)' if args.quick else ''}\n\n"
        f"{machine['cpu']}, {machine['cores']} cores, {machine['device']} ({machine['backend']}), "
        f"jax {machine['jax']}, Python {machine['python']}; {machine['time']}; "
        f"{total / 60:.1f} minutes in all.\n"
    )
    path = common.result_path("summary", args.quick, "md")
    with open(path, "w") as f:
        f.write(header + "\n" + "\n".join(sections))
    print(f"\nall benchmarks: {total / 60:.1f} min; summary in {path}")


if __name__ == "__main__":
    main()
