"""Hyperparameter sweeps in one compiled program: settings x seeds under `vmap`.

Every numeric hyperparameter that only enters the training program through arithmetic
(`TRACED_FIELDS`) can be an input of that program instead of a constant in it. `sweep` builds the
program once with those fields as traced scalars, `vmap`s it over seeds and over settings, and
feeds it the grid in equal batches: many settings and seeds train at once, and a new setting
needs no new compile. Fields that change shapes or the program itself (`num_envs`, `n_steps`,
`hidden_sizes`, `algo`, `optimizer`, ...) stay static; asking to sweep one is a `ConfigError`.

    space = {"lr": [1e-4, 3e-4, 1e-3], "ent_coef": [0.0, 0.01]}
    result = sweep(config, space, num_seeds=4, key=jax.random.PRNGKey(0))
    result.settings      # [{"lr": 1e-4, "ent_coef": 0.0}, ...] in grid order (last name fastest)
    result.params        # leading axes [settings, seeds]; likewise result.metrics
    print(result.markdown())
    result.best          # the best setting as a Config

Setting `i`, seed `j` trains exactly as `jit_train(setting_i)(jax.random.split(key, S)[j])`
(the same keys for every setting), and is then evaluated greedily inside the same program.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from a3c_jax.algorithms import build
from a3c_jax.algorithms.networks import make_networks
from a3c_jax.config import TRACED_FIELDS, Config, ConfigError
from a3c_jax.core.types import Params, PRNGKey, UpdateMetrics
from a3c_jax.training.evaluation import acting_policy, play_episodes
from a3c_jax.training.xla import compiler_options

Setting = dict[str, float]


# --------------------------------------------------------------------------- the space


def grid(space: Mapping[str, Sequence[float]]) -> list[Setting]:
    """Every combination of `space`'s values, in order (the last name varies fastest)."""
    names = list(space)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*space.values())]


def check_names(config: Config, names: Sequence[str]) -> None:
    """Refuses, naming the field, what cannot be a traced input of `config`'s program."""
    if config.trainer != "jit":
        raise ConfigError(
            f"sweep: algo={config.algo!r} on env_name={config.env_name!r} does not train as one "
            "jitted program (threads or host environments); sweep a synchronous algorithm on a "
            "jitted environment, or run the settings one by one"
        )
    known = {field.name for field in dataclasses.fields(Config)}
    for name in names:
        if name not in known:
            raise ConfigError(f"sweep: {name!r} is not a Config field")
        if name not in TRACED_FIELDS:
            raise ConfigError(
                f"sweep: {name!r} changes shapes or the compiled program, so it cannot be swept "
                f"in one program; sweepable fields: {', '.join(TRACED_FIELDS)} (train other "
                f"values of {name} as separate sweeps)"
            )
    if "rmsprop_decay" in names and config.optimizer != "rmsprop":
        raise ConfigError(
            f"sweep: rmsprop_decay is unused with optimizer={config.optimizer!r}; "
            "set optimizer=rmsprop to sweep it"
        )


def check_settings(config: Config, settings: Sequence[Setting]) -> list[Config]:
    """Each setting as a validated `Config` (bad values raise `ConfigError` naming the field and
    the setting), before anything compiles."""
    if not settings:
        raise ConfigError("sweep: the space has no settings (a field with no values?)")
    check_names(config, list(settings[0]))
    configs = []
    for i, setting in enumerate(settings):
        try:
            configs.append(config.replace(**setting))
        except ConfigError as error:
            raise ConfigError(f"sweep setting {i} {setting}: {error}") from error
    return configs


def traced_config(config: Config, hyperparams: Mapping[str, jax.Array]) -> Config:
    """`config` with `hyperparams`' fields replaced by (traced) scalars, unvalidated: only for
    building the training program, which reads them through arithmetic only. Its `replace`
    (as `parallel.device_config` uses for a device's share) validates the concrete fields and
    carries the traced ones over."""
    out = copy.copy(config)
    for name, value in hyperparams.items():
        object.__setattr__(out, name, value)

    def replace(**changes: Any) -> Config:
        return traced_config(config.replace(**changes), hyperparams)

    object.__setattr__(out, "replace", replace)
    return out


# --------------------------------------------------------------------------- the program


class SweepOutput(NamedTuple):
    """One batch's results, leading axes `[B settings, S seeds]`."""

    params: Params  # final parameters (with the observation statistics, if normalised)
    metrics: UpdateMetrics  # every field [B, S, num_updates]
    updates: jax.Array  # updates done [B, S] (fewer than num_updates: diverged or episodic)
    diverged: jax.Array  # nonzero where the divergence guard stopped the run [B, S]
    greedy_return: jax.Array  # mean greedy return over the evaluation episodes [B, S]


def make_program(
    config: Config, names: Sequence[str], episodes: int
) -> Callable[[dict[str, jax.Array], PRNGKey, PRNGKey], SweepOutput]:
    """`program(hyperparams {name: [B]}, keys [S, 2], eval_keys [S, 2]) -> SweepOutput`: trains
    every (setting, seed) pair of the batch and evaluates it greedily over `episodes` episodes
    (none: `greedy_return` nan). Not jitted."""
    from a3c_jax.training.loop import make_train

    spec = build.env_spec(config, training=False)
    networks = make_networks(config, spec)
    policy_fn = acting_policy(networks, spec, greedy=True)
    names = list(names)

    def one(values: jax.Array, key: PRNGKey, eval_key: PRNGKey) -> SweepOutput:
        hyperparams = dict(zip(names, values, strict=True))
        result = make_train(traced_config(config, hyperparams))(key)
        if episodes:
            returns = play_episodes(spec, policy_fn, result.params, eval_key, episodes, networks)
            greedy = jnp.mean(returns)
        else:
            greedy = jnp.full((), jnp.nan, jnp.float32)
        runner = result.runner_state
        return SweepOutput(result.params, result.metrics, runner.updates, runner.diverged, greedy)

    over_seeds = jax.vmap(one, in_axes=(None, 0, 0))
    over_settings = jax.vmap(over_seeds, in_axes=(0, None, None))

    def program(hyperparams: dict[str, jax.Array], keys: PRNGKey, eval_keys: PRNGKey):
        values = jnp.stack([jnp.asarray(hyperparams[n], jnp.float32) for n in names], axis=-1)
        return over_settings(values, keys, eval_keys)

    return program


def output_bytes(config: Config, names: Sequence[str], num_seeds: int, episodes: int) -> int:
    """Bytes of one setting's `SweepOutput` over `num_seeds` seeds, plus an allowance for the
    transient arrays of an update (4x the rollout's observations), per setting."""
    program = make_program(config, names, episodes)
    hyperparams = {n: jax.ShapeDtypeStruct((1,), jnp.float32) for n in names}
    keys = jax.ShapeDtypeStruct((num_seeds, 2), jnp.uint32)
    shapes = jax.eval_shape(program, hyperparams, keys, keys)
    out = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    spec = build.env_spec(config, training=False)
    obs = math.prod(spec.obs_shape) * 4 * config.num_envs * max(config.n_steps, 1)
    return out + 4 * obs * num_seeds


def memory_budget() -> int:
    """Bytes a sweep's batch may hold: half the accelerator's memory, or on the CPU a quarter
    of the machine's physical memory."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 2
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def choose_batch_size(num_settings: int, per_setting_bytes: int, budget: int) -> int:
    """As many settings per batch as fit `budget`, at least 1 and at most `num_settings`; the
    batches are then made even (`ceil(N / batches)`) so that the last one pads least."""
    fits = max(1, min(num_settings, budget // max(per_setting_bytes, 1)))
    batches = math.ceil(num_settings / fits)
    return math.ceil(num_settings / batches)


# --------------------------------------------------------------------------- the sweep


@dataclasses.dataclass
class SweepResult:
    """A finished sweep: leading axes `[settings, seeds]` on `params`, `metrics`, ..."""

    config: Config  # the base configuration
    settings: list[Setting]
    params: Params
    metrics: UpdateMetrics
    updates: np.ndarray  # [N, S]
    diverged: np.ndarray  # [N, S] bool
    greedy_return: np.ndarray  # [N, S] (nan without evaluation)
    batch_size: int
    compile_seconds: float
    run_seconds: float

    @property
    def num_seeds(self) -> int:
        return int(self.greedy_return.shape[1])

    @property
    def evaluated(self) -> bool:
        return not bool(np.all(np.isnan(self.greedy_return)))

    def per_seed(self) -> np.ndarray:
        """`[N, S]`: each seed's greedy return, or without evaluation the mean training return
        of the last tenth of its updates."""
        if self.evaluated:
            return self.greedy_return
        returns = np.asarray(self.metrics.episode_return)
        tail = max(1, returns.shape[-1] // 10)
        return np.mean(returns[..., -tail:], axis=-1)

    def score(self) -> np.ndarray:
        """Per setting `[N]`: the mean of `per_seed` over seeds, -inf where a seed diverged."""
        per_seed = self.per_seed()
        per_seed = np.where(self.diverged | ~np.isfinite(per_seed), -np.inf, per_seed)
        return np.mean(per_seed, axis=1)

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.score()))

    @property
    def best(self) -> Config:
        """The best setting (highest `score`) as a `Config`."""
        return self.config.replace(**self.settings[self.best_index])

    def table(self, threshold: float | None = None) -> list[dict[str, Any]]:
        """One row per setting: its values, the greedy return's mean, std and worst seed, the
        final training return, the diverged seeds and, with `threshold`, the median environment
        steps at which the training return first reached it (over the seeds that did)."""
        rows = []
        returns = np.asarray(self.metrics.episode_return)
        steps = np.asarray(self.metrics.env_steps)
        tail = max(1, returns.shape[-1] // 10)
        for i, setting in enumerate(self.settings):
            greedy = self.greedy_return[i]
            row: dict[str, Any] = dict(setting)
            row["greedy_mean"] = float(np.mean(greedy))
            row["greedy_std"] = float(np.std(greedy))
            row["greedy_worst"] = float(np.min(greedy))
            row["train_return"] = float(np.mean(returns[i, :, -tail:]))
            row["diverged"] = int(np.sum(self.diverged[i]))
            if threshold is not None:
                first = [
                    _first_at(returns[i, s], steps[i, s], threshold) for s in range(len(greedy))
                ]
                reached = [x for x in first if x is not None]
                row["steps_to_threshold"] = float(np.median(reached)) if reached else math.nan
                row["seeds_reaching"] = len(reached)
            rows.append(row)
        return rows

    def markdown(self, threshold: float | None = None) -> str:
        """`table` as markdown, best setting marked, mean ± std."""
        rows = self.table(threshold)
        names = list(self.settings[0])
        head = [*names, "greedy return (mean ± std)", "worst seed", "training return", "diverged"]
        if threshold is not None:
            head += [f"steps to {threshold:g}", "seeds reaching"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, row in enumerate(rows):
            cells = [f"{row[n]:g}" for n in names]
            mark = " **best**" if i == self.best_index else ""
            cells += [
                f"{row['greedy_mean']:.1f} ± {row['greedy_std']:.1f}{mark}",
                f"{row['greedy_worst']:.1f}",
                f"{row['train_return']:.1f}",
                str(row["diverged"]),
            ]
            if threshold is not None:
                cells += [f"{row['steps_to_threshold']:.0f}", str(row["seeds_reaching"])]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _first_at(returns: np.ndarray, steps: np.ndarray, threshold: float) -> float | None:
    hits = np.nonzero(returns >= threshold)[0]
    return float(steps[hits[0]]) if hits.size else None


def seed_keys(key: PRNGKey, num_seeds: int) -> tuple[jax.Array, jax.Array]:
    """Training keys `split(key, S)` (those of `jit_train(num_seeds=S)`) and evaluation keys."""
    keys = jax.random.split(key, num_seeds)
    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1_000_003))(keys)
    return np.asarray(keys), np.asarray(eval_keys)


class Compiled(NamedTuple):
    """A sweep's program compiled for batches of `batch_size` settings over `num_seeds` seeds."""

    call: Callable[..., SweepOutput]
    names: tuple[str, ...]
    batch_size: int
    num_seeds: int
    seconds: float


def compile_sweep(
    config: Config,
    names: Sequence[str],
    batch_size: int,
    num_seeds: int,
    episodes: int = 20,
) -> Compiled:
    """Compiles (ahead of time) the program for `batch_size` settings x `num_seeds` seeds."""
    check_names(config, names)
    t0 = time.perf_counter()
    program = make_program(config, names, episodes)
    jitted = jax.jit(program, compiler_options=compiler_options(config, batch_size * num_seeds))
    hyperparams = {n: jax.ShapeDtypeStruct((batch_size,), jnp.float32) for n in names}
    keys = jax.ShapeDtypeStruct((num_seeds, 2), jnp.uint32)
    compiled = jitted.lower(hyperparams, keys, keys).compile()
    return Compiled(compiled, tuple(names), batch_size, num_seeds, time.perf_counter() - t0)


def run_batches(
    compiled: Compiled,
    settings: Sequence[Setting],
    key: PRNGKey,
    on_batch: Callable[[int, SweepOutput], None] | None = None,
) -> SweepOutput:
    """Runs `settings` through `compiled` in batches of its size (the last one padded with copies
    of its last setting, whose results are dropped); results `[N, S]` in `settings`' order.
    `on_batch(first_index, output)` is called after each batch (host arrays, padding dropped)."""
    keys, eval_keys = seed_keys(key, compiled.num_seeds)
    outputs = []
    for start in range(0, len(settings), compiled.batch_size):
        batch = list(settings[start : start + compiled.batch_size])
        real = len(batch)
        batch += [batch[-1]] * (compiled.batch_size - real)
        hyperparams = {n: np.asarray([s[n] for s in batch], np.float32) for n in compiled.names}
        out = jax.device_get(compiled.call(hyperparams, keys, eval_keys))
        out = jax.tree.map(lambda x, real=real: x[:real], out)
        if on_batch is not None:
            on_batch(start, out)
        outputs.append(out)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outputs)


def sweep(
    config: Config,
    space: Mapping[str, Sequence[float]],
    num_seeds: int = 1,
    key: PRNGKey | None = None,
    *,
    episodes: int = 20,
    batch_size: int | None = None,
    on_batch: Callable[[int, SweepOutput], None] | None = None,
) -> SweepResult:
    """Trains every setting of the grid `space` over `num_seeds` seeds in one compiled program.

    `space`: `{field: [values]}` over `TRACED_FIELDS`. `episodes`: greedy evaluation episodes per
    (setting, seed), inside the program (0: none). `batch_size`: settings per call of the
    program; by default as many as fit `memory_budget()` by `output_bytes`, evened out over the
    batches. Every setting is validated before anything compiles.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    if num_seeds < 1:
        raise ConfigError(f"sweep: num_seeds={num_seeds} must be at least 1")
    if not space or any(len(values) == 0 for values in space.values()):
        raise ConfigError(
            f"sweep: space={dict(space)!r} has no settings; give each swept field at least one "
            "value, e.g. {'lr': [1e-4, 3e-4]}"
        )
    settings = grid(space)
    check_settings(config, settings)
    names = list(space)
    if batch_size is None:
        per_setting = output_bytes(config, names, num_seeds, episodes)
        batch_size = choose_batch_size(len(settings), per_setting, memory_budget())
    elif batch_size < 1:
        raise ConfigError(f"sweep: batch_size={batch_size} must be at least 1")
    batch_size = min(batch_size, len(settings))
    compiled = compile_sweep(config, names, batch_size, num_seeds, episodes)
    t0 = time.perf_counter()
    out = run_batches(compiled, settings, key, on_batch)
    return SweepResult(
        config=config,
        settings=settings,
        params=out.params,
        metrics=out.metrics,
        updates=np.asarray(out.updates),
        diverged=np.asarray(out.diverged) != 0,
        greedy_return=np.asarray(out.greedy_return),
        batch_size=batch_size,
        compile_seconds=compiled.seconds,
        run_seconds=time.perf_counter() - t0,
    )
