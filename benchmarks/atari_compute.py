"""A3C on Atari against the compute limit of this CPU: the networks' multiply-adds per agent step,
what XLA's CPU convolutions reach on them, the agent steps per second that leaves, and what A3C
on Pong reaches with each network (and where a worker's step goes).

    python benchmarks/atari_compute.py --quick      # small budgets: a check
    python benchmarks/atari_compute.py              # the figures

Networks: the A3C paper's (`torso="a3c_cnn"`, one torso shared by the policy and value heads,
the Atari preset) and the Nature DQN torso (`torso="nature_cnn"`, a torso each for actor and
critic: the library's default before the preset). For each:

- **multiply-adds** per agent step, from the layers' shapes (84x84x4 frames), for the policy step
  (one forward pass) and for the update (forward and backward, counted as 3 forward passes, per
  agent step of the rollout); XLA's own count of floating-point operations beside them;
- **the convolutions alone**: the jitted forward pass at the worker's batch (1 frame) and the
  update's forward-and-backward at its batch (`n_steps` frames), timed, as GFLOP/s;
- **the compute limit**: agent steps per second one core would reach if a worker did nothing but
  these two computations (policy step + 1/n_steps of the update per agent step);
- **A3C on Pong**: agent steps per second of `a3c_jax.train` with 1 and 2 workers on this machine
  (compile apart), and the time split of one worker's step: the emulator (Gymnasium's
  AtariPreprocessing and frame stack, random actions), the policy call, the gradient.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import common

PONG = "gymnasium:ALE/Pong-v5"
FRAME = (84, 84, 4)


def conv_macs(layers: Any, hidden: int, frame: tuple[int, int, int] = FRAME) -> int:
    """Multiply-adds of one forward pass of a strided torso over one frame (VALID padding)."""
    h, w, c = frame
    macs = 0
    for filters, size, stride in layers:
        h, w = (h - size) // stride + 1, (w - size) // stride + 1
        macs += h * w * filters * size * size * c
        c = filters
    return macs + h * w * c * hidden


def _median_seconds(fn: Any, *args: Any, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))  # compiled and warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def network_row(torso: str, repeats: int) -> dict[str, Any]:
    """Multiply-adds, XLA's FLOP count and timings of one network's policy step and update."""
    import jax
    import jax.numpy as jnp

    import a3c_jax
    from a3c_jax import envs
    from a3c_jax.algorithms import networks as nets

    shared = torso == "a3c_cnn"
    config = a3c_jax.Config(env_name=PONG, algo="a3c", torso=torso, shared_torso=shared)
    hidden = config.hidden_sizes[-1]
    spec = envs.make_env(PONG)
    net = nets.make_networks(config, spec)
    params = net.init(jax.random.PRNGKey(0))
    per_torso = conv_macs(nets.STRIDED_CNNS[torso], hidden)
    heads = hidden * (spec.num_actions + 1)
    forward_macs = per_torso * (1 if shared else 2) + heads
    n = config.n_steps

    def policy(params: Any, obs: jax.Array) -> jax.Array:
        dist, value = net.apply(params, obs)
        return dist.mode(), value

    def loss(params: Any, obs: jax.Array) -> jax.Array:
        dist, value = net.apply(params, obs)
        return jnp.sum(value**2) + jnp.sum(dist.entropy())

    step = jax.jit(policy)
    update = jax.jit(jax.grad(loss))
    one, batch = jnp.zeros((1, *FRAME)), jnp.zeros((n, *FRAME))
    flops_step = step.lower(params, one).compile().cost_analysis().get("flops", float("nan"))
    flops_update = update.lower(params, batch).compile().cost_analysis().get("flops", float("nan"))
    t_step = _median_seconds(step, params, one, repeats=repeats)
    t_update = _median_seconds(update, params, batch, repeats=repeats)
    per_agent_step = t_step + t_update / n
    return {
        "torso": torso,
        "shared_torso": shared,
        "params": int(sum(x.size for x in jax.tree.leaves(params))),
        "macs_policy_step": forward_macs,
        "macs_update_per_step": 3 * forward_macs,
        "xla_flops_policy_step": flops_step,
        "xla_flops_update_per_step": flops_update / n,
        "policy_step_ms": 1e3 * t_step,
        "update_ms": 1e3 * t_update,
        "gflops_policy_step": flops_step / t_step / 1e9,
        "gflops_update": flops_update / t_update / 1e9,
        "limit_steps_per_s": 1.0 / per_agent_step,
    }


def emulator_steps_per_second(steps: int) -> float:
    """Agent steps per second of Pong's preprocessed environment alone (random actions)."""
    import numpy as np

    from a3c_jax import envs

    env = envs.make_env(PONG).env()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return steps / seconds


def a3c_row(torso: str, workers: int, steps: int) -> dict[str, Any]:
    """`a3c_jax.train` of A3C on Pong with `workers` threads for `steps` agent steps."""
    import jax

    import a3c_jax

    shared = torso == "a3c_cnn"
    config = a3c_jax.Config(
        env_name=PONG, algo="a3c", torso=torso, shared_torso=shared, num_workers=workers,
        total_timesteps=steps,
    )  # fmt: skip
    result = a3c_jax.train(config, jax.random.PRNGKey(0)).extras
    return {
        "torso": torso,
        "workers": workers,
        "agent_steps": steps,
        "steps_per_s": result.env_steps_per_second,
        "cores_busy": result.cores_busy,
        "compile_s": result.compile_seconds,
        "wall_s": result.wall_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets: a check")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", default=None, help="write the figures here instead")
    args = parser.parse_args()
    repeats, steps = (5, 400) if args.quick else (50, 4000)
    info = common.machine_info()
    networks = [network_row(torso, repeats) for torso in ("a3c_cnn", "nature_cnn")]
    emulator = emulator_steps_per_second(steps // 2)
    runs = [a3c_row(n["torso"], w, steps) for n in networks for w in args.workers]
    print(f"# A3C on Atari against the compute limit ({info['cpu']}, {info['cores']} cores)\n")
    print(
        common.markdown_table(
            ["torso", "parameters", "MACs policy step", "MACs update / step", "XLA FLOPs step",
             "step ms", "update ms", "GFLOP/s step", "GFLOP/s update", "limit steps/s/core"],
            [[n["torso"], f"{n['params']:,}", f"{n['macs_policy_step']:,}",
              f"{n['macs_update_per_step']:,}", f"{n['xla_flops_policy_step']:,.0f}",
              common.fmt(n["policy_step_ms"]), common.fmt(n["update_ms"]),
              common.fmt(n["gflops_policy_step"], ".1f"), common.fmt(n["gflops_update"], ".1f"),
              common.fmt(n["limit_steps_per_s"], ",.0f")] for n in networks],
        )
    )  # fmt: skip
    print(f"\nthe emulator alone (preprocessed Pong, random actions): {emulator:,.0f} steps/s\n")
    limits = {n["torso"]: n["limit_steps_per_s"] for n in networks}
    for r in runs:  # the limit of as many cores as the workers can use
        r["of_limit"] = r["steps_per_s"] / (limits[r["torso"]] * min(r["workers"], info["cores"]))
    print(
        common.markdown_table(
            ["torso", "workers", "agent steps/s", "of the limit x workers", "cores busy",
             "compile s"],
            [[r["torso"], r["workers"], common.fmt(r["steps_per_s"], ",.0f"),
              common.fmt(r["of_limit"], ".2f"),
              common.fmt(r["cores_busy"]), common.fmt(r["compile_s"])] for r in runs],
        )
    )  # fmt: skip
    data = {"machine": info, "networks": networks, "emulator_steps_per_s": emulator, "a3c": runs}
    common.save_results("atari_compute", args, data)


if __name__ == "__main__":
    main()
