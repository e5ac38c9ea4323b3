"""Re-checks the tuned presets: trains each one and compares with what `presets.PRESET_RESULTS`
says it reaches.

    python benchmarks/check_presets.py                       # every preset (~10 min on 2 cores)
    python benchmarks/check_presets.py --only Acrobot-v1     # one environment
    python benchmarks/check_presets.py --only Acrobot-v1 --set lr=1e-3 total_timesteps=300000
                                                             # try other values (tuning)

For each (environment, algorithm) it trains the preset's seeds at once (`vmap`), evaluates each
seed greedily over `--episodes` episodes, and prints a markdown table: the recorded figure, the
measured mean over seeds (and the worst seed), the random policy's return, wall-clock seconds
(compile included), and whether the measurement reaches the recorded figure less the tolerance
(`PRESET_TOLERANCE` of the distance from the random policy's return). Exit code 1 if any fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def random_return(env_name: str, episodes: int) -> float:
    import jax
    import jax.numpy as jnp

    from a3c_jax import envs
    from a3c_jax.algorithms.rollout import stateless
    from a3c_jax.training.evaluation import play_episodes

    spec = envs.make_env(env_name)

    def policy(params, obs, key):
        del params
        if spec.discrete:
            return jax.random.randint(key, obs.shape[:1], 0, spec.num_actions)
        return jax.random.uniform(
            key, (obs.shape[0], spec.num_actions), minval=spec.action_low, maxval=spec.action_high
        )

    policy = stateless(policy)
    returns = jax.jit(lambda k: play_episodes(spec, policy, None, k, episodes))(
        jax.random.PRNGKey(123)
    )
    return float(jnp.mean(returns))


def train_and_evaluate(config, num_seeds: int, episodes: int) -> tuple[list[float], float, object]:
    """Trains `config` over `num_seeds` seeds at once (`jit_train`, keys `split(PRNGKey(0))`)
    and evaluates each seed greedily over `episodes` episodes (key `PRNGKey(1000 + i)`).

    Returns each seed's mean greedy return, the wall-clock seconds of the training (compile
    included) and the `TrainResult`. The scoreboard (`scores.py`) and this check share it."""
    import jax
    import numpy as np

    import a3c_jax

    t0 = time.perf_counter()
    train = a3c_jax.jit_train(config, num_seeds=num_seeds)
    result = jax.block_until_ready(train(jax.random.split(jax.random.PRNGKey(0), num_seeds)))
    seconds = time.perf_counter() - t0
    a3c_jax.check_finite(result)
    per_seed = []
    for i in range(num_seeds):
        params = jax.tree.map(lambda x, i=i: x[i], result.params)
        returns = a3c_jax.evaluate(config, params, jax.random.PRNGKey(1000 + i), episodes)
        per_seed.append(float(np.mean(returns)))
    return per_seed, seconds, result


def check(env_name: str, algo: str, overrides: dict, seeds: int | None, episodes: int) -> dict:
    import numpy as np

    import a3c_jax
    from a3c_jax.config import presets

    recorded = presets.PRESET_RESULTS.get((env_name, algo), {})
    num_seeds = seeds or recorded.get("seeds", 4)
    config = a3c_jax.Config(env_name=env_name, algo=algo, **overrides)
    per_seed, seconds, _ = train_and_evaluate(config, num_seeds, episodes)
    baseline = random_return(env_name, episodes)
    measured = float(np.mean(per_seed))
    target = recorded.get("return")
    ok = None
    if target is not None and not overrides:
        ok = measured >= target - presets.PRESET_TOLERANCE * abs(target - baseline)
    return {
        "env": env_name,
        "algo": algo,
        "seeds": num_seeds,
        "env_steps": config.total_timesteps,
        "recorded": target,
        "measured": measured,
        "worst_seed": min(per_seed),
        "per_seed": per_seed,
        "random": baseline,
        "seconds": seconds,
        "ok": ok,
        "overrides": overrides,
    }


def main() -> int:
    from a3c_jax.cli.args import parse_overrides
    from a3c_jax.config import presets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="environment names")
    parser.add_argument("--algo", nargs="*", default=None)
    parser.add_argument("--seeds", type=int, default=None, help="default: the recorded number")
    parser.add_argument("--episodes", type=int, default=20, help="greedy episodes per seed")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    rows = []
    print("| env | algo | seeds | env steps | recorded | measured (worst seed) | random | s | ok |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for env_name, algo in presets.PRESET_RESULTS:
        if args.only and env_name not in args.only:
            continue
        if args.algo and algo not in args.algo:
            continue
        row = check(env_name, algo, overrides, args.seeds, args.episodes)
        rows.append(row)
        recorded = "-" if row["recorded"] is None else f"{row['recorded']:.1f}"
        ok = {None: "n/a", True: "yes", False: "**NO**"}[row["ok"]]
        print(
            f"| {env_name} | {algo} | {row['seeds']} | {row['env_steps']:,} | {recorded} | "
            f"{row['measured']:.1f} ({row['worst_seed']:.1f}) | {row['random']:.1f} | "
            f"{row['seconds']:.0f} | {ok} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 1 if any(row["ok"] is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
