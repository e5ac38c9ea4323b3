"""A3C's workers as threads against Ray actors (`workers="ray"`), with both of Ray's
parallelisms, on Gymnasium's CartPole-v1.

    python benchmarks/ray_workers.py                 # 1, 2 and 4 workers, 2 seeds
    python benchmarks/ray_workers.py --quick         # 1 and 2 workers, 1 seed, a short budget
    python benchmarks/ray_workers.py --json out.json # somewhere else than benchmarks/results/

Each run is a fresh process (`common.run_child`; a Ray run starts its own local Ray instance
there, with as many CPUs as workers), contestants interleaved seed by seed so that a busy moment
of the machine touches all of them alike. Every contestant trains the same config (`algo="a3c"`,
4 environments per worker, t_max = 5, shared RMSprop) for the same budget and reports:

- environment steps/s over the training loop (`AsyncResult.env_steps_per_second`);
- the cost per update in ms: wall-clock over updates applied, times the workers (the time one
  worker's round trip takes: rollout, gradient or trajectory, transfer, apply);
- the learner's busy fraction (Ray only: `learner_seconds / wall_seconds`, the deck's "central
  process bottleneck", measured);
- updates to solve: the first update after which the mean episode return of the latest 20
  updates that finished an episode reaches 475 (none if never), and its wall-clock seconds
  from the workers' start;
- the greedy return of the final parameters over 10 episodes.

Prints a markdown table and writes `benchmarks/results/ray_workers[_quick].json` with the machine,
date, command and commit. Figures taken while the machine is busy are marked CONTENDED.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque

import common

ENV = "gymnasium:CartPole-v1"
NUM_ENVS = 4
THRESHOLD, WINDOW = 475.0, 20


def child(backend: str, parallelism: str, workers: int, steps: int, seed: int) -> None:
    """One run in this process; emits its figures as one JSON line."""
    import jax
    import numpy as np

    import a3c_jax
    from a3c_jax.workers import trainers

    fields = {"env_name": ENV, "algo": "a3c", "num_workers": workers, "num_envs": NUM_ENVS}
    fields["total_timesteps"] = steps
    if backend == "ray":
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        fields |= {"workers": "ray", "parallelism": parallelism}
    config = a3c_jax.Config(**fields)
    start = time.perf_counter()
    result = trainers.train(config, jax.random.PRNGKey(seed))
    solved: tuple[int, float] | None = None
    recent: deque[float] = deque(maxlen=WINDOW)
    metrics = result.metrics
    for update, (ret, count) in enumerate(
        zip(metrics.episode_return, metrics.episodes, strict=True)
    ):
        if count > 0:
            recent.append(float(ret))
        if solved is None and len(recent) == WINDOW and np.mean(recent) >= THRESHOLD:
            solved = update + 1, float(result.async_metrics.wall_time[update])
    greedy = float(np.mean(a3c_jax.evaluate(config, result.params, num_episodes=10)))
    common.emit(
        {
            "backend": backend,
            "parallelism": parallelism if backend == "ray" else "gradients",
            "workers": workers,
            "seed": seed,
            "env_steps_per_second": result.env_steps_per_second,
            "ms_per_update": 1e3 * result.wall_seconds * workers / max(result.num_updates, 1),
            "learner_busy": result.learner_seconds / result.wall_seconds
            if backend == "ray"
            else None,
            "staleness_mean": result.staleness_mean,
            "updates_to_solve": solved[0] if solved else None,
            "seconds_to_solve": solved[1] if solved else None,
            "greedy_return": greedy,
            "compile_seconds": result.compile_seconds,
            "total_seconds": time.perf_counter() - start,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", nargs=5, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, parallelism, workers, steps, seed = args.child
        child(backend, parallelism, int(workers), int(steps), int(seed))
        return
    steps = args.steps or (40_000 if args.quick else 150_000)
    seeds = args.seeds or (1 if args.quick else 2)
    worker_counts = (1, 2) if args.quick else (1, 2, 4)
    contestants = [("threads", "gradients"), ("ray", "gradients"), ("ray", "data")]
    info = common.machine_info()
    rows, loads = [], []
    for seed in range(seeds):
        for workers in worker_counts:
            for backend, parallelism in contestants:
                loads.append(common.load_average())
                child_args = [backend, parallelism, str(workers), str(steps), str(seed)]
                out = common.run_child([__file__, "--child", *child_args], timeout=1800)
                out.setdefault("backend", backend)
                out.setdefault("parallelism", parallelism)
                out.setdefault("workers", workers)
                out.setdefault("seed", seed)
                rows.append(out)
                print(out, file=sys.stderr, flush=True)
    loads.append(common.load_average())
    note = common.contention_note(loads)
    header = ["backend", "parallelism", "workers", "seed", "env steps/s", "ms/update"]
    header += ["learner busy", "staleness", "updates to solve", "s to solve", "greedy"]
    table = [
        [
            r["backend"],
            r["parallelism"],
            r["workers"],
            r["seed"],
            common.fmt(r.get("env_steps_per_second"), ",.0f"),
            common.fmt(r.get("ms_per_update"), ".2f"),
            common.fmt(r.get("learner_busy"), ".2f"),
            common.fmt(r.get("staleness_mean"), ".2f"),
            r.get("updates_to_solve") or "-",
            common.fmt(r.get("seconds_to_solve"), ".1f"),
            common.fmt(r.get("greedy_return"), ".0f") if "error" not in r else r["error"][:60],
        ]
        for r in rows
    ]
    print(f"\n{ENV}, {NUM_ENVS} environments per worker, {steps:,} steps; {note}\n")
    print(common.markdown_table(header, table))
    data = {"machine": info, "note": note, "env": ENV, "num_envs": NUM_ENVS, "steps": steps}
    common.save_results("ray_workers", args, data | {"runs": rows})


if __name__ == "__main__":
    main()
