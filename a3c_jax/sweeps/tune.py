"""Optuna search over the traced hyperparameters, a batch of trials per call of one program.

Each round asks Optuna for `batch` trials (ask-and-tell), trains them all over `num_seeds` seeds
in one call of the sweep program compiled once at the start (`a3c_jax.sweeps.grid.compile_sweep`),
and tells Optuna each trial's mean greedy return over seeds (or a quantile of it). Each trial also
reports its training-return curve as intermediate values, so Optuna's pruner can mark trials that
trail the others at the same step as pruned; a trial of a round trains to its end whatever the
pruner says (the round is one program), so pruning informs the sampler but saves no compute.

The study lives in Optuna's own storage, `DIR/study.db` (SQLite), so `--resume DIR` continues it;
after every round `DIR/best.json` holds the best trial's whole `Config` (for `a3c-jax train
--config DIR/best.json`), `DIR/trials.csv` every trial, and `DIR/tune.json` what the study is.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from a3c_jax.config import Config, ConfigError
from a3c_jax.runs import run_claim, safe_io
from a3c_jax.runs.run_folder import RunDirError, read_json, versions, write_json
from a3c_jax.sweeps import grid as sw

STUDY_FILE = "study.db"
TUNE_FILE = "tune.json"
STUDY_NAME = "a3c_jax"
REPORT_POINTS = 10  # intermediate values per trial, for the pruner


@dataclasses.dataclass(frozen=True)
class Range:
    """A hyperparameter's search range, uniform or log-uniform."""

    low: float
    high: float
    log: bool = False

    def to_text(self) -> str:
        return f"{self.low:g}:{self.high:g}" + (":log" if self.log else "")


DEFAULT_SPACE: dict[str, Range] = {
    "lr": Range(1e-4, 1e-2, log=True),
    "ent_coef": Range(0.0, 0.05),
    "vf_coef": Range(0.1, 1.0),
    "gae_lambda": Range(0.8, 1.0),
    "max_grad_norm": Range(0.3, 10.0, log=True),
}


def parse_range(name: str, text: str) -> Range:
    """`"1e-5:1e-2:log"` or `"0:0.05"` -> `Range`; a `ConfigError` naming `name` otherwise."""
    parts = text.split(":")
    log = parts[-1] == "log"
    bounds = parts[:-1] if log else parts
    try:
        low, high = (float(b) for b in bounds)
    except ValueError as error:
        raise ConfigError(
            f"--space {name}={text!r}: expected LOW:HIGH or LOW:HIGH:log, e.g. lr=1e-5:1e-2:log"
        ) from error
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"--space {name}={text!r}: both bounds must be finite numbers")
    if not low < high or (log and low <= 0):
        raise ConfigError(
            f"--space {name}={text!r}: needs LOW < HIGH" + (" and LOW > 0 for :log" if log else "")
        )
    return Range(low, high, log)


def check_space(config: Config, space: Mapping[str, Range]) -> None:
    """The names must be traced fields, and both ends of each range valid values."""
    sw.check_names(config, list(space))
    for name, r in space.items():
        for value in (r.low, r.high):
            try:
                config.replace(**{name: value})
            except ConfigError as error:
                raise ConfigError(f"--space {name}={r.to_text()}: {error}") from error


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError as error:
        raise ConfigError("tune needs Optuna: pip install 'a3c_jax[optuna]'") from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


SQLITE_MAGIC = b"SQLite format 3\x00"


def storage_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite file `path`, built (and escaped) by SQLAlchemy: a folder
    named `tu?x=1` or `tu%41` is a folder name, never part of the URL's syntax."""
    from sqlalchemy.engine import URL

    return URL.create("sqlite", database=str(path.resolve())).render_as_string(hide_password=False)


def check_study_file(path: Path, resume: bool) -> None:
    """Raises `RunDirError` unless `path` may hold the study: a regular file (never a symlink)
    that is an SQLite database; when resuming it must exist. An empty or garbage file is an
    error, never a fresh study."""
    safe_io.check_target(path)
    if not path.exists():
        if resume:
            raise RunDirError(f"--resume {path.parent}: holds no study ({path.name} is missing)")
        return
    head = safe_io.read_regular(path)[: len(SQLITE_MAGIC)]
    if head != SQLITE_MAGIC:
        what = "is empty (0 bytes)" if not head else "is not an SQLite database"
        raise RunDirError(
            f"{path} {what}: not an Optuna study; restore it from a copy, or start a new study "
            "with --out NEW_FOLDER"
        )


def open_study(folder: Path, seed: int, resume: bool) -> Any:
    """The study in `folder/study.db`: created (TPE sampler seeded by `seed`, median pruner), or
    loaded when `resume` (`RunDirError` if there is none, or the file is damaged or locked)."""
    optuna = require_optuna()
    import sqlalchemy.exc

    path = folder / STUDY_FILE
    check_study_file(path, resume)
    storage = storage_url(path)
    try:
        trials = _trials_in(storage)
        if resume and trials is None:
            raise RunDirError(f"--resume {folder}: {path} holds no study named {STUDY_NAME!r}")
        return optuna.create_study(
            study_name=STUDY_NAME,
            storage=storage,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed + len(trials or [])),
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=4, n_warmup_steps=REPORT_POINTS // 2
            ),
            load_if_exists=resume,
        )
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise RunDirError(f"{path}: cannot open the study ({reason})") from error


def _trials_in(storage: str) -> list | None:
    """The trials already in `storage` (None: no study there yet): a resumed study's sampler is
    seeded past them, so that it does not ask the first round's settings again."""
    optuna = require_optuna()
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage).trials
    except KeyError:
        return None


def trial_value(greedy: np.ndarray, quantile: float | None) -> float:
    """What Optuna is told for one trial: the mean over seeds, or their `quantile`."""
    return float(np.mean(greedy) if quantile is None else np.quantile(greedy, quantile))


def report_curve(trial: Any, returns: np.ndarray) -> bool:
    """Reports a trial's training return (mean over seeds `[S, U]`) at `REPORT_POINTS` steps;
    whether the pruner would prune it."""
    with warnings.catch_warnings():  # no seed has finished an episode yet: nan, not reported
        warnings.simplefilter("ignore", RuntimeWarning)
        curve = np.nanmean(returns, axis=0)
    num_updates = curve.shape[0]
    for step in range(REPORT_POINTS):
        value = float(curve[min(num_updates - 1, (step + 1) * num_updates // REPORT_POINTS)])
        if math.isfinite(value):
            trial.report(value, step)
    return bool(trial.should_prune())


def tell_round(study: Any, trials: list, out: sw.SweepOutput, quantile: float | None) -> None:
    """Tells the study each trial's outcome: failed (a seed diverged or did not finish), pruned
    (the pruner says so on its curve) or its value."""
    optuna = require_optuna()
    returns = np.asarray(out.metrics.episode_return)
    for i, trial in enumerate(trials):
        greedy = np.asarray(out.greedy_return[i])
        trial.set_user_attr("greedy_per_seed", [float(g) for g in greedy])
        if np.any(out.diverged[i] != 0) or not np.all(np.isfinite(greedy)):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif report_curve(trial, returns[i]):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, trial_value(greedy, quantile))


def _finished(study: Any) -> int:
    return sum(t.state.is_finished() for t in study.trials)


def tune(
    config: Config,
    space: Mapping[str, Range],
    folder: Path,
    *,
    trials: int,
    batch: int,
    num_seeds: int,
    seed: int = 0,
    episodes: int = 20,
    quantile: float | None = None,
    resume: bool = False,
    on_round: Callable[[int, float, Any], None] | None = None,
) -> Any:
    """Runs the study in `folder` until it holds `trials` finished trials; returns it.

    `on_round(round_index, seconds, study)` after each round. The program compiles once, for
    `batch` settings x `num_seeds` seeds; a last round of fewer trials is padded."""
    check_space(config, space)
    lock = run_claim.lock_folder(folder)  # one process per study folder (closed: released)
    try:
        return _tune_locked(
            config,
            space,
            folder,
            trials,
            batch,
            num_seeds,
            seed,
            episodes,
            quantile,
            resume,
            on_round,
        )
    finally:
        os.close(lock)


def _tune_locked(
    config: Config,
    space: Mapping[str, Range],
    folder: Path,
    trials: int,
    batch: int,
    num_seeds: int,
    seed: int,
    episodes: int,
    quantile: float | None,
    resume: bool,
    on_round: Callable[[int, float, Any], None] | None,
) -> Any:
    study = open_study(folder, seed, resume)
    names = list(space)
    compiled = sw.compile_sweep(config, names, batch, num_seeds, episodes)
    info = {
        "config": config.to_dict(),
        "space": {n: r.to_text() for n, r in space.items()},
        "batch": batch,
        "num_seeds": num_seeds,
        "seed": seed,
        "episodes": episodes,
        "quantile": quantile,
        "compile_seconds": round(compiled.seconds, 3),
        "command": sys.argv,
        "versions": versions(),
    }
    write_json(folder / TUNE_FILE, info)
    while (done := _finished(study)) < trials:
        round_index = math.ceil(done / batch)
        asked = [study.ask() for _ in range(min(batch, trials - done))]
        settings = [
            {n: t.suggest_float(n, r.low, r.high, log=r.log) for n, r in space.items()}
            for t in asked
        ]
        t0 = time.perf_counter()
        key = jax.random.fold_in(jax.random.PRNGKey(seed), round_index)
        out = sw.run_batches(compiled, settings, key)
        tell_round(study, asked, out, quantile)
        write_results(folder, config, study)
        if on_round is not None:
            on_round(round_index, time.perf_counter() - t0, study)
    return study


def best_config(config: Config, study: Any) -> Config | None:
    """The best finished trial's setting as a `Config`, if any trial finished."""
    completed = [t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
    if not completed:
        return None
    return config.replace(**max(completed, key=lambda t: t.value).params)


def write_results(folder: Path, config: Config, study: Any) -> None:
    """`trials.csv` (every trial) and `best.json` (the best one's whole Config)."""
    names = sorted({n for t in study.trials for n in t.params})
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["trial", "state", "value", *names])
    for t in study.trials:
        value = "" if t.value is None else f"{t.value:.6g}"
        params = [f"{t.params[n]:.6g}" if n in t.params else "" for n in names]
        writer.writerow([t.number, t.state.name, value, *params])
    safe_io.write_atomic(folder / "trials.csv", text.getvalue().encode())
    best = best_config(config, study)
    if best is not None:
        write_json(folder / "best.json", best.to_dict())


def read_tune_info(folder: Path) -> dict[str, Any]:
    """`tune.json` of a study folder to resume, checked; `RunDirError` if it holds none or it
    is malformed (naming the file and what is wrong)."""
    if not (folder / TUNE_FILE).is_file() or not (folder / STUDY_FILE).is_file():
        raise RunDirError(f"--resume {folder}: holds no a3c_jax study ({TUNE_FILE}, {STUDY_FILE})")
    info = read_json(folder / TUNE_FILE)
    kinds = {"config": dict, "space": dict, "batch": int, "num_seeds": int, "seed": int}
    kinds.update(episodes=int, quantile=(float, int, type(None)))
    for name, kind in kinds.items():
        if name not in info:
            raise RunDirError(f"{folder / TUNE_FILE}: has no {name!r}; it is not a3c_jax's")
        value = info[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RunDirError(f"{folder / TUNE_FILE}: {name}={value!r} is not valid")
    for name in ("batch", "num_seeds"):
        if info[name] < 1:
            raise RunDirError(f"{folder / TUNE_FILE}: {name}={info[name]} must be >= 1")
    if not all(isinstance(v, str) for v in info["space"].values()):
        raise RunDirError(f"{folder / TUNE_FILE}: space={info['space']!r} is not valid")
    return info
