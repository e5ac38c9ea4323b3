"""Where a training update's time goes, part by part, and what its compile is made of.

    python benchmarks/breakdown.py            # num_envs 8, 512, 2048
    python benchmarks/breakdown.py --quick    # num_envs 8, 2048

For each `num_envs` (CartPole-v1, `a2c` defaults otherwise: 8 steps per rollout, separate 64x64
tanh actor and critic), in a fresh process:

- **run**: `make_train(config)`, compiled as a long run is
  (`a3c_jax.training.loop.compiler_options()`), over `--updates` updates, run once to warm up, then
  once under `jax.profiler` (a Perfetto trace). Every XLA kernel the run executed is attributed,
  through the `op_name` metadata of the compiled HLO, to one part of the update: the loss's backward
  pass (`transpose(jvp(...))`), its forward pass (`jvp(...)`), random numbers (threefry hashing:
  keys, action sampling, gymnax's own reset draws), the environment's step, the networks outside the
  loss (the rollout's actor, the critic on `next_obs`), and the rest (optimiser, returns, metrics,
  loop). Times are each kernel's own time (nested kernels, such as a loop's body, are subtracted
  from their parent), summed over threads, per update.
- **gradient floor**: the loss's gradient alone, on one rollout's batch already in memory (no
  environment, no rollout, no optimiser), per update: no trainer built from these networks and
  this loss can update faster.
- **compile**: lowering and compile seconds of the whole run, and how many kernels XLA compiled
  (fusions): on the CPU each costs several milliseconds of compile whatever its size.

Prints a markdown table, writes `benchmarks/results/breakdown[_quick].json`.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
import time
from typing import Any

import common

NUM_ENVS = (8, 512, 2048)
QUICK_NUM_ENVS = (8, 2048)
PARTS = (
    "loss backward",
    "loss forward",
    "random numbers",
    "environment step",
    "networks outside the loss",
    "rest",
)
_RANDOM = ("threefry", "_uniform", "_gumbel", "random_bits", "_normal", "random_split")


def part_of(op_name: str) -> str:
    """The part of an update an HLO instruction belongs to, from its `op_name` metadata."""
    if "transpose(jvp(" in op_name:
        return "loss backward"
    if "jvp(" in op_name:
        return "loss forward"
    if any(name in op_name for name in _RANDOM):
        return "random numbers"
    if "vmap(jit(step))" in op_name or "step_env" in op_name or "reset_env" in op_name:
        return "environment step"
    if "ActorCritic" in op_name:
        return "networks outside the loss"
    return "rest"


def self_times(events: list[dict[str, Any]]) -> dict[str, float]:
    """Each complete ("X") event's own microseconds: its duration less that of the events nested
    in it on the same thread, summed by name."""
    by_thread: dict[Any, list[dict[str, Any]]] = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_thread[(e.get("pid"), e.get("tid"))].append(e)
    totals: dict[str, float] = collections.Counter()
    for thread in by_thread.values():
        thread.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list[Any]] = []  # [end, name, own time]
        for e in thread:
            start, end = e["ts"], e["ts"] + e["dur"]
            while stack and stack[-1][0] <= start:
                _, name, own = stack.pop()
                totals[name] += own
            if stack:
                stack[-1][2] -= e["dur"]
            stack.append([end, e["name"], e["dur"]])
        for _, name, own in stack:
            totals[name] += own
    return totals


def breakdown_child(num_envs: int, updates: int, env_name: str) -> dict[str, Any]:
    import functools

    import jax

    import a3c_jax
    from a3c_jax import envs
    from a3c_jax.algorithms.actor_critic import nstep_collect, nstep_loss
    from a3c_jax.algorithms.networks import make_networks
    from a3c_jax.training.loop import compiler_options

    base = a3c_jax.Config(env_name=env_name, algo="a2c")
    config = base.replace(num_envs=num_envs, total_timesteps=updates * num_envs * base.n_steps)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    options = compiler_options()  # a long run's (jit_train would take the short-run ones here)
    lowered = jax.jit(a3c_jax.make_train(config), compiler_options=options).lower(key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    hlo = compiled.as_text()
    op_names = dict(re.findall(r'%([\w.\-]+) = [^\n]*?op_name="([^"]*)"', hlo))
    fusions = len(re.findall(r"= \S+ fusion\(", hlo))

    jax.block_until_ready(compiled(key))
    start = time.perf_counter()
    jax.block_until_ready(compiled(key))
    run_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            jax.block_until_ready(compiled(key))
        (path,) = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    parts: dict[str, float] = dict.fromkeys(PARTS, 0.0)
    for name, own_us in self_times(events).items():
        if name in op_names:
            parts[part_of(op_names[name])] += own_us / 1e3 / updates

    # The gradient floor: the loss's gradient on one rollout's batch, `updates` times in a scan.
    spec = envs.make_env(env_name)
    networks = make_networks(config, spec)
    params = networks.init(key)
    carry = envs.reset(spec, key, num_envs)
    _, traj, next_values = jax.jit(functools.partial(nstep_collect, spec, networks, config))(
        params, carry, key
    )
    loss_fn = functools.partial(nstep_loss, config=config, networks=networks)

    def gradients(params):
        def body(params, _):
            grads, _ = jax.grad(loss_fn, has_aux=True)(params, traj, next_values)
            return jax.tree.map(lambda p, g: p - 1e-6 * g, params, grads), None

        return jax.lax.scan(body, params, None, updates)[0]

    floor = jax.jit(gradients, compiler_options=options)
    jax.block_until_ready(floor(params))
    floor_runs = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(floor(params))
        floor_runs.append(time.perf_counter() - start)
    return {
        "env": env_name,
        "num_envs": num_envs,
        "batch": config.batch_size,
        "updates": updates,
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "fusions": fusions,
        "run_ms_per_update": 1e3 * run_s / updates,
        "steps_per_s": updates * config.batch_size / run_s,
        "parts_ms_per_update": parts,
        "gradient_floor_ms_per_update": 1e3 * min(floor_runs) / updates,
        "device": jax.devices()[0].device_kind,
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r.get("num_envs", "?"), "error", *["-"] * (len(PARTS) + 5)])
            continue
        parts = r["parts_ms_per_update"]
        kernel_total = sum(parts.values())
        out.append(
            [
                r["num_envs"],
                f"{r['run_ms_per_update']:.3f}",
                f"{r['steps_per_s']:,.0f}",
                *(f"{parts[p]:.3f} ({100 * parts[p] / kernel_total:.0f}%)" for p in PARTS),
                f"{r['gradient_floor_ms_per_update']:.3f}",
                f"{r['batch'] / r['gradient_floor_ms_per_update'] * 1e3:,.0f}",
                f"{r['lower_s']:.2f} + {r['compile_s']:.2f}",
                r["fusions"],
            ]
        )
    header = [
        "num_envs",
        "ms / update",
        "steps/s",
        *(f"{p} ms" for p in PARTS),
        "gradient floor ms",
        "floor steps/s",
        "lower + compile s",
        "kernels compiled",
    ]
    return common.markdown_table(header, out, align="r" * len(header))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 sizes, fewer updates")
    parser.add_argument("--num-envs", type=int, nargs="+", default=None)
    parser.add_argument("--updates", type=int, default=None, help="updates per profiled run")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    updates = args.updates or (20 if args.quick else 50)
    if args.child is not None:
        common.emit(breakdown_child(args.child, updates, args.env))
        return

    sizes = args.num_envs or (QUICK_NUM_ENVS if args.quick else NUM_ENVS)
    machine = common.machine_info()
    rows, loads = [], []
    for num_envs in sizes:
        loads.append(common.load_average())
        command = [__file__, "--child", str(num_envs), "--updates", str(updates), "--env", args.env]
        row = common.run_child(command, timeout=900)
        row.setdefault("num_envs", num_envs)
        rows.append(row)
        if "error" in row:
            print(f"  num_envs={num_envs}: {row['error']}", flush=True)
        else:
            print(
                f"  num_envs={num_envs}: {row['run_ms_per_update']:.3f} ms/update, gradient "
                f"floor {row['gradient_floor_ms_per_update']:.3f} ms, {row['fusions']} kernels",
                flush=True,
            )
    loads.append(common.load_average())
    title = (
        f"Where an update's time goes, a2c on {args.env} ({machine['device']}, "
        f"{machine['cores']} cores, {machine['cpu']}; kernel times per update from one profiled "
        f"run of {updates} updates; {common.contention_note(loads, machine['cores'])})"
    )
    tables = f"{title}\n\n{table(rows)}\n"
    print("\n" + tables)
    common.save_results("breakdown", args, {"machine": machine, "rows": rows, "tables": tables})


if __name__ == "__main__":
    main()
