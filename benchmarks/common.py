"""What every benchmark script shares: the machine's description, child processes that report one
JSON object, summary statistics, markdown tables and result files.

Scripts run as `python benchmarks/<name>.py`, so this module is imported as `common` (the script's
folder is first on `sys.path`).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# The compilation-cache variables a child must not inherit (a cold run starts with an empty one).
CACHE_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "A3C_JAX_CACHE_DIR")
# A 1-minute load average above this many runnable processes per core marks figures as contended.
CONTENDED_LOAD_PER_CORE = 1.25


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def git_commit() -> str | None:
    """The checkout's commit (short hash, `+dirty` with uncommitted changes), or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        run = subprocess.run(
            ["git", "describe", "--always", "--dirty=+dirty", "--abbrev=7"],
            cwd=here, capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() or None


def machine_info(with_jax: bool = True) -> dict[str, Any]:
    """The machine the figures come from: CPU, cores, accelerator, library versions, load, and
    the command and commit that measured them (`benchmarks/render_results.py` shows both)."""
    info: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "commit": git_commit(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1min": load_average(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    if with_jax:
        import jax

        device = jax.devices()[0]
        info.update(
            jax=jax.__version__,
            backend=jax.default_backend(),
            device=device.device_kind,
            device_count=jax.device_count(),
        )
    return info


def contention_note(loads: Iterable[float], cores: int | None = None) -> str:
    """A line saying whether the machine was busy with other work while the figures were taken."""
    cores = cores or os.cpu_count() or 1
    worst = max(loads, default=float("nan"))
    if worst != worst:  # nan
        return "load average unknown"
    if worst > CONTENDED_LOAD_PER_CORE * cores:
        return (
            f"CONTENDED: load average up to {worst:.1f} on {cores} cores while measuring "
            "(other processes shared the CPU): preliminary figures"
        )
    return f"load average up to {worst:.1f} on {cores} cores"


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: ours, without compilation-cache settings."""
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}
    env.update(extra)
    return env


def run_child(args: Sequence[str], timeout: float | None = None, **env: str) -> dict[str, Any]:
    """Runs `python <args>` in a fresh process and returns the JSON object on its last stdout line.

    A child that fails or times out gives `{"error": ...}` instead of stopping the benchmark.
    """
    command = [sys.executable, *args]
    try:
        out = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=child_env(**env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s: {' '.join(args)}"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-15:]
        return {"error": f"exit {out.returncode}: {' '.join(args)}\n" + "\n".join(tail)}
    return json.loads(lines[-1])


def emit(result: dict[str, Any]) -> None:
    """The child's side of `run_child`: one JSON object on the last line of stdout."""
    print(json.dumps(result), flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux `/proc/self/status`), else the peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def summary(values: Iterable[float | None]) -> dict[str, Any]:
    """Median, min, max and count of the values that are not None."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(xs), "median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def fmt(value: float | None, spec: str = ".2f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def fmt_spread(s: dict[str, Any], spec: str = ".2f") -> str:
    """`median [min, max]` of a `summary`."""
    if not s["n"]:
        return "-"
    if s["n"] == 1:
        return format(s["median"], spec)
    return f"{s['median']:{spec}} [{s['min']:{spec}}, {s['max']:{spec}}]"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A markdown table; `align` holds "l" or "r" per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def result_path(name: str, quick: bool, ext: str = "json") -> str:
    """`benchmarks/results/<name>.<ext>` (quick runs: `<name>_quick.<ext>`, never overwriting the
    full run's figures)."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    return os.path.join(RESULTS_DIR, f"{name}{'_quick' if quick else ''}.{ext}")


def write_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def save_results(
    name: str,
    args: Any,
    data: dict[str, Any],
    draw: Callable[[str], bool] | None = None,
) -> tuple[str, str | None]:
    """Writes a benchmark's figures: `data` as JSON and, with `draw(png_path) -> drawn`, its
    plot, to `args.json` / `args.png` when given, else `result_path(name, args.quick, ...)`.
    Prints what was written; returns the JSON path and the PNG path (None when not drawn)."""
    json_path = getattr(args, "json", None) or result_path(name, args.quick)
    write_json(json_path, data)
    png_path = None
    if draw is not None:
        png_path = getattr(args, "png", None) or result_path(name, args.quick, "png")
        if not draw(png_path):
            png_path = None
    drawn = f" and {png_path}" if png_path else ""
    missing = " (no matplotlib: no PNG; pip install -e '.[bench]')" if draw and not png_path else ""
    print(f"\nwrote {json_path}{drawn}{missing}")
    return json_path, png_path


def matplotlib_pyplot():
    """`matplotlib.pyplot` with the file-only backend, or None when matplotlib is not installed
    (it comes with the `bench` extra)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def random_rollout_run(spec: Any, num_envs: int, n_steps: int, num_updates: int) -> Callable:
    """`run(key) -> total reward`: `num_updates` rollouts of `n_steps` over `num_envs`
    environments of `spec` with a uniform random policy and no learning (the training's own
    `rollout`, so its steps/s are the environment's and the rollout's alone). Not jitted."""
    import jax
    import jax.numpy as jnp

    from a3c_jax import envs
    from a3c_jax.algorithms.rollout import rollout, stateless

    def random_policy(params: Any, obs: Any, key: Any) -> Any:
        n = obs.shape[0]
        if spec.discrete:
            return jax.random.randint(key, (n,), 0, spec.num_actions)
        shape = (n, spec.num_actions)
        return jax.random.uniform(key, shape, minval=spec.action_low, maxval=spec.action_high)

    policy = stateless(random_policy)

    def run(key: Any) -> Any:
        reset_key, key = jax.random.split(key)
        carry = envs.reset(spec, reset_key, num_envs)

        def body(state: Any, _: Any) -> Any:
            carry, key = state
            key, step_key = jax.random.split(key)
            carry, traj = rollout(spec, policy, None, carry, step_key, n_steps)
            return (carry, key), jnp.sum(traj.reward)

        _, rewards = jax.lax.scan(body, (carry, key), None, length=num_updates)
        return jnp.sum(rewards)

    return run
