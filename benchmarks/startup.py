"""The whole command, as a user times it: `a3c-jax train` from the shell prompt to its exit.

    python benchmarks/startup.py             # 5 processes of each; SB3 5 times
    python benchmarks/startup.py --quick     # 3 of each; SB3 once
    python benchmarks/startup.py --sb3-runs 0

In one run, each contestant in fresh processes, interleaved round by round (so that a busy moment
of the machine touches all of them alike), each timed from the process's start to its exit:

- **import**: `python -c "import jax"` against `python -c "import a3c_jax"`.
- **a3c_jax cold**: the README's quick start, `a3c-jax train --env CartPole-v1 --algo a2c`
  (200k environment steps, then a greedy evaluation over 100 episodes), with an empty persistent
  compilation cache (`A3C_JAX_CACHE_DIR` pointed at a new temporary folder each time).
- **a3c_jax warm**: the same with the cache that one earlier, uncounted run filled.
- **SB3 A2C**: Stable-Baselines3's A2C on CartPole-v1 with the RL Zoo's settings until the mean
  of its latest 20 training episodes reaches 475, then 20 deterministic evaluation episodes
  (`vs_pytorch.py --child-sb3`, one torch thread: its best setting here), as a whole process.

The a3c_jax runs record where their time went (`run.json`'s `timings`, which the command also
prints): start-up (interpreter and imports), config, build (run folder, initial state),
compile, training, evaluation and writing; the table gives each phase's median.
Wall-clock and CPU seconds (user + system, the children's own accounting) are both given: on a
machine shared with other work the CPU seconds move less. Medians, with [min, max].

Prints markdown tables, writes `benchmarks/results/startup[_quick].json`.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import common

COMMAND = ("-m", "a3c_jax", "train", "--env", "CartPole-v1", "--algo", "a2c")
PHASES = ("startup", "config", "build", "compile", "train", "evaluate", "write")
TARGETS = {"import_ratio": 1.3, "cold_s": 4.5, "warm_s": 3.0, "sb3_over_cold": 10.0}


def timed(args: list[str], cwd: str, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Runs `python ARGS` in a fresh process: wall and CPU seconds from its start to its exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu, "load": common.load_average()}
    if out.returncode != 0:
        row["error"] = f"exit {out.returncode}: {(out.stderr or out.stdout)[-2000:]}"
    row["stdout_tail"] = out.stdout.strip().splitlines()[-3:]
    return row


def a3c_jax_run(cache_dir: str, timeout: float) -> dict[str, Any]:
    """The default command in a fresh folder (its run folder goes to ./runs there)."""
    work = tempfile.mkdtemp(prefix="a3c_jax_startup_")
    try:
        row = timed(list(COMMAND), work, common.child_env(A3C_JAX_CACHE_DIR=cache_dir), timeout)
        found = glob.glob(os.path.join(work, "runs", "*", "run.json"))
        if found:
            with open(found[0]) as f:
                row["timings"] = json.load(f).get("timings", {})
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sb3_run(seed: int, timeout: float) -> dict[str, Any]:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vs_pytorch.py")
    args = [script, "--child-sb3", str(seed), "--max-seconds", "600", "--sb3-threads", "1"]
    row = timed(args, os.getcwd(), common.child_env(), timeout)
    try:
        row["result"] = json.loads(row.pop("stdout_tail")[-1])
    except (IndexError, ValueError):
        row["result"] = {}
    return row


def med(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return common.summary(r.get(key) for r in rows if "error" not in r)


def tables(results: dict[str, list[dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    names = {
        "import_jax": "`python -c 'import jax'`",
        "import_a3c_jax": "`python -c 'import a3c_jax'`",
        "cold": "`a3c-jax train --env CartPole-v1 --algo a2c`, cold cache",
        "warm": "the same, warm cache",
        "sb3": "SB3 A2C on CartPole-v1 until solved (whole process)",
    }
    rows = []
    for key, label in names.items():
        runs = results.get(key, [])
        if runs:
            ok = [r for r in runs if "error" not in r]
            wall, cpu = med(runs, "wall_s"), med(runs, "cpu_s")
            rows.append(
                [label, f"{len(ok)}/{len(runs)}", common.fmt_spread(wall), common.fmt_spread(cpu)]
            )
    out = common.markdown_table(["process", "runs ok", "wall s", "CPU s"], rows, "lrrr")

    phase_rows = []
    for key in ("cold", "warm"):
        runs = [r for r in results.get(key, []) if "timings" in r]
        cells = [
            common.fmt(common.summary(r["timings"].get(p) for r in runs)["median"]) for p in PHASES
        ]
        phase_rows.append([key, *cells])
    out += "\n\nphases of the a3c_jax command (medians, wall s; `run.json` `timings`):\n\n"
    out += common.markdown_table(["cache", *PHASES], phase_rows)

    def median_of(key: str, field: str = "wall_s") -> float | None:
        return med(results.get(key, []), field)["median"]

    figures: dict[str, Any] = {}
    jax_s, a3c_s = median_of("import_jax"), median_of("import_a3c_jax")
    cold, warm, sb3 = median_of("cold"), median_of("warm"), median_of("sb3")
    figures["import_ratio"] = a3c_s / jax_s if jax_s and a3c_s else None
    figures["import_ratio_cpu"] = (
        median_of("import_a3c_jax", "cpu_s") / median_of("import_jax", "cpu_s")
        if median_of("import_jax", "cpu_s")
        else None
    )
    figures["cold_s"], figures["warm_s"] = cold, warm
    figures["sb3_over_cold"] = sb3 / cold if sb3 and cold else None
    checks = [
        (
            "import a3c_jax / import jax (wall)",
            figures["import_ratio"],
            "<=",
            TARGETS["import_ratio"],
        ),
        ("default command cold, s", cold, "<=", TARGETS["cold_s"]),
        ("default command warm, s", warm, "<=", TARGETS["warm_s"]),
        (
            "SB3 A2C to solve / a3c_jax cold",
            figures["sb3_over_cold"],
            ">=",
            TARGETS["sb3_over_cold"],
        ),
    ]
    target_rows = []
    for label, value, op, target in checks:
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        target_rows.append(
            [
                label,
                common.fmt(value),
                f"{op} {target:g}",
                "-" if met is None else ("yes" if met else "NO"),
            ]
        )
    out += "\n\ntargets:\n\n" + common.markdown_table(
        ["figure", "measured", "target", "met"], target_rows
    )
    return out, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 processes of each, SB3 once")
    parser.add_argument("--runs", type=int, default=None, help="processes of each (default 5)")
    parser.add_argument("--sb3-runs", type=int, default=None, help="SB3 processes (default 5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per a3c_jax process")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    sb3_runs = args.sb3_runs if args.sb3_runs is not None else (1 if args.quick else 5)
    if sb3_runs and importlib.util.find_spec("stable_baselines3") is None:
        print("SB3 skipped: stable-baselines3 not installed (pip install -e '.[bench]')")
        sb3_runs = 0
    started = time.perf_counter()
    machine = common.machine_info(with_jax=False)
    loads = [machine["load_average_1min"]]
    results: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("import_jax", "import_a3c_jax", "cold", "warm", "sb3")
    }
    env = common.child_env()
    warm_cache = tempfile.mkdtemp(prefix="a3c_jax_startup_cache_")
    try:
        a3c_jax_run(warm_cache, args.timeout)  # fills the warm cache; not counted
        for i in range(max(runs, sb3_runs)):
            if i < runs:
                results["import_jax"].append(timed(["-c", "import jax"], os.getcwd(), env, 120))
                results["import_a3c_jax"].append(
                    timed(["-c", "import a3c_jax"], os.getcwd(), env, 120)
                )
                cold_cache = tempfile.mkdtemp(prefix="a3c_jax_startup_cold_")
                try:
                    results["cold"].append(a3c_jax_run(cold_cache, args.timeout))
                finally:
                    shutil.rmtree(cold_cache, ignore_errors=True)
                results["warm"].append(a3c_jax_run(warm_cache, args.timeout))
            if i < sb3_runs:
                results["sb3"].append(sb3_run(i, 900))
            loads.append(common.load_average())
            last = {k: v[-1]["wall_s"] for k, v in results.items() if v}
            print(
                f"round {i + 1}: " + ", ".join(f"{k} {s:.2f} s" for k, s in last.items()),
                flush=True,
            )
    finally:
        shutil.rmtree(warm_cache, ignore_errors=True)
    text, figures = tables(results)
    note = common.contention_note(loads)
    print(f"\n{common.cpu_model()}, {os.cpu_count()} cores; {note}\n")
    print(text)
    for key, rows in results.items():
        for row in rows:
            if "error" in row:
                print(f"\n{key} failed: {row['error']}")
    common.save_results(
        "startup",
        args,
        {
            "machine": machine,
            "contention": note,
            "loads": loads,
            "command": "a3c-jax " + " ".join(COMMAND[3:]),
            "targets": TARGETS,
            "figures": figures,
            "runs": results,
            "table": text,
            "wall_s": time.perf_counter() - started,
        },
    )


if __name__ == "__main__":
    main()
