"""Training throughput against `num_envs`, beside the environment's own speed, memory and FLOPs.

    python benchmarks/throughput.py            # num_envs 1 ... 16384, median of 5 runs each
    python benchmarks/throughput.py --quick    # num_envs 1, 64, 2048, 16384; 2 runs each

For each `num_envs` (CartPole-v1, `a2c` defaults otherwise: 8 steps per rollout, separate 64x64
tanh actor and critic), in a fresh process:

- **training**: `make_train(config)` over at least `--min-steps` environment steps (20 updates at
  the least, 2000 at the most), compiled with the options of a long run
  (`a3c_jax.training.loop.compiler_options()`: on the CPU, XLA's fusion emitters, whose kernels run
  faster; `jit_train` compiles runs of up to a million steps with the older emitter, which
  compiles in about half the time); lower (trace) and compile seconds apart, median run seconds
  over repeats, environment steps per second;
- **random policy**: the same rollout (`a3c_jax.algorithms.rollout.rollout`, `n_steps` per
  iteration, as many iterations as updates) with a uniform random policy and no learning: how fast
  the environment itself steps here, the ceiling of any trainer's throughput;
- **memory**: the process's peak resident memory after training (`resource.getrusage`; it includes
  the JAX runtime, see the baseline column), XLA's own buffer plan for the compiled run
  (`compiled.memory_analysis()`: arguments + outputs + temporaries) and, on accelerators that
  report it, the device's peak bytes in use (`device.memory_stats()`);
- **FLOPs** of one training step (per environment step): counted analytically from the network
  sizes (matmuls only: the rollout's actor forward pass, the critic's pass on the `next_obs` the
  returns read, the loss's actor and critic forward and backward passes) and by XLA for one
  compiled update (`compiled.cost_analysis()["flops"]`, everything, divided by the batch);
  achieved FLOP/s is steps/s times the analytic count, and its fraction of the machine's
  ceiling divides by the best rate of a large `jnp.dot` (float32, default precision) measured
  in the same run.

Prints a markdown table, writes `benchmarks/results/throughput[_quick].json` and `.png`.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from typing import Any

import common

NUM_ENVS = (1, 8, 64, 512, 2048, 4096, 16384)
QUICK_NUM_ENVS = (1, 64, 2048, 16384)
TARGET_NUM_ENVS, TARGET_STEPS_PER_S = 2048, 2_000_000  # issue 7's target on the 2-core CPU


def dense_flops(sizes: list[int]) -> tuple[int, int]:
    """Forward and backward matmul FLOPs per sample of dense layers `sizes[0] -> ... -> sizes[-1]`.

    Forward: `2 · in · out` per layer. Backward: the weight gradient (`2 · in · out`) for every
    layer and the input gradient (`2 · in · out`) for every layer but the first (the observation
    needs none).
    """
    layers = list(itertools.pairwise(sizes))
    forward = sum(2 * a * b for a, b in layers)
    backward = forward + sum(2 * a * b for a, b in layers[1:])
    return forward, backward


def network_flops(config, spec) -> dict[str, int]:
    """Matmul FLOPs per sample of the torso and the heads, forward and backward.

    MLP torso: `prod(obs_shape) -> hidden_sizes`. CNN torso: the 3x3 VALID convolution as patches
    (`(H-2)(W-2)` positions of a `[9C, channels]` matmul), then the dense layers. Heads: `hidden ->
    num_actions` (actor), `hidden -> 1` (critic); their backward pass is the weight gradient and the
    input gradient, twice the forward.
    """
    obs = spec.obs_shape
    if config.torso == "cnn" or (config.torso == "auto" and len(obs) == 3):
        h, w, c = obs
        positions = (h - 2) * (w - 2)
        conv = 2 * positions * 9 * c * config.cnn_channels  # backward: weight gradient only
        dense_in = [positions * config.cnn_channels, *config.hidden_sizes]
        d_f, d_b = dense_flops(dense_in)
        # the dense part's first layer needs its input gradient too (the conv is below it)
        torso_f, torso_b = conv + d_f, conv + d_b + 2 * dense_in[0] * dense_in[1]
    else:
        torso_f, torso_b = dense_flops([math.prod(obs), *config.hidden_sizes])
    width = config.hidden_sizes[-1]
    return {
        "torso_forward": torso_f,
        "torso_backward": torso_b,
        "actor_head_forward": 2 * width * spec.num_actions,
        "critic_head_forward": 2 * width,
    }


def training_flops_per_step(config, spec) -> dict[str, int]:
    """Analytic matmul FLOPs per environment step of one `a2c` update (see `network_flops`):
    the rollout's actor pass, the critic's pass on the `next_obs` the returns read (`2B` of
    them per rollout of `T·B` steps, `actor_critic.bootstrap_values`), and the loss's forward and
    backward passes through both networks (one torso if `shared_torso`)."""
    f = network_flops(config, spec)
    heads_f = f["actor_head_forward"] + f["critic_head_forward"]
    torsos = 1 if config.shared_torso else 2
    rollout = f["torso_forward"] + f["actor_head_forward"]  # a ~ π(·|s_t)
    # V(next_obs) at truncations and after the last step: 2 of every n_steps steps.
    bootstrap = (f["torso_forward"] + f["critic_head_forward"]) * 2 // config.n_steps
    loss_forward = torsos * f["torso_forward"] + heads_f
    loss_backward = torsos * f["torso_backward"] + 2 * heads_f
    return {
        "rollout_actor_forward": rollout,
        "critic_on_next_obs": bootstrap,
        "loss_forward": loss_forward,
        "loss_backward": loss_backward,
        "total": rollout + bootstrap + loss_forward + loss_backward,
    }


def _time_runs(compiled, args: tuple, repeats: int) -> list[float]:
    import jax

    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - start)
    return runs


def throughput_child(num_envs: int, min_steps: int, repeats: int, env_name: str) -> dict:
    import jax
    import jax.numpy as jnp

    import a3c_jax
    from a3c_jax import envs
    from a3c_jax.training.loop import compiler_options

    jax.block_until_ready(jnp.zeros(()) + 1)
    baseline_rss = common.current_rss_mb()
    base = a3c_jax.Config(env_name=env_name, algo="a2c")
    updates = min(2000, max(20, min_steps // (num_envs * base.n_steps)))
    config = base.replace(num_envs=num_envs, total_timesteps=updates * num_envs * base.n_steps)
    spec = envs.make_env(env_name)
    steps = config.num_updates * config.batch_size
    key = jax.random.PRNGKey(0)

    # Training, compiled as a long run is (`compiler_options()`: XLA's fusion emitters on the CPU;
    # `jit_train` would pick the faster-to-compile options for these short measured runs).
    options = compiler_options()
    t0 = time.perf_counter()
    lowered = jax.jit(a3c_jax.make_train(config), compiler_options=options).lower(key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    train_runs = _time_runs(compiled, (key,), repeats)
    train_peak_rss = common.peak_rss_mb()
    memory = compiled.memory_analysis()
    xla_bytes = None
    if memory is not None:
        xla_bytes = (
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        )
    device_stats = jax.devices()[0].memory_stats() or {}

    # XLA's count for one update.
    trainer = a3c_jax.make_trainer(config)
    runner = jax.eval_shape(trainer.init, key)
    one_update = (
        jax.jit(lambda r: trainer.run(r, 1), compiler_options=options).lower(runner).compile()
    )
    cost = one_update.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")

    # The same rollout with a uniform random policy, no learning.
    random_run = common.random_rollout_run(spec, num_envs, config.n_steps, config.num_updates)

    r0 = time.perf_counter()
    random_compiled = jax.jit(random_run, compiler_options=options).lower(key).compile()
    r1 = time.perf_counter()
    random_runs = _time_runs(random_compiled, (key,), repeats)

    train_s, random_s = statistics.median(train_runs), statistics.median(random_runs)
    flops = training_flops_per_step(config, spec)
    return {
        "env": env_name,
        "num_envs": num_envs,
        "n_steps": config.n_steps,
        "updates": config.num_updates,
        "env_steps": steps,
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "train_runs_s": train_runs,
        "train_s": train_s,
        "train_steps_per_s": steps / train_s,
        "random_compile_s": r1 - r0,
        "random_runs_s": random_runs,
        "random_s": random_s,
        "random_steps_per_s": steps / random_s,
        "train_over_random": random_s / train_s,
        "baseline_rss_mb": baseline_rss,
        "train_peak_rss_mb": train_peak_rss,
        "peak_rss_mb": common.peak_rss_mb(),
        "xla_buffer_mb": xla_bytes / 2**20 if xla_bytes is not None else None,
        "device_peak_mb": device_stats.get("peak_bytes_in_use", 0) / 2**20 or None,
        "flops_per_step_analytic": flops,
        "flops_per_step_xla": xla_flops / config.batch_size,
        "achieved_gflops": steps / train_s * flops["total"] / 1e9,
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
    }


def ceiling_child(size: int, repeats: int) -> dict:
    """The best rate of `jnp.dot` of two `[size, size]` float32 matrices (default precision)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    runs = _time_runs(dot, (a, b), repeats)
    flops = 2.0 * size**3
    return {
        "size": size,
        "runs_s": runs,
        "best_gflops": flops / min(runs) / 1e9,
        "median_gflops": flops / statistics.median(runs) / 1e9,
        "device": jax.devices()[0].device_kind,
    }


def table(rows: list[dict[str, Any]], ceiling_gflops: float | None) -> str:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r.get("num_envs", "?"), "error", *["-"] * 12])
            continue
        fraction = r["achieved_gflops"] / ceiling_gflops if ceiling_gflops else None
        out.append(
            [
                r["num_envs"],
                f"{r['env_steps']:,}",
                f"{r['lower_s']:.2f} + {r['compile_s']:.2f}",
                f"{r['train_s']:.3f}",
                f"{r['train_steps_per_s']:,.0f}",
                f"{r['random_steps_per_s']:,.0f}",
                f"{100 * r['train_over_random']:.1f}%",
                f"{r['flops_per_step_analytic']['total'] / 1e3:.1f}",
                f"{r['flops_per_step_xla'] / 1e3:.1f}",
                f"{r['achieved_gflops']:.1f}",
                common.fmt(None if fraction is None else 100 * fraction, ".1f") + "%",
                f"{r['train_peak_rss_mb']:.0f} ({r['baseline_rss_mb']:.0f})",
                common.fmt(r["xla_buffer_mb"], ".1f"),
                common.fmt(r["device_peak_mb"], ".1f"),
            ]
        )
    header = [
        "num_envs",
        "env steps",
        "lower + compile s",
        "run s",
        "train steps/s",
        "random-policy steps/s",
        "train / random",
        "kFLOP/step (analytic)",
        "kFLOP/step (XLA)",
        "GFLOP/s",
        "of ceiling",
        "peak RSS MiB (baseline)",
        "XLA buffers MiB",
        "device peak MiB",
    ]
    return common.markdown_table(header, out, align="r" * len(header))


def plot(rows: list[dict[str, Any]], path: str) -> bool:
    plt = common.matplotlib_pyplot()
    if plt is None:
        return False
    rows = [r for r in rows if "error" not in r]
    n = [r["num_envs"] for r in rows]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.3))
    ax.plot(n, [r["train_steps_per_s"] for r in rows], "o-", label="training (a2c)")
    ax.plot(n, [r["random_steps_per_s"] for r in rows], "s--", label="random policy, no learning")
    ax.scatter(
        [TARGET_NUM_ENVS], [TARGET_STEPS_PER_S], marker="*", s=150, color="red", label="target"
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("num_envs")
    ax.set_ylabel("environment steps per second")
    ax.set_title(f"{rows[0]['env']} on {rows[0]['device']}")
    ax.legend(fontsize=8)
    bx.plot(n, [r["train_peak_rss_mb"] for r in rows], "o-", label="peak RSS (process)")
    bx.plot(n, [r["xla_buffer_mb"] or 0 for r in rows], "s--", label="XLA buffers (compiled run)")
    if any(r["device_peak_mb"] for r in rows):
        bx.plot(n, [r["device_peak_mb"] or 0 for r in rows], "^:", label="device peak")
    bx.set_xscale("log", base=2)
    bx.set_yscale("log")
    bx.set_xlabel("num_envs")
    bx.set_ylabel("MiB")
    bx.set_title("memory")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 sizes, 2 runs, smaller budgets")
    parser.add_argument("--num-envs", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--min-steps", type=int, default=None)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--dot-size", type=int, default=None, help="matmul size for the ceiling")
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-ceiling", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    min_steps = args.min_steps or (200_000 if args.quick else 2_000_000)
    if args.child is not None:
        common.emit(throughput_child(args.child, min_steps, repeats, args.env))
        return
    if args.child_ceiling is not None:
        common.emit(ceiling_child(args.child_ceiling, max(repeats, 5)))
        return

    started = time.perf_counter()
    machine = common.machine_info()
    dot_size = args.dot_size or (2048 if machine["backend"] == "cpu" else 8192)
    ceiling = common.run_child([__file__, "--child-ceiling", str(dot_size)])
    rows = []
    loads = [machine["load_average_1min"]]
    for n in args.num_envs or (QUICK_NUM_ENVS if args.quick else NUM_ENVS):
        extra = ["--repeats", str(repeats), "--min-steps", str(min_steps), "--env", args.env]
        row = common.run_child([__file__, "--child", str(n), *extra])
        row.setdefault("num_envs", n)
        row["load_average_1min"] = common.load_average()
        loads.append(row["load_average_1min"])
        rows.append(row)
        if "error" in row:
            print(row["error"], flush=True)
        else:
            print(
                f"  num_envs={n}: train {row['train_steps_per_s']:,.0f} steps/s, random "
                f"{row['random_steps_per_s']:,.0f} steps/s",
                flush=True,
            )
    # The ceiling again at the end: the machine's load may have changed meanwhile.
    ceiling_end = common.run_child([__file__, "--child-ceiling", str(dot_size)])
    best = [c["best_gflops"] for c in (ceiling, ceiling_end) if "best_gflops" in c]
    ceiling_gflops = max(best) if best else None
    note = common.contention_note([*loads, common.load_average()])
    at_target = next(
        (r for r in rows if r.get("num_envs") == TARGET_NUM_ENVS and "error" not in r), None
    )
    lines = [
        f"Throughput, a2c on {args.env} ({machine['device']}, {machine['cores']} cores, "
        f"{machine['cpu']}; median of {repeats} runs; {note})",
        "",
        table(rows, ceiling_gflops),
        "",
        f"Ceiling: jnp.dot [{dot_size}, {dot_size}] float32, best of runs: "
        + (
            " and ".join(f"{g:.1f}" for g in best) + " GFLOP/s (start, end of the run)"
            if best
            else "not measured"
        ),
    ]
    if at_target:
        lines.append(
            f"Target {TARGET_STEPS_PER_S:,} training steps/s at {TARGET_NUM_ENVS} envs: "
            f"measured {at_target['train_steps_per_s']:,.0f} "
            f"({100 * at_target['train_steps_per_s'] / TARGET_STEPS_PER_S:.0f}% of the target); "
            f"the random policy steps {at_target['random_steps_per_s']:,.0f}/s there"
        )
    if rows and "flops_per_step_analytic" in rows[-1]:
        f = rows[-1]["flops_per_step_analytic"]
        lines.append(
            "Analytic FLOPs per environment step: " + ", ".join(f"{k} {v:,}" for k, v in f.items())
        )
    text = "\n".join(lines)
    print("\n" + text)
    common.save_results(
        "throughput",
        args,
        {
            "machine": machine,
            "contention": note,
            "ceiling": [ceiling, ceiling_end],
            "ceiling_gflops": ceiling_gflops,
            "throughput": rows,
            "tables": text,
            "wall_s": time.perf_counter() - started,
        },
        lambda path: plot(rows, path),
    )


if __name__ == "__main__":
    main()
