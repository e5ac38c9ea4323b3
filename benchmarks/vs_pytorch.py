"""a3c_jax against the textbook PyTorch N-step distributed A2C and Stable-Baselines3's A2C:
wall-clock to solve CartPole-v1 on the same machine, in the same run, as ratios.

    pip install -e ".[bench]"                 # torch 2.13.0 (CPU), stable-baselines3, gymnasium
    python benchmarks/vs_pytorch.py            # 5 seeds each
    python benchmarks/vs_pytorch.py --quick    # 2 seeds each, shorter caps for the baselines

The contestants, each in a fresh process per seed, interleaved seed by seed (so that a busy
moment of the machine touches all of them alike):

- **a3c_jax cold / warm**: `a2c` with its CartPole-v1 defaults (8 environments x 8 steps, Adam
  3e-3, 200k-step budget), trained in chunks until it solves (`time_to_solve.py`'s runner): cold
  with an empty persistent compilation cache, warm with the cache that the cold run filled.
- **PyTorch DA2C**: the first deck's N-step distributed actor-critic as the deck writes it:
  `torch.multiprocessing` workers (one per core) sharing one actor and one critic in shared
  memory (`share_memory()`, Hogwild: every worker has its own Adam and writes the shared
  parameters without locks), each playing its own Gymnasium CartPole-v1, N = 10 steps per update,
  `np.random.choice` on the actor's probabilities, returns `R <- r + γR` from `R = V(s_N)` (0 at
  termination), actor loss `-log π(a|s)(R - V(s))`, critic loss `(R - V(s))²`. Written for this
  benchmark (`torch_da2c_child`); separate 64x64 tanh networks like a3c_jax's; one correction to the
  deck: a time-limit truncation bootstraps from V(s') instead of counting as a failure.
- **SB3 A2C**: Stable-Baselines3's `A2C` with the RL Zoo's CartPole-v1 hyperparameters
  (`hyperparams/a2c.yml`: n_envs 8, policy MlpPolicy, ent_coef 0.0, normalize false; the rest
  SB3's defaults: n_steps 5, RMSprop 7e-4, gamma 0.99, 5e5 steps), with
  `torch.set_num_threads(1)` (`--sb3-threads`): for its small networks, PyTorch's default of one
  thread per core ran 10-30x slower on this 2-core machine while other processes were running
  (130-300 against 2,800-3,900 environment steps/s), so the baseline gets its best setting.

One criterion for all: solved when the mean return of the latest 20 finished training episodes
reaches 475 (a3c_jax: `time_to_solve.solving_curve`, `a3c_jax.viz.curves.smoothed_return` from the
20th episode on, whose window takes whole updates back until it holds at least 20 episodes).
Each run stops there (or at its step or time cap) and the policy at that moment is then evaluated
greedily / deterministically (`--eval-episodes` episodes) to confirm. Time runs from the call
that builds the learner (environments, networks, compile; imports apart) to the moment the
criterion is met. Ratios divide each baseline's median time by a3c_jax's median (cold and warm).
A baseline run that hits its cap counts with its elapsed time, and its ratio is then a lower bound
(marked ≥).

Prints markdown tables, writes `benchmarks/results/vs_pytorch[_quick].json` and `.png`.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import sys
import tempfile
import time
from collections import deque
from typing import Any

import common

THRESHOLD = 475.0
WINDOW_EPISODES = 20
ENV_NAME = "CartPole-v1"
# issue 7's targets: how many times faster a3c_jax should solve CartPole-v1 than each baseline.
TARGETS = {"sb3_a2c": {"cold": 4.0, "warm": 10.0}, "torch_da2c": {"cold": 25.0, "warm": 60.0}}
LABELS = {
    "a3c_jax_cold": "a3c_jax a2c (cold)",
    "a3c_jax_warm": "a3c_jax a2c (warm cache)",
    "sb3_a2c": "Stable-Baselines3 A2C (RL Zoo)",
    "torch_da2c": "PyTorch N-step DA2C (mp workers)",
}
# The RL Zoo's CartPole-v1 entry of hyperparams/a2c.yml.
ZOO_A2C_CARTPOLE = {"n_envs": 8, "n_timesteps": 500_000, "policy": "MlpPolicy", "ent_coef": 0.0}


# --------------------------------------------------------------------------------------------
# PyTorch N-step distributed A2C, in the first deck's style.


def _torch_networks(obs_dim: int, num_actions: int, hidden: int = 64):
    import torch
    from torch import nn

    class Actor(nn.Module):
        """The policy: probabilities of each action for a state."""

        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(obs_dim, hidden)
            self.l2 = nn.Linear(hidden, hidden)
            self.out = nn.Linear(hidden, num_actions)

        def forward(self, x):
            x = torch.tanh(self.l1(x))
            x = torch.tanh(self.l2(x))
            return torch.softmax(self.out(x), dim=-1)

    class Critic(nn.Module):
        """The value of a state."""

        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(obs_dim, hidden)
            self.l2 = nn.Linear(hidden, hidden)
            self.out = nn.Linear(hidden, 1)

        def forward(self, x):
            x = torch.tanh(self.l1(x))
            x = torch.tanh(self.l2(x))
            return self.out(x)

    return Actor(), Critic()


def _da2c_worker(index, actor, critic, counter, params, episode_queue, stop) -> None:
    """One worker: plays its own CartPole, N steps at a time, and updates the shared networks."""
    import gymnasium as gym
    import numpy as np
    import torch

    torch.set_num_threads(1)
    seed = params["seed"] * 1000 + index
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gym.make(ENV_NAME)
    num_actions = env.action_space.n
    # Hogwild: each worker has its own optimiser over the shared parameters.
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=params["lr"])
    state, _ = env.reset(seed=seed)
    episode_return = 0.0
    while not stop.is_set():
        values, log_probs, rewards = [], [], []
        bootstrap = torch.zeros(1)
        for _ in range(params["n_steps"]):
            # The value of the state and the probabilities of each action.
            x = torch.from_numpy(state).float()
            value = critic(x)
            policy = actor(x)
            p = policy.detach().numpy().astype(np.float64)
            action = rng.choice(num_actions, p=p / p.sum())
            state, reward, terminated, truncated, _ = env.step(action)
            values.append(value)
            log_probs.append(torch.log(policy[action]))
            rewards.append(float(reward))
            episode_return += reward
            if terminated or truncated:
                episode_queue.put(episode_return)
                if truncated and not terminated:  # a time limit, not a failure
                    with torch.no_grad():
                        bootstrap = critic(torch.from_numpy(state).float())
                state, _ = env.reset()
                episode_return = 0.0
                break
        else:  # N steps played: bootstrap from the critic's value of the next state
            with torch.no_grad():
                bootstrap = critic(torch.from_numpy(state).float())
        # Returns, backwards: R <- r + gamma R.
        ret = bootstrap.view(-1)
        returns = []
        for r in reversed(rewards):
            ret = r + params["gamma"] * ret
            returns.append(ret)
        returns = torch.cat(returns[::-1])
        values = torch.cat(values).view(-1)
        log_probs = torch.stack(log_probs).view(-1)
        advantage = returns - values.detach()
        actor_loss = -(log_probs * advantage).mean()
        critic_loss = torch.pow(returns - values, 2).mean()
        optimizer.zero_grad()
        (actor_loss + critic_loss).backward()
        optimizer.step()
        with counter.get_lock():
            counter.value += len(rewards)
    episode_queue.cancel_join_thread()


def torch_da2c_child(
    seed: int, workers: int, max_steps: int, max_seconds: float, eval_episodes: int, lr: float
) -> dict[str, Any]:
    t_import = time.perf_counter()
    import gymnasium as gym
    import numpy as np
    import torch
    import torch.multiprocessing as mp

    import_s = time.perf_counter() - t_import
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    probe = gym.make(ENV_NAME)
    actor, critic = _torch_networks(probe.observation_space.shape[0], probe.action_space.n)
    actor.share_memory()
    critic.share_memory()
    params = {"seed": seed, "lr": lr, "gamma": 0.99, "n_steps": 10}
    # Workers are forked, as in the deck (the shared tensors travel by shared memory).
    ctx = mp.get_context("fork")
    counter = ctx.Value("l", 0)
    episode_queue = ctx.Queue()
    stop = ctx.Event()
    processes = [
        ctx.Process(
            target=_da2c_worker, args=(i, actor, critic, counter, params, episode_queue, stop)
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    window: deque[float] = deque(maxlen=WINDOW_EPISODES)
    episodes, solved_at_steps, time_to_solve = 0, None, None
    while True:
        try:
            window.append(episode_queue.get(timeout=0.2))
            episodes += 1
        except queue.Empty:
            pass
        elapsed = time.perf_counter() - t0
        if len(window) == WINDOW_EPISODES and np.mean(window) >= THRESHOLD:
            time_to_solve = elapsed
            solved_at_steps = counter.value
            break
        if counter.value >= max_steps or elapsed >= max_seconds:
            break
    snapshot = {k: v.clone() for k, v in actor.state_dict().items()}
    stop.set()
    elapsed = time.perf_counter() - t0
    steps = counter.value
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()

    policy, _ = _torch_networks(probe.observation_space.shape[0], probe.action_space.n)
    policy.load_state_dict(snapshot)
    greedy = []
    env = gym.make(ENV_NAME)
    for episode in range(eval_episodes):
        state, _ = env.reset(seed=10_000 + seed * 1000 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = int(torch.argmax(policy(torch.from_numpy(state).float())))
            state, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        greedy.append(total)
    return {
        "method": "torch_da2c",
        "seed": seed,
        "import_s": import_s,
        "compile_s": None,
        "solved": time_to_solve is not None,
        "time_to_solve_s": time_to_solve,
        "elapsed_s": elapsed,
        "solve_env_steps": solved_at_steps,
        "env_steps_played": steps,
        "steps_per_s": steps / elapsed,
        "episodes": episodes,
        "greedy_mean": float(np.mean(greedy)),
        "greedy_min": float(np.min(greedy)),
        "greedy_episodes": eval_episodes,
        "settings": {**params, "workers": workers, "max_steps": max_steps},
        "torch": torch.__version__,
    }


# --------------------------------------------------------------------------------------------
# Stable-Baselines3 A2C with the RL Zoo's hyperparameters.


def sb3_child(seed: int, max_seconds: float, eval_episodes: int, threads: int) -> dict[str, Any]:
    t_import = time.perf_counter()
    import gymnasium as gym
    import numpy as np
    import stable_baselines3
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    import_s = time.perf_counter() - t_import
    if threads > 0:
        torch.set_num_threads(threads)

    class StopWhenSolved(BaseCallback):
        """Stops training once the latest 20 finished episodes average the threshold."""

        def __init__(self, started: float):
            super().__init__()
            self.started = started
            self.solved_at: tuple[float, int] | None = None
            self.episodes = 0
            self.returns: deque[float] = deque(maxlen=WINDOW_EPISODES)

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
                    self.episodes += 1
            elapsed = time.perf_counter() - self.started
            if len(self.returns) == WINDOW_EPISODES and np.mean(self.returns) >= THRESHOLD:
                self.solved_at = (elapsed, self.num_timesteps)
                return False
            return elapsed < max_seconds

    t0 = time.perf_counter()
    env = make_vec_env(ENV_NAME, n_envs=ZOO_A2C_CARTPOLE["n_envs"], seed=seed)
    model = A2C(
        ZOO_A2C_CARTPOLE["policy"],
        env,
        ent_coef=ZOO_A2C_CARTPOLE["ent_coef"],
        seed=seed,
        device="cpu",
        verbose=0,
    )
    callback = StopWhenSolved(t0)
    model.learn(total_timesteps=ZOO_A2C_CARTPOLE["n_timesteps"], callback=callback)
    elapsed = time.perf_counter() - t0
    eval_env = gym.make(ENV_NAME)
    eval_env.reset(seed=10_000 + seed)
    returns, _ = evaluate_policy(
        model,
        eval_env,
        n_eval_episodes=eval_episodes,
        deterministic=True,
        return_episode_rewards=True,
    )
    solved = callback.solved_at is not None
    return {
        "method": "sb3_a2c",
        "seed": seed,
        "import_s": import_s,
        "compile_s": None,
        "solved": solved,
        "time_to_solve_s": callback.solved_at[0] if solved else None,
        "elapsed_s": elapsed,
        "solve_env_steps": callback.solved_at[1] if solved else None,
        "env_steps_played": model.num_timesteps,
        "steps_per_s": model.num_timesteps / elapsed,
        "episodes": callback.episodes,
        "greedy_mean": float(np.mean(returns)),
        "greedy_min": float(np.min(returns)),
        "greedy_episodes": eval_episodes,
        "settings": {
            **ZOO_A2C_CARTPOLE,
            "n_steps": model.n_steps,
            "learning_rate": model.learning_rate,
            "gamma": model.gamma,
            "gae_lambda": model.gae_lambda,
            "torch_threads": torch.get_num_threads(),
        },
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
    }


# --------------------------------------------------------------------------------------------
# The parent: runs everything, prints the tables.


def _a3c_jax_run(seed: int, cache_dir: str, eval_episodes: int) -> dict[str, Any]:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "time_to_solve.py")
    row = common.run_child(
        [
            script,
            "--child-solve",
            ENV_NAME,
            str(seed),
            cache_dir,
            "--eval-episodes",
            str(eval_episodes),
        ]
    )
    if "error" not in row:
        row["elapsed_s"] = row["compile_s"] + row["train_s"]
    return row


def _effective_time(row: dict[str, Any]) -> float | None:
    """The time to solve, or for a run stopped by its cap, its elapsed time (a lower bound)."""
    if "error" in row:
        return None
    return row["time_to_solve_s"] if row["solved"] else row["elapsed_s"]


def _group(rows: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("method") == method and "error" not in r]


def tables(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    medians: dict[str, tuple[float | None, bool]] = {}
    for method in LABELS:
        group = _group(rows, method)
        times = common.summary(_effective_time(r) for r in group)
        medians[method] = (times["median"], any(not r["solved"] for r in group))
    out = []
    for method, label in LABELS.items():
        group = _group(rows, method)
        if not group:
            continue
        solved = [r for r in group if r["solved"]]
        median, censored = medians[method]
        ratios = []
        for jax_method in ("a3c_jax_cold", "a3c_jax_warm"):
            jax_median = medians[jax_method][0]
            if median is None or not jax_median or method.startswith("a3c_jax"):
                ratios.append("-")
            else:
                ratios.append(("≥ " if censored else "") + f"{median / jax_median:.1f}x")
        out.append(
            [
                label,
                f"{len(solved)}/{len(group)}",
                common.fmt_spread(common.summary(r["solve_env_steps"] for r in solved), ",.0f"),
                common.fmt_spread(common.summary(r["compile_s"] for r in group)),
                common.fmt_spread(common.summary(_effective_time(r) for r in group))
                + (" (capped runs: elapsed)" if censored else ""),
                *ratios,
                common.fmt_spread(common.summary(r["steps_per_s"] for r in group), ",.0f"),
                f"{sum(r['greedy_mean'] >= THRESHOLD for r in solved)}/{len(solved)}",
            ]
        )
    header = [
        "method",
        "solved",
        "env steps to solve",
        "compile s",
        "time to solve s",
        "÷ a3c_jax cold",
        "÷ a3c_jax warm",
        "env steps/s",
        "greedy ≥ 475",
    ]
    ratio_summary = {}
    lines = []
    for method, targets in TARGETS.items():
        median, censored = medians[method]
        for cache, target in targets.items():
            jax_median = medians[f"a3c_jax_{cache}"][0]
            if median is None or not jax_median:
                continue
            ratio = median / jax_median
            ratio_summary[f"{method}/{cache}"] = {
                "ratio": ratio,
                "lower_bound": censored,
                "target": target,
            }
            lines.append(
                f"- {LABELS[method]} ÷ a3c_jax {cache}: {'≥ ' if censored else ''}{ratio:.1f}x "
                f"(target {target:g}x: {'met' if ratio >= target else 'not met'})"
            )
    return common.markdown_table(header, out) + "\n\n" + "\n".join(lines), ratio_summary


def plot(rows: list[dict[str, Any]], path: str) -> bool:
    plt = common.matplotlib_pyplot()
    if plt is None:
        return False
    from matplotlib.ticker import NullFormatter

    fig, ax = plt.subplots(figsize=(9, 4))
    methods = [m for m in LABELS if _group(rows, m)]
    all_times = []
    for i, method in enumerate(methods):
        group = _group(rows, method)
        times = [_effective_time(r) for r in group]
        all_times += times
        median = common.summary(times)["median"]
        compile_s = common.summary(r["compile_s"] for r in group)["median"]
        ax.barh(i, median, color="tab:blue", alpha=0.35, label="median" if i == 0 else None)
        if compile_s:
            ax.barh(i, compile_s, color="tab:orange", alpha=0.6, hatch="//", label="compile")
        solved = [t for t, r in zip(times, group, strict=True) if r["solved"]]
        capped = [t for t, r in zip(times, group, strict=True) if not r["solved"]]
        ax.scatter(solved, [i] * len(solved), color="tab:green", zorder=3)
        ax.scatter(capped, [i] * len(capped), color="tab:red", marker="x", zorder=3)
        ax.text(median * 1.05, i + 0.25, f"{median:.1f} s", fontsize=8)
    ticks = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
    low, high = min(all_times) / 2, max(all_times) * 2
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.set_xticks(
        [t for t in ticks if low <= t <= high], [f"{t:g}" for t in ticks if low <= t <= high]
    )
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(range(len(methods)), [LABELS[m] for m in methods])
    ax.set_xlabel("seconds from the call to train to solving (dots: runs; x: stopped by the cap)")
    ax.set_title("Time to solve CartPole-v1, same machine, same run")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, shorter caps")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--methods", nargs="*", default=list(LABELS), choices=list(LABELS))
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="DA2C processes")
    parser.add_argument("--da2c-lr", type=float, default=1e-3)
    parser.add_argument(
        "--sb3-threads",
        type=int,
        default=1,
        help="torch threads for SB3 (0: PyTorch's default, one per core)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="DA2C step cap")
    parser.add_argument("--max-seconds", type=float, default=None, help="baseline time cap")
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=None)
    parser.add_argument("--child-torch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-sb3", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    max_seconds = args.max_seconds or (150.0 if args.quick else 600.0)
    max_steps = args.max_steps or (300_000 if args.quick else 1_000_000)
    if args.child_torch is not None:
        common.emit(
            torch_da2c_child(
                args.child_torch,
                args.workers,
                max_steps,
                max_seconds,
                args.eval_episodes,
                args.da2c_lr,
            )
        )
        return
    if args.child_sb3 is not None:
        common.emit(sb3_child(args.child_sb3, max_seconds, args.eval_episodes, args.sb3_threads))
        return

    started = time.perf_counter()
    machine = common.machine_info(with_jax=False)
    seeds = args.seeds or (2 if args.quick else 5)
    common_args = ["--eval-episodes", str(args.eval_episodes), "--max-seconds", str(max_seconds)]
    rows: list[dict[str, Any]] = []
    loads = [machine["load_average_1min"]]
    for seed in range(seeds):
        cache_dir = tempfile.mkdtemp(prefix="a3c_jax_bench_cache_")
        try:
            for method in args.methods:
                if method.startswith("a3c_jax"):
                    row = _a3c_jax_run(seed, cache_dir, args.eval_episodes)
                elif method == "sb3_a2c":
                    row = common.run_child(
                        [
                            __file__,
                            "--child-sb3",
                            str(seed),
                            *common_args,
                            "--sb3-threads",
                            str(args.sb3_threads),
                        ],
                        timeout=max_seconds + 300,
                    )
                else:
                    row = common.run_child(
                        [
                            __file__,
                            "--child-torch",
                            str(seed),
                            *common_args,
                            "--workers",
                            str(args.workers),
                            "--da2c-lr",
                            str(args.da2c_lr),
                            "--max-steps",
                            str(max_steps),
                        ],
                        timeout=max_seconds + 300,
                    )
                row["method"] = method
                row.setdefault("seed", seed)
                row["load_average_1min"] = common.load_average()
                loads.append(row["load_average_1min"])
                rows.append(row)
                if "error" in row:
                    print(f"  {method} seed {seed}: {row['error']}", file=sys.stderr, flush=True)
                else:
                    print(
                        f"  {LABELS[method]}, seed {seed}: "
                        + (
                            f"solved in {row['time_to_solve_s']:.2f} s at "
                            f"{row['solve_env_steps']:,} steps"
                            if row["solved"]
                            else f"not solved in {row['elapsed_s']:.1f} s"
                        )
                        + f", greedy {row['greedy_mean']:.1f}",
                        flush=True,
                    )
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    note = common.contention_note(loads)
    table, ratios = tables(rows)
    text = (
        f"Time to solve CartPole-v1 (mean of the latest 20 training episodes ≥ 475), {seeds} "
        f"seed(s) each, {machine['cores']} cores, {machine['cpu']}; {note}\n\n{table}"
    )
    print("\n" + text)
    common.save_results(
        "vs_pytorch",
        args,
        {
            "machine": machine,
            "contention": note,
            "settings": {
                "threshold": THRESHOLD,
                "window_episodes": WINDOW_EPISODES,
                "eval_episodes": args.eval_episodes,
                "max_seconds": max_seconds,
                "da2c_max_steps": max_steps,
                "da2c_workers": args.workers,
                "da2c_lr": args.da2c_lr,
                "sb3_threads": args.sb3_threads,
                "quick": args.quick,
            },
            "runs": rows,
            "ratios": ratios,
            "tables": text,
            "wall_s": time.perf_counter() - started,
        },
        lambda path: plot(rows, path),
    )


if __name__ == "__main__":
    main()
