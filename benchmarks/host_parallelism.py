"""Host environments: A3C threads against host A2C (sync and async vector environments),
Stable-Baselines3's A2C and the gymnax-native trainer, on Gymnasium CartPole-v1.

    python benchmarks/host_parallelism.py            # 2 seeds each
    python benchmarks/host_parallelism.py --quick    # 1 seed, 1 and 2 workers / environments
    python benchmarks/host_parallelism.py --atari    # Pong instead: steps/s and cores busy
    python benchmarks/host_parallelism.py --env-threads 5   # environments alone, 1/2/4 threads

Each run is a fresh process (`common.run_child`), contestants interleaved seed by seed so that a
busy moment of the machine touches all of them alike:

- **host A3C, W workers** (`algo="a3c"`, `num_workers=W`): its CartPole defaults (one environment
  per worker, t_max = 5, shared RMSprop 3e-3), each worker thread stepping its own Gymnasium
  CartPole-v1 (`a3c_jax.train_async`).
- **host A2C, sync / async, W environments** (`algo="a2c"`, `num_envs=W`, `vector_env`): the
  preset of `gymnasium:CartPole-v1` (the CartPole defaults, 8 steps per rollout, Adam 3e-3, with
  the gradient's norm clipped at 1) over a Gymnasium vector environment stepped
  in the learner's thread (sync) or with one process per environment (async); also the default
  8 environments, sync (`a3c_jax.train_host`).
- **SB3 A2C**: Stable-Baselines3's `A2C` with the RL Zoo's CartPole-v1 hyperparameters and one
  torch thread (`vs_pytorch.py`'s baseline), learning curve recorded.
- **gymnax a2c**: the gymnax-native `a2c` on gymnax's CartPole-v1 (the same dynamics in XLA),
  cold compilation cache (`vs_pytorch.py`'s runner, `time_to_solve.py --child-solve`).

One criterion for all: solved when the mean return of the latest 20 finished training episodes
reaches 475 (from the 20th episode on: `time_to_solve.solving_curve`). Host runs train up to a
budget (`--steps`, the defaults' 200k, over which their learning rate anneals) or a time cap
(`--max-seconds`, every contestant's). A3C and sync A2C runs stop once the latest 20 episodes of
their in-process environments average 475 (as SB3's does); async A2C runs (environments in other
processes) play on to the budget or the cap. A host run's time to solve is read off its
wall-clock at each update's commit, counted from the call that builds the learner (networks,
compile, environments; imports apart) as for the others; what runs after training (the result's
assembly, the greedy evaluation) is not in it, as it is not in SB3's. Environment steps/s and
cores busy (process CPU time, with the async vector environment's processes, over wall-clock)
are over the training loop. The greedy return of the final parameters (20 episodes) is reported
beside.

Prints markdown tables, writes `benchmarks/results/host_parallelism[_quick].json` and `.png` (the
wall-clock learning curves of seed 0).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from typing import Any

import common
import numpy as np
import vs_pytorch

THRESHOLD = vs_pytorch.THRESHOLD
WINDOW_EPISODES = vs_pytorch.WINDOW_EPISODES
ENV = "gymnasium:CartPole-v1"
ATARI_ENV = "gymnasium:ALE/Pong-v5"
# issue 18's target: host A3C or host A2C (the faster) solves at least this many times faster
# than SB3's A2C.
TARGET_VS_SB3 = 3.0
CURVE_POINTS = 200


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _curve(times: np.ndarray, curve: np.ndarray) -> list[list[float]]:
    """At most `CURVE_POINTS` (seconds, smoothed return) pairs, NaN-free."""
    keep = np.flatnonzero(np.isfinite(curve))
    keep = keep[np.linspace(0, len(keep) - 1, min(CURVE_POINTS, len(keep))).astype(int)]
    return [[float(times[i]), float(curve[i])] for i in keep] if keep.size else []


class _Monitor:
    """Finished episodes' returns of every environment of this process (the host runs' early
    stop: the run ends once the latest 20 average the threshold, as SB3's does)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.returns: deque[float] = deque(maxlen=WINDOW_EPISODES)
        self.solved_at: float | None = None
        self.started = time.perf_counter()

    def episode(self, total: float) -> None:
        with self.lock:
            self.returns.append(total)
            full = len(self.returns) == WINDOW_EPISODES
            if full and self.solved_at is None and np.mean(self.returns) >= THRESHOLD:
                self.solved_at = time.perf_counter() - self.started


MONITOR = _Monitor()
MONITORED_ID = "a3c_jax_bench/CartPole-v1"


def _monitored_cartpole(**kwargs: Any) -> Any:
    """Gymnasium's CartPole-v1 reporting each finished episode's return to `MONITOR`."""
    import gymnasium

    class Report(gymnasium.Wrapper):
        def reset(self, **kw: Any) -> Any:
            self.total = 0.0
            return self.env.reset(**kw)

        def step(self, action: Any) -> Any:
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.total += float(reward)
            if terminated or truncated:
                MONITOR.episode(self.total)
            return obs, reward, terminated, truncated, info

    return Report(gymnasium.make("CartPole-v1", **kwargs))


def args_atari(env: str) -> bool:
    return env == ATARI_ENV


def host_child(
    method: str,
    width: int,
    seed: int,
    steps: int,
    eval_episodes: int,
    env: str,
    max_seconds: float,
) -> dict[str, Any]:
    """One host run: `method` in ("a3c", "a2c_sync", "a2c_async") with `width` workers or
    environments. In-process environments (A3C, sync A2C) stop once solved; the async vector
    environment's live in other processes, so those runs play their whole budget."""
    t_import = time.perf_counter()
    import gymnasium
    import jax
    from time_to_solve import solving_curve

    import a3c_jax
    from a3c_jax.viz.curves import first_reaching

    jax.devices()
    import_s = time.perf_counter() - t_import
    early_stop = env == ENV and method != "a2c_async"
    if early_stop:
        gymnasium.register(MONITORED_ID, entry_point=_monitored_cartpole, max_episode_steps=500)
        env = "gymnasium:" + MONITORED_ID
    if method == "a3c":
        config = a3c_jax.Config(env_name=env, algo="a3c", num_workers=width, total_timesteps=steps)
    else:
        vector_env = method.split("_")[1]
        # The monitored copy of CartPole-v1 takes the preset of Gymnasium's CartPole-v1.
        preset = a3c_jax.config.presets.ENV_PRESETS.get((ENV, "a2c"), {}) if early_stop else {}
        config = a3c_jax.Config(
            env_name=env,
            algo="a2c",
            num_envs=width,
            vector_env=vector_env,
            total_timesteps=steps,
            **preset,
        )
    t0 = time.perf_counter()
    cpu0, children0 = time.process_time(), _children_cpu()
    MONITOR.started = t0
    committed: dict[int, float] = {}  # update -> seconds from t0 to its commit

    def callback(record: Any) -> bool:
        seconds = committed[record.update] = time.perf_counter() - t0
        return (early_stop and MONITOR.solved_at is not None) or seconds > max_seconds

    result = a3c_jax.train_host(config, jax.random.PRNGKey(seed), callback=callback)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0 + _children_cpu() - children0
    updates = len(result.async_metrics.wall_time)
    times = np.array([committed.get(u, np.nan) for u in range(updates)])
    setup_s = float(times[0] - result.async_metrics.wall_time[0])  # compile, networks, envs
    row: dict[str, Any] = {
        "seed": seed,
        "import_s": import_s,
        "compile_s": result.compile_seconds,
        "setup_s": setup_s,
        "train_s": result.wall_seconds,
        "elapsed_s": elapsed,
        "env_steps_played": int(result.train_state.env_steps),
        "steps_per_s": result.env_steps_per_second,
        "cores_busy": result.cores_busy,
        "cores_busy_with_env_processes": cpu / elapsed,
        "staleness_mean": result.staleness_mean,
        "settings": config.to_dict(),
    }
    if not args_atari(env):
        # The time to solve from the per-update metrics (the same reading for every host run;
        # the monitor's own moment where those windows have not reached it yet).
        curve = solving_curve(result.metrics)
        update = first_reaching(curve, THRESHOLD)
        solve_time = float(times[update]) if update is not None else MONITOR.solved_at
        returns = a3c_jax.evaluate(config, result.params, jax.random.PRNGKey(10_000 + seed), 20)
        row.update(
            solved=solve_time is not None,
            time_to_solve_s=solve_time,
            monitor_solve_s=MONITOR.solved_at,
            solve_env_steps=int(result.metrics.env_steps[update]) if update is not None else None,
            greedy_mean=float(np.mean(returns)),
            curve=_curve(times, curve),
        )
    return row


def sb3_child(seed: int, max_seconds: float, eval_episodes: int) -> dict[str, Any]:
    """`vs_pytorch.py`'s SB3 A2C baseline, with its wall-clock learning curve recorded."""
    t_import = time.perf_counter()
    import gymnasium as gym
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    import_s = time.perf_counter() - t_import
    torch.set_num_threads(1)
    zoo = vs_pytorch.ZOO_A2C_CARTPOLE

    class Recorder(BaseCallback):
        def __init__(self, started: float):
            super().__init__()
            self.started = started
            self.returns: deque[float] = deque(maxlen=WINDOW_EPISODES)
            self.curve: list[list[float]] = []
            self.solved_at: tuple[float, int] | None = None

        def _on_step(self) -> bool:
            elapsed = time.perf_counter() - self.started
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
                    if len(self.returns) == WINDOW_EPISODES:
                        self.curve.append([elapsed, float(np.mean(self.returns))])
            if self.curve and self.curve[-1][1] >= THRESHOLD:
                self.solved_at = (elapsed, self.num_timesteps)
                return False
            return elapsed < max_seconds

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    env = make_vec_env("CartPole-v1", n_envs=zoo["n_envs"], seed=seed)
    model = A2C(zoo["policy"], env, ent_coef=zoo["ent_coef"], seed=seed, device="cpu", verbose=0)
    recorder = Recorder(t0)
    model.learn(total_timesteps=zoo["n_timesteps"], callback=recorder)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    eval_env = gym.make("CartPole-v1")
    eval_env.reset(seed=10_000 + seed)
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
    keep = np.linspace(0, len(recorder.curve) - 1, min(CURVE_POINTS, len(recorder.curve)))
    return {
        "seed": seed,
        "import_s": import_s,
        "elapsed_s": elapsed,
        "solved": recorder.solved_at is not None,
        "time_to_solve_s": recorder.solved_at[0] if recorder.solved_at else None,
        "solve_env_steps": recorder.solved_at[1] if recorder.solved_at else None,
        "env_steps_played": model.num_timesteps,
        "steps_per_s": model.num_timesteps / elapsed,
        "cores_busy": cpu / elapsed,
        "greedy_mean": float(returns),
        "curve": [recorder.curve[int(i)] for i in keep] if recorder.curve else [],
    }


def _methods(widths: list[int]) -> list[tuple[str, str, int]]:
    """(label, method, width) of every contestant."""
    out = []
    for w in widths:
        out.append((f"host A3C, {w} worker{'s' * (w > 1)}", "a3c", w))
    for mode in ("sync", "async"):
        for w in widths:
            out.append((f"host A2C {mode}, {w} env{'s' * (w > 1)}", f"a2c_{mode}", w))
    out.append(("host A2C sync, 8 envs (preset)", "a2c_sync", 8))
    out.append(("SB3 A2C (RL Zoo, 8 envs)", "sb3", 0))
    out.append(("gymnax a2c (cold cache)", "gymnax", 0))
    return out


def _time(row: dict[str, Any]) -> float | None:
    if "error" in row:
        return None
    return row["time_to_solve_s"] if row.get("solved") else row.get("elapsed_s")


def tables(rows: list[dict[str, Any]], labels: list[str]) -> tuple[str, dict[str, Any]]:
    lines = []
    stats: dict[str, Any] = {}
    for label in labels:
        group = [r for r in rows if r["label"] == label and "error" not in r]
        if not group:
            continue
        solved = sum(bool(r.get("solved")) for r in group)
        s = {
            "time": common.summary(_time(r) for r in group),
            "steps": common.summary(r.get("solve_env_steps") for r in group),
            "rate": common.summary(r.get("steps_per_s") for r in group),
            "cores": common.summary(
                r.get("cores_busy_with_env_processes", r.get("cores_busy")) for r in group
            ),
            "greedy": common.summary(r.get("greedy_mean") for r in group),
            "solved": solved,
            "runs": len(group),
        }
        stats[label] = s
        lines.append(
            [
                label,
                f"{solved}/{len(group)}",
                ("" if solved == len(group) else "≥ ") + common.fmt_spread(s["time"], ".1f"),
                common.fmt_spread(s["steps"], ",.0f"),
                common.fmt_spread(s["rate"], ",.0f"),
                common.fmt_spread(s["cores"], ".2f"),
                common.fmt_spread(s["greedy"], ".0f"),
            ]
        )
    header = [
        "contestant",
        "solved",
        "time to solve (s)",
        "env steps to solve",
        "env steps/s",
        "cores busy",
        "greedy return",
    ]
    return common.markdown_table(header, lines), stats


def speedups(stats: dict[str, Any]) -> tuple[str, float | None]:
    """The fastest host contestant against SB3: the ratio of median times to solve."""
    sb3 = stats.get("SB3 A2C (RL Zoo, 8 envs)")
    host = {k: v for k, v in stats.items() if k.startswith("host") and v["solved"] == v["runs"]}
    if not sb3 or not host or sb3["time"]["median"] is None:
        return "no comparison (missing runs)", None
    best = min(host, key=lambda k: host[k]["time"]["median"])
    ratio = sb3["time"]["median"] / host[best]["time"]["median"]
    bound = "≥ " if sb3["solved"] < sb3["runs"] else ""
    verdict = "met" if ratio >= TARGET_VS_SB3 else "NOT met"
    return (
        f"fastest host contestant: {best}, {host[best]['time']['median']:.1f} s median; SB3 A2C "
        f"{sb3['time']['median']:.1f} s: {bound}{ratio:.1f}x faster (target {TARGET_VS_SB3:.0f}x: "
        f"{verdict})",
        ratio,
    )


def plot(rows: list[dict[str, Any]], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for row in rows:
        if row.get("seed") != 0 or not row.get("curve"):
            continue
        curve = np.asarray(row["curve"])
        style = "--" if row["method"] == "sb3" else "-"
        ax.plot(curve[:, 0], curve[:, 1], style, label=row["label"], linewidth=1.2)
    ax.axhline(THRESHOLD, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("wall-clock seconds from building the learner (seed 0)")
    ax.set_ylabel(f"mean return of the latest {WINDOW_EPISODES} training episodes")
    ax.set_title("Gymnasium CartPole-v1 on the host: learning curves against wall-clock")
    ax.set_xscale("log")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def atari_rows(widths: list[int], steps: int) -> list[dict[str, Any]]:
    """Throughput on Pong (no learning measured): steps/s and cores busy per mode."""
    rows = []
    for method in ("a3c", "a2c_sync", "a2c_async"):
        for w in widths:
            child = [__file__, "--child-host", method, str(w), "0", "--steps", str(steps)]
            child += ["--atari", "--max-seconds", "600"]
            row = common.run_child(
                child,
                timeout=1200,
            )
            row.update(method=method, width=w)
            rows.append(row)
            if "error" in row:
                print(f"  Pong {method} {w}: {row['error']}", file=sys.stderr, flush=True)
            else:
                print(
                    f"  Pong {method} {w}: {row['steps_per_s']:,.0f} env steps/s, "
                    f"{row['cores_busy_with_env_processes']:.2f} cores busy",
                    flush=True,
                )
    return rows


def atari_main(args: Any, machine: dict[str, Any], widths: list[int], started: float) -> None:
    """`--atari`: Pong's throughput per mode (no learning: `--atari-steps` agent steps each)."""
    rows = atari_rows(widths, args.atari_steps)
    lines = [
        [
            r["method"].replace("_", " "),
            r["width"],
            common.fmt(r.get("steps_per_s"), ",.0f"),
            common.fmt(r.get("cores_busy_with_env_processes"), ".2f"),
            common.fmt(r.get("compile_s"), ".1f"),
            common.fmt(r.get("setup_s"), ".1f"),
        ]
        for r in rows
    ]
    header = ["mode", "workers / envs", "env steps/s", "cores busy", "compile s", "setup s"]
    note = common.contention_note([machine["load_average_1min"], common.load_average()])
    text = (
        f"{ATARI_ENV} ({args.atari_steps:,} agent steps of 4 frames per run, CNN torso), "
        f"{machine['cores']} cores, {machine['cpu']}; {note}\n\n"
        + common.markdown_table(header, lines)
    )
    print("\n" + text)
    common.save_results(
        "host_parallelism_atari",
        args,
        {
            "machine": machine,
            "note": note,
            "rows": rows,
            "summary": text,
            "wall_s": time.perf_counter() - started,
        },
    )


def env_overlap(env_names: list[str], seconds: float, thread_counts: list[int]) -> str:
    """`--env-threads`: do environments step at the same time from several threads (is the GIL
    released while they step)? Each thread steps its own environment with random actions for
    `seconds`; steps/s summed over threads and cores busy (process CPU / wall)."""
    from a3c_jax.envs import gymnasium_envs

    lines = []
    for name in env_names:
        for count in thread_counts:
            envs = [gymnasium_envs.EnvFactory(name)() for _ in range(count)]
            steps = [0] * count

            def play(i: int, deadline: float, envs: list = envs, steps: list = steps) -> None:
                env = envs[i]
                env.reset(seed=i)
                env.action_space.seed(i)
                while time.perf_counter() < deadline:
                    _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                    steps[i] += 1
                    if terminated or truncated:
                        env.reset()

            cpu0, t0 = time.process_time(), time.perf_counter()
            threads = [threading.Thread(target=play, args=(i, t0 + seconds)) for i in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - t0
            cores = (time.process_time() - cpu0) / wall
            for env in envs:
                env.close()
            lines.append([name, count, f"{sum(steps) / wall:,.0f}", f"{cores:.2f}"])
            print(f"  {name}, {count} thread(s): {lines[-1][2]} steps/s", flush=True)
    header = ["environment", "threads", "env steps/s (all threads)", "cores busy"]
    return common.markdown_table(header, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 and 2 workers")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--widths", type=int, nargs="*", default=None, help="workers / envs")
    parser.add_argument("--steps", type=int, default=200_000, help="host runs' step budget")
    parser.add_argument("--max-seconds", type=float, default=150.0, help="every run's time cap")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--atari", action="store_true", help="Pong's throughput instead")
    parser.add_argument("--atari-steps", type=int, default=2_000)
    parser.add_argument(
        "--env-threads",
        type=float,
        default=0.0,
        help="instead: seconds of random play per environment and thread count (GIL overlap)",
    )
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=None)
    parser.add_argument("--child-host", nargs=3, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-sb3", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_host is not None:
        method, width, seed = args.child_host
        env = ATARI_ENV if args.atari else ENV
        common.emit(
            host_child(
                method, int(width), int(seed), args.steps, args.eval_episodes, env, args.max_seconds
            )
        )
        return
    if args.child_sb3 is not None:
        common.emit(sb3_child(args.child_sb3, args.max_seconds, args.eval_episodes))
        return
    if args.env_threads:
        load = common.load_average()
        table = env_overlap([ENV, ATARI_ENV], args.env_threads, [1, 2, 4])
        loads = [load, common.load_average()]
        print(f"\n{common.contention_note(loads)}\n\n{table}")
        return

    started = time.perf_counter()
    machine = common.machine_info(with_jax=False)
    seeds = args.seeds or (1 if args.quick else 2)
    widths = args.widths or ([1, 2] if args.quick else [1, 2, 4])
    if args.atari:
        atari_main(args, machine, widths, started)
        return
    contestants = _methods(widths)
    rows: list[dict[str, Any]] = []
    loads = [machine["load_average_1min"]]
    for seed in range(seeds):
        for label, method, width in contestants:
            if method == "sb3":
                child = [__file__, "--child-sb3", str(seed)]
                child += ["--max-seconds", str(args.max_seconds)]
                row = common.run_child(child, timeout=args.max_seconds + 300)
            elif method == "gymnax":
                cache_dir = tempfile.mkdtemp(prefix="a3c_jax_bench_cache_")
                try:
                    row = vs_pytorch._a3c_jax_run(seed, cache_dir, args.eval_episodes)
                finally:
                    shutil.rmtree(cache_dir, ignore_errors=True)
                row["steps_per_s"] = row.get("steps_per_s") or (
                    row["env_steps_played"] / row["train_s"]
                    if row.get("env_steps_played") and row.get("train_s")
                    else None
                )
            else:
                child = [__file__, "--child-host", method, str(width), str(seed)]
                child += ["--steps", str(args.steps), "--eval-episodes", str(args.eval_episodes)]
                child += ["--max-seconds", str(args.max_seconds)]
                row = common.run_child(child, timeout=1800)
            row.update(label=label, method=method, width=width, seed=seed)
            row["load_average_1min"] = common.load_average()
            loads.append(row["load_average_1min"])
            rows.append(row)
            if "error" in row:
                print(f"  {label} seed {seed}: {row['error']}", file=sys.stderr, flush=True)
                continue
            when = (
                f"solved in {row['time_to_solve_s']:.1f} s"
                if row.get("solved")
                else f"not solved ({row.get('elapsed_s', 0):.1f} s)"
            )
            print(
                f"  {label}, seed {seed}: {when}, "
                f"{common.fmt(row.get('steps_per_s'), ',.0f')} env steps/s, greedy "
                f"{common.fmt(row.get('greedy_mean'), '.0f')}",
                flush=True,
            )
    table, stats = tables(rows, [c[0] for c in contestants])
    verdict, ratio = speedups(stats)
    note = common.contention_note(loads)
    text = (
        f"Gymnasium CartPole-v1, {seeds} seed(s) each, host runs {args.steps:,} steps; "
        f"{machine['cores']} cores, {machine['cpu']}; {note}\n\n{table}\n\n{verdict}"
    )
    print("\n" + text)
    common.save_results(
        "host_parallelism",
        args,
        {
            "machine": machine,
            "note": note,
            "rows": rows,
            "stats": stats,
            "ratio_vs_sb3": ratio,
            "summary": text,
            "wall_s": time.perf_counter() - started,
        },
        lambda path: plot(rows, path),
    )


if __name__ == "__main__":
    main()
