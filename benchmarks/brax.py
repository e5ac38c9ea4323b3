"""Brax environments: throughput against `num_envs`, compile time, and the return after a fixed
budget beside Brax's own PPO trainer on the same environment, backend and budget.

    python benchmarks/brax.py                  # num_envs 16 ... 4096; inverted_pendulum 1M steps
    python benchmarks/brax.py --quick          # num_envs 16, 256; smaller budgets
    python benchmarks/brax.py --envs inverted_pendulum reacher --budget 1000000

Every measurement runs in a fresh process (compile times are cold, `common.run_child`):

- **throughput** (`--num-envs`): `make_train` of the `brax:<env>` a2c preset with that many
  environments (lower + compile seconds apart, then the median run over `--repeats`), and beside
  it the same rollout (`a3c_jax.algorithms.rollout.rollout`) with a uniform random policy and no
  learning: how fast the environment itself steps here (as `throughput.py` does for gymnax);
- **return after a budget** (`--envs`, `--budget` environment steps per seed): a3c_jax's a2c
  (the environment's preset, else inverted_pendulum's) over `--seeds` seeds at once (`vmap`),
  evaluated greedily over 10 episodes per seed; and `brax.training.agents.ppo.train` with the
  hyperparameters Brax publishes for the environment (its training notebook), on the same
  physics backend, time limit and number of environment steps, evaluated deterministically by
  Brax (128 episodes). Wall-clock seconds are the whole training call, compile included (for
  a3c_jax its compile apart).

Prints markdown tables, writes `benchmarks/results/brax[_quick].json`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import common

# This file is named like the library it measures: with its folder first on `sys.path`,
# `import brax` (ours, through `a3c_jax.envs.brax_envs`, and Brax's PPO) would find it instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

NUM_ENVS = (16, 64, 256, 1024, 4096)
QUICK_NUM_ENVS = (16, 256)
# Brax's published PPO hyperparameters (brax/training/learner notebook), per environment.
BRAX_PPO: dict[str, dict[str, Any]] = {
    "inverted_pendulum": dict(
        reward_scaling=10,
        normalize_observations=True,
        unroll_length=5,
        num_minibatches=32,
        num_updates_per_batch=4,
        discounting=0.97,
        learning_rate=3e-4,
        entropy_cost=1e-2,
        num_envs=2048,
        batch_size=1024,
    ),
    "reacher": dict(
        reward_scaling=5,
        normalize_observations=True,
        action_repeat=4,
        unroll_length=50,
        num_minibatches=32,
        num_updates_per_batch=8,
        discounting=0.95,
        learning_rate=3e-4,
        entropy_cost=1e-3,
        num_envs=2048,
        batch_size=256,
    ),
    "hopper": dict(
        reward_scaling=10,
        normalize_observations=True,
        unroll_length=20,
        num_minibatches=32,
        num_updates_per_batch=8,
        discounting=0.97,
        learning_rate=3e-4,
        entropy_cost=1e-3,
        num_envs=2048,
        batch_size=512,
    ),
}


def _config(env: str, **changes: Any):
    import a3c_jax
    from a3c_jax.config import presets

    name = f"brax:{env}"
    # Config applies an environment's own preset; without one, inverted_pendulum's settings.
    tuned = (name, "a2c") in presets.ENV_PRESETS
    preset = {} if tuned else presets.ENV_PRESETS[("brax:inverted_pendulum", "a2c")]
    return a3c_jax.Config(env_name=name, algo="a2c", **{**preset, **changes})


def throughput_child(env: str, num_envs: int, min_steps: int, repeats: int) -> dict:
    import jax

    import a3c_jax
    from a3c_jax.algorithms import build

    base = _config(env)
    updates = max(5, min_steps // (num_envs * base.n_steps))
    config = base.replace(num_envs=num_envs, total_timesteps=updates * num_envs * base.n_steps)
    spec = build.env_spec(config)
    steps = config.num_updates * config.batch_size
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    lowered = jax.jit(a3c_jax.make_train(config)).lower(key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    train_runs = _time_runs(compiled, key, repeats)

    # The same rollout with a uniform random policy, no learning.
    random_run = common.random_rollout_run(spec, num_envs, config.n_steps, config.num_updates)

    r0 = time.perf_counter()
    random_compiled = jax.jit(random_run).lower(key).compile()
    r1 = time.perf_counter()
    random_runs = _time_runs(random_compiled, key, repeats)
    train_s, random_s = statistics.median(train_runs), statistics.median(random_runs)
    return {
        "env": env,
        "num_envs": num_envs,
        "env_steps": steps,
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "train_s": train_s,
        "train_steps_per_s": steps / train_s,
        "random_compile_s": r1 - r0,
        "random_steps_per_s": steps / random_s,
        "load": common.load_average(),
    }


def _time_runs(compiled, key, repeats: int) -> list[float]:
    import jax

    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(key))
        runs.append(time.perf_counter() - start)
    return runs


def ours_child(env: str, budget: int, seeds: int) -> dict:
    import jax
    import numpy as np

    import a3c_jax

    config = _config(env, total_timesteps=budget)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    t0 = time.perf_counter()
    lowered = a3c_jax.jit_train(config, num_seeds=seeds).lower(keys)
    compiled = lowered.compile()
    t1 = time.perf_counter()
    result = jax.block_until_ready(compiled(keys))
    t2 = time.perf_counter()
    a3c_jax.check_finite(result)
    per_seed = []
    for i in range(seeds):
        params = jax.tree.map(lambda x, i=i: x[i], result.params)
        returns = a3c_jax.evaluate(config, params, jax.random.PRNGKey(1000 + i), 10)
        per_seed.append(float(np.mean(returns)))
    return {
        "env": env,
        "trainer": "a3c_jax a2c",
        "budget": budget,
        "seeds": seeds,
        "return": float(np.mean(per_seed)),
        "per_seed": per_seed,
        "compile_s": t1 - t0,
        "seconds": t2 - t0,
        "num_envs": config.num_envs,
        "backend": config.brax_backend,
        "load": common.load_average(),
    }


def brax_ppo_child(env: str, budget: int, seeds: int, backend: str) -> dict:
    import contextlib
    import io
    import warnings

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brax import envs
        from brax.training.agents.ppo import train as ppo

        environment = envs.get_environment(env, backend=backend)
    _put_back_device_put_replicated()
    returns, seconds = [], []
    for seed in range(seeds):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, _, metrics = ppo.train(
                environment=environment,
                num_timesteps=budget,
                episode_length=1000,
                num_evals=2,
                deterministic_eval=True,
                seed=seed,
                **BRAX_PPO[env],
            )
        seconds.append(time.perf_counter() - t0)
        returns.append(float(metrics["eval/episode_reward"]))
    return {
        "env": env,
        "trainer": "Brax PPO",
        "budget": budget,
        "seeds": seeds,
        "return": float(sum(returns) / len(returns)),
        "per_seed": returns,
        "seconds": sum(seconds) / len(seconds),
        "compile_s": None,
        "num_envs": BRAX_PPO[env]["num_envs"],
        "backend": backend,
        "load": common.load_average(),
    }


def _put_back_device_put_replicated() -> None:
    """Brax 0.14's PPO calls `jax.device_put_replicated`, which newer JAX removed: a stand-in
    (stack one copy per device, put it on the devices) for this process only."""
    import jax
    import jax.numpy as jnp

    try:
        jax.device_put_replicated  # noqa: B018
    except AttributeError:

        def replicated(x: Any, devices: list) -> Any:
            stacked = jax.tree.map(lambda a: jnp.stack([a] * len(devices)), x)
            sharding = jax.sharding.PositionalSharding(devices) if len(devices) > 1 else None
            return jax.device_put(stacked, sharding or devices[0])

        jax.device_put_replicated = replicated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num-envs", type=int, nargs="*", default=None)
    parser.add_argument("--envs", nargs="*", default=["inverted_pendulum"])
    parser.add_argument("--budget", type=int, default=None, help="env steps per seed")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-brax-ppo", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", nargs="*", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        child = {"throughput": throughput_child, "ours": ours_child, "ppo": brax_ppo_child}[kind]
        common.emit(child(rest[0], *[int(r) if r.isdigit() else r for r in rest[1:]]))
        return
    num_envs = args.num_envs or (QUICK_NUM_ENVS if args.quick else NUM_ENVS)
    budget = args.budget or (200_000 if args.quick else 1_000_000)
    min_steps = 50_000 if args.quick else 200_000
    script = __file__
    info = common.machine_info()
    loads = [info["load_average_1min"]]
    rows = []
    for n in num_envs:
        job = ["throughput", "inverted_pendulum", str(n), str(min_steps), str(args.repeats)]
        row = common.run_child([script, "--child", *job])
        rows.append({"num_envs": n, **row})
        loads.append(row.get("load", float("nan")))
        print(row, file=sys.stderr, flush=True)
    learning = []
    for env in args.envs:
        backend = _default_backend()
        jobs = [["ours", env, str(budget), str(args.seeds)]]
        if not args.no_brax_ppo:
            jobs.append(["ppo", env, str(budget), str(args.seeds), backend])
        for job in jobs:
            row = common.run_child([script, "--child", *job])
            learning.append({"env": env, "trainer": job[0], **row})
            loads.append(row.get("load", float("nan")))
            print(row, file=sys.stderr, flush=True)
    print(f"\n{info['cpu']}, {info['cores']} cores, jax {info['jax']} ({info['backend']})")
    print(common.contention_note(loads))
    print("\n" + throughput_table(rows))
    print("\n" + learning_table(learning))
    args.png = None
    common.save_results("brax", args, {"machine": info, "throughput": rows, "learning": learning})


def _default_backend() -> str:
    from a3c_jax.config import presets

    return presets.DEFAULTS["brax_backend"]


def throughput_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["num_envs"], "error", "-", "-", "-", "-"])
            continue
        out.append(
            [
                r["num_envs"],
                f"{r['env_steps']:,}",
                f"{r['lower_s']:.1f} + {r['compile_s']:.1f}",
                f"{r['train_steps_per_s']:,.0f}",
                f"{r['random_steps_per_s']:,.0f}",
                f"{r['random_compile_s']:.1f}",
            ]
        )
    header = [
        "num_envs",
        "env steps",
        "a2c lower + compile s",
        "a2c train steps/s",
        "random-policy steps/s",
        "random compile s",
    ]
    return common.markdown_table(header, out)


def learning_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["env"], r["trainer"], "error: " + r["error"].splitlines()[0], *"-----"])
            continue
        per_seed = ", ".join(f"{x:.0f}" for x in r["per_seed"])
        out.append(
            [
                r["env"],
                r["trainer"],
                f"{r['budget']:,}",
                r["num_envs"],
                f"{r['return']:.1f} ({per_seed})",
                f"{r['seconds']:.0f}",
                common.fmt(r["compile_s"], ".0f"),
            ]
        )
    header = ["env", "trainer", "env steps", "num_envs", "return (per seed)", "s", "compile s"]
    return common.markdown_table(header, out, align="llrrrrr")


if __name__ == "__main__":
    main()
