"""The user's workflow end to end on tiny budgets: train into a run folder, resume bitwise,
Ctrl-C, evaluate, plot, record a video, the save/load API, config files."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import chex
import jax
import jax.flatten_util
import numpy as np
import pytest

import a3c_jax
from a3c_jax import Config
from a3c_jax.cli.main import main
from a3c_jax.runs import checkpoint_file, chunked
from a3c_jax.runs.checkpoint_file import flatten_state

TINY = ["num_envs=4", "n_steps=4", "total_timesteps=1600"]  # 100 updates
TINY_CONFIG = Config(num_envs=2, n_steps=2, total_timesteps=2 * 2 * 2000)  # 2,000 updates


def _assert_states_equal(a, b):
    flat_a, flat_b = flatten_state(a), flatten_state(b)
    assert flat_a.keys() == flat_b.keys()
    for path in flat_a:
        np.testing.assert_array_equal(flat_a[path], flat_b[path], err_msg=path)


def test_train_eval_plot_end_to_end(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    options = ["--num-seeds", "2", "--episodes", "2", "--chunk-updates", "25", "--tensorboard"]
    code = main(["train", "--no-cache", "--out", str(out), *options, "--set", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "finished at update 100 of 100" in printed
    assert "seed 1: greedy evaluation over 2 episodes" in printed
    # The run folder: resolved config, versions, per-seed metrics per chunk, checkpoints.
    saved_config = Config.from_dict(json.loads((out / "config.json").read_text()))
    assert saved_config == Config(num_envs=4, n_steps=4, total_timesteps=1600)
    info = json.loads((out / "run.json").read_text())
    assert info["versions"]["a3c_jax"] == a3c_jax.__version__
    assert info["status"] == "finished" and info["num_seeds"] == 2 and info["update"] == 100
    phases = ("config", "build", "compile", "train", "evaluate", "write")
    assert all(info["timings"][p] >= 0.0 for p in phases), info["timings"]
    assert "wall-clock: " in printed and "compile " in printed.split("wall-clock: ")[1]
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == chunked.METRIC_COLUMNS
    assert [(int(r["seed"]), int(r["update"])) for r in rows] == [
        (s, u) for u in (25, 50, 75, 100) for s in (0, 1)
    ]
    assert all(int(r["env_steps"]) == 16 * int(r["update"]) for r in rows)
    last = [r for r in rows if int(r["update"]) == 100]
    for r in last:
        assert float(r["return_min"]) <= float(r["return_mean"]) <= float(r["return_max"])
        assert float(r["steps_per_second"]) > 0 and float(r["learning_rate"]) > 0
    assert len(list((out / "tensorboard" / "seed_1").glob("events.out.tfevents.*"))) == 1
    assert [p.name for p in (out / "checkpoints").iterdir()][-1].endswith("100.ckpt")

    # The greedy report after training is evaluate's, seed by seed (key 10,000 + seed).
    saved = a3c_jax.load(out)
    seed_params = [jax.tree.map(lambda x, i=i: x[i], saved.params) for i in range(2)]
    for i, params in enumerate(seed_params):
        returns = np.asarray(
            a3c_jax.evaluate(saved.config, params, jax.random.PRNGKey(10_000 + i), 2)
        )
        figure = f"{returns.mean():.1f} ± {returns.std():.1f}"
        line = f"seed {i}: greedy evaluation over 2 episodes: {figure}"
        assert line in printed, (line, printed)

    # eval prints each seed's figure (key --seed + seed) and their mean; --video writes a GIF.
    gif = tmp_path / "episode.gif"
    code = main(["eval", str(out), "--episodes", "3", "--video", str(gif), "--video-steps", "50"])
    assert code == 0
    printed = capsys.readouterr().out
    means = []
    for i, params in enumerate(seed_params):
        returns = np.asarray(a3c_jax.evaluate(saved.config, params, jax.random.PRNGKey(i), 3))
        line = f"seed {i}: CartPole-v1 a2c, greedy over 3 episodes: {returns.mean():.2f} ± "
        assert line in printed, (line, printed)
        means.append(returns.mean())
    assert f"mean over 2 seeds: {np.mean(means):.2f} ± {np.std(means):.2f}" in printed
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    # --stochastic samples: evaluate's greedy=False with the same keys.
    assert main(["eval", str(out), "--episodes", "3", "--stochastic", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    for i, params in enumerate(seed_params):
        key = jax.random.PRNGKey(4 + i)
        returns = np.asarray(a3c_jax.evaluate(saved.config, params, key, 3, greedy=False))
        assert f"seed {i}: CartPole-v1 a2c, stochastic over 3 episodes: {returns.mean():.2f}" in (
            printed
        )

    # plot: for each axis (environment steps, wall-clock seconds), the mean over the seeds of
    # their training returns and a band from the lowest seed to the highest.

    figures = _saved_figures(monkeypatch)
    png = tmp_path / "curves.png"
    assert main(["plot", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (figure,) = figures
    metrics = chunked.read_metrics(out)
    steps_axis, time_axis = figure.axes
    assert "environment steps" in steps_axis.get_xlabel()
    assert "wall-clock" in time_axis.get_xlabel()
    for ax, x_name in ((steps_axis, "env_steps"), (time_axis, "time_s")):
        (line,) = ax.get_lines()
        x, y = line.get_xdata(), line.get_ydata()
        per_seed = []
        for s in (0, 1):
            rows = (metrics["seed"] == s) & np.isfinite(metrics["return_mean"])
            order = np.argsort(metrics[x_name][rows])
            per_seed.append(
                np.interp(x, metrics[x_name][rows][order], metrics["return_mean"][rows][order])
            )
        np.testing.assert_allclose(y, np.mean(per_seed, axis=0), rtol=1e-6)
        (band,) = ax.collections
        band_y = band.get_paths()[0].vertices[:, 1]
        np.testing.assert_allclose(band_y.min(), np.min(per_seed), rtol=1e-6)
        np.testing.assert_allclose(band_y.max(), np.max(per_seed), rtol=1e-6)
    assert time_axis.get_lines()[0].get_xdata().max() <= float(metrics["time_s"].max())


def test_resume_is_bitwise_identical(tmp_path):
    straight = chunked.train_run(
        TINY_CONFIG, tmp_path / "straight", chunk_updates=100, progress=False, log=lambda _: None
    )
    assert straight.status == "finished" and straight.update == 2000
    first = chunked.train_run(
        TINY_CONFIG,
        tmp_path / "resumed",
        chunk_updates=100,
        stop_after=1000,
        progress=False,
        log=lambda _: None,
    )
    assert first.status == "stopped" and first.update == 1000
    # Only the checkpoint on disk carries the state over.
    second = chunked.train_run(
        TINY_CONFIG, tmp_path / "resumed", resume=True, progress=False, log=lambda _: None
    )
    assert second.status == "finished" and second.update == 2000
    _assert_states_equal(straight.runner_state, second.runner_state)
    _assert_states_equal(
        a3c_jax.load(tmp_path / "straight").runner_state,
        a3c_jax.load(tmp_path / "resumed").runner_state,
    )
    a = chunked.read_metrics(tmp_path / "straight")
    b = chunked.read_metrics(tmp_path / "resumed")
    for column in chunked.METRIC_COLUMNS:
        if column not in ("time_s", "steps_per_second"):
            np.testing.assert_array_equal(a[column], b[column], err_msg=column)


def test_ctrl_c_saves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "a3c_jax", "train", "--no-cache", "--out", str(out)]
    command += ["--chunk-updates", "50", "--episodes", "0", "--set", "num_envs=4", "n_steps=4"]
    command += ["total_timesteps=100000000"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait until chunks are being written
            metrics = out / "metrics.csv"
            if metrics.exists() and len(metrics.read_text().splitlines()) > 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert f"resume with: a3c-jax train --resume {out}" in stdout.decode()
    saved = a3c_jax.load(out)
    assert saved.meta["status"] == "interrupted"
    assert 0 < saved.meta["update"] < Config(total_timesteps=100000000).num_updates
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    # The checkpoint holds, bitwise, the state of the same run stopped at that update here.
    straight = a3c_jax.train_run(
        saved.config,
        tmp_path / "straight",
        chunk_updates=50,
        stop_after=saved.meta["update"],
        progress=False,
        log=lambda _: None,
    )
    assert straight.update == saved.meta["update"]
    _assert_states_equal(saved.runner_state, straight.runner_state)


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    """The first Ctrl-C asks for a checkpoint after the running chunk; a second one, before that
    is done, raises KeyboardInterrupt at once: no checkpoint of the interrupted chunk, only the
    early one after the first chunk, and run.json says the run failed (it stays resumable)."""
    out = tmp_path / "run"
    config = Config(num_envs=4, n_steps=4, total_timesteps=16 * 1_000_000)
    main_thread = threading.main_thread().ident
    messages = []

    def first_ctrl_c_once_training():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            metrics = out / "metrics.csv"  # two chunks' rows: after the early checkpoint
            if metrics.exists() and len(metrics.read_text().splitlines()) > 2:
                signal.pthread_kill(main_thread, signal.SIGINT)
                return
            time.sleep(0.05)

    def log(message):
        messages.append(message)
        if message.startswith("interrupted"):  # the handler of the first: send the second
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=first_ctrl_c_once_training, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        a3c_jax.train_run(
            config, out, chunk_updates=50, checkpoint_seconds=1e9, progress=False, log=log
        )
    assert any(m.startswith("interrupted: saving a checkpoint") for m in messages), messages
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["update_000000050.ckpt"]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and "KeyboardInterrupt" in info["error"]


def test_save_load_api(tmp_path):
    config = Config(num_envs=4, n_steps=4, total_timesteps=1600)  # TINY: evaluate compiled once
    result = a3c_jax.jit_train(config, num_seeds=2)(jax.random.split(jax.random.PRNGKey(0), 2))
    a3c_jax.save(tmp_path / "run", result, config, seed=0)
    loaded = a3c_jax.load(tmp_path / "run")
    assert loaded.config == config and loaded.meta["num_seeds"] == 2
    chex.assert_trees_all_equal(loaded.params, result.params)
    one = a3c_jax.load(tmp_path / "run", index=1)
    chex.assert_trees_all_equal(one.params, jax.tree.map(lambda x: x[1], result.params))
    # The loaded seed plays exactly as the trained one (same key: same episodes).
    in_memory = jax.tree.map(lambda x: x[1], result.params)
    np.testing.assert_array_equal(
        a3c_jax.evaluate(one.config, one.params, jax.random.PRNGKey(0), 2),
        a3c_jax.evaluate(config, in_memory, jax.random.PRNGKey(0), 2),
    )
    with pytest.raises(ValueError, match=r"holds seeds 0\.\.1"):
        a3c_jax.load(tmp_path / "run", index=2)
    with pytest.raises(a3c_jax.RunDirError, match="--overwrite"):
        a3c_jax.save(tmp_path / "run", result, config)
    # A result of another configuration does not fit (and nothing is written).
    other = Config(num_envs=4, n_steps=4, total_timesteps=80, hidden_sizes=(8,))
    with pytest.raises(a3c_jax.CheckpointError, match="does not fit"):
        a3c_jax.save(tmp_path / "other", result, other)


# A run folder written by a3c_jax at commit 533e90d (`a3c-jax train --chunk-updates 25
# --stop-after 50 --set hidden_sizes=8 num_envs=2 n_steps=4 total_timesteps=800`), stopped at
# update 50 of 100, from before the optimiser state was kept over the flattened parameters: its
# checkpoint holds Adam's moments as one array per layer.
OLD_RUN = Path(__file__).parent / "data" / "run_533e90d"


def test_a_run_written_by_an_older_version_loads_and_resumes(tmp_path):
    raw = checkpoint_file.read_checkpoint(OLD_RUN / "checkpoints" / "update_000000050.ckpt").arrays
    assert any("mu['params']['actor_head']['kernel']" in path for path in raw)  # really old
    saved = a3c_jax.load(OLD_RUN)
    assert saved.meta["update"] == 50 and saved.config.hidden_sizes == (8,)
    train_state = saved.runner_state.train_state
    params = flatten_state(train_state.params)
    for path, array in params.items():
        np.testing.assert_array_equal(array, raw[".train_state.params" + path], err_msg=path)
    # Each moment's per-layer arrays, joined in the order of the flattened parameters.
    adam = train_state.opt_state[1][0]
    for moment in ("mu", "nu"):
        prefix = f".train_state.opt_state[1][0].{moment}"
        joined = np.concatenate([raw[prefix + path].ravel() for path in params])
        np.testing.assert_array_equal(getattr(adam, moment), joined, err_msg=moment)
    assert int(adam.count) == 50
    # It resumes (in a copy) to the end of its budget, and evaluates.
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    outcome = a3c_jax.train_run(saved.config, run, resume=True, progress=False, log=lambda _: None)
    assert outcome.status == "finished" and outcome.update == 100
    np.testing.assert_array_equal(chunked.read_metrics(run)["update"], [25, 50, 75, 100])
    chex.assert_tree_all_finite(outcome.runner_state.train_state.params)
    returns = a3c_jax.evaluate(saved.config, a3c_jax.load(run).params, jax.random.PRNGKey(0), 2)
    assert returns.shape == (2,)


def test_config_file_yaml_and_json(tmp_path, capsys):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("env_name: Acrobot-v1\nlr: 7e-4\nhidden_sizes: [32, 32]\n")
    assert main(["train", "--config", str(yaml_file), "--set", "num_envs=4", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["env_name"] == "Acrobot-v1" and resolved["lr"] == 7e-4
    assert resolved["hidden_sizes"] == [32, 32] and resolved["num_envs"] == 4
    # The resolved config a run folder holds is itself a valid --config file.
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps(resolved))
    assert main(["train", "--config", str(json_file), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == resolved


def test_resume_of_a_cli_run_and_overwrite(tmp_path, capsys):
    # The same config, seeds and chunk as the end-to-end test: the compiled chunk is reused.
    out = tmp_path / "run"
    base = ["train", "--no-cache", "--out", str(out), "--episodes", "0", "--num-seeds", "2"]
    base += ["--chunk-updates", "25"]
    every = ["--checkpoint-every", "25"]
    assert main([*base, *every, "--stop-after", "50", "--set", *TINY]) == 0
    assert "stopped at update 50 of 100" in capsys.readouterr().out
    # A crash after metrics.csv got the rows of update 75 but before their checkpoint: resuming
    # from update 50 drops those rows and writes the real ones.
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(out / "metrics.csv", "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=chunked.METRIC_COLUMNS, lineterminator="\r\n")
        writer.writerows({**row, "update": 75, "return_mean": 12345.0} for row in rows[-2:])
    assert main(["train", "--no-cache", "--episodes", "0", *every, "--resume", str(out)]) == 0
    assert "finished at update 100 of 100" in capsys.readouterr().out
    metrics = chunked.read_metrics(out)
    np.testing.assert_array_equal(metrics["update"], [25, 25, 50, 50, 75, 75, 100, 100])
    assert not np.any(metrics["return_mean"] == 12345.0)
    # A checkpoint every 25 updates (25, 50, then 75, 100 after the resume): the newest 3 kept.
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == [f"update_{u:09d}.ckpt" for u in (50, 75, 100)]
    # --overwrite replaces the run (without it the folder is refused: see test_reliability).
    # --checkpoint-seconds: a checkpoint after every chunk once the time is up (1e-9 s: always;
    # 1e9 s: never, only the last).
    assert main([*base, "--overwrite", "--keep-checkpoints", "10", "--checkpoint-seconds", "1e-9",
                 "--stop-after", "75", "--set", *TINY]) == 0  # fmt: skip
    np.testing.assert_array_equal(chunked.read_metrics(out)["update"], [25, 25, 50, 50, 75, 75])
    assert a3c_jax.load(out).meta["update"] == 75
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == [f"update_{u:09d}.ckpt" for u in (25, 50, 75)]
    assert main([*base, "--overwrite", "--checkpoint-seconds", "1e9", "--stop-after", "75",
                 "--set", *TINY]) == 0  # fmt: skip
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["update_000000075.ckpt"]


def test_run_json_is_written_atomically(tmp_path, monkeypatch):
    """A crash while `run.json` is rewritten (here: at the final checkpoint) leaves the previous
    version whole and no temporary file beside it."""
    out = tmp_path / "run"
    real_replace = os.replace
    writes = []

    def crash_on_the_last(src, dst):
        if str(dst).endswith("run.json"):
            writes.append(json.loads(Path(src).read_text())["status"])
            if writes[-1] == "finished":
                raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_the_last)
    with pytest.raises(OSError, match="disk full"):
        a3c_jax.train_run(
            TINY_CONFIG.replace(total_timesteps=400), out, progress=False, log=lambda _: None
        )
    assert writes[0] == "running" and writes[-2:] == ["finished", "failed"]
    info = json.loads((out / "run.json").read_text())  # whole, valid JSON
    assert info["status"] == "failed" and "disk full" in info["error"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".a3c_jax.lock", "checkpoints", "config.json", "metrics.csv", "run.json"]
    )


def test_video_renderers_cover_the_preset_environments(key):
    from a3c_jax import envs
    from a3c_jax.viz import video

    for name in ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0"):
        spec = envs.make_env(name)
        _, state = spec.env.reset(key, spec.env_params)
        image = video.STATE_RENDERERS[name](state, spec.env_params)
        assert image.size == (video.WIDTH, video.HEIGHT)
        assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 2  # something drawn
    for name in ("Catch-bsuite", "Breakout-MinAtar"):
        assert video.can_render(name)
        spec = envs.make_env(name)
        obs, _ = spec.env.reset(key, spec.env_params)
        pixels = np.asarray(video.draw_grid(np.asarray(obs))).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) >= 2
    assert not video.can_render("MetaMaze-misc")  # a vector observation, no renderer


CACHE_SCRIPT = """
import sys

import jax

import a3c_jax

events = []
jax.monitoring.register_event_listener(lambda event, **kwargs: events.append(event))
a3c_jax.enable_compilation_cache(sys.argv[1])
config = a3c_jax.Config(num_envs=4, n_steps=4, total_timesteps=64)
result = jax.block_until_ready(a3c_jax.jit_train(config)(jax.random.PRNGKey(0)))
print("params", float(jax.flatten_util.ravel_pytree(result.params)[0].sum()))
for name in ("cache_hits", "cache_misses"):
    print(name, events.count("/jax/compilation_cache/" + name))
"""


def test_compilation_cache_lets_a_second_process_load_instead_of_compiling(tmp_path):
    """`enable_compilation_cache`: the first process compiles and fills the cache; a second one
    with the same config loads every program from it (no cache miss) and trains the same
    parameters."""
    script = tmp_path / "train.py"
    script.write_text(CACHE_SCRIPT)
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(dict(line.split() for line in done.stdout.splitlines()))
    first, second = outputs
    assert int(first["cache_misses"]) >= 1 and int(first["cache_hits"]) == 0, first
    # Every program the first process compiled, the second loaded.
    assert int(second["cache_hits"]) == int(first["cache_misses"]), (first, second)
    assert int(second["cache_misses"]) == 0, second
    assert first["params"] == second["params"]
    assert any((tmp_path / "cache").iterdir())


def test_progress_is_a_plain_line_on_a_non_terminal(capsys):
    """Without a terminal (pytest captures stderr) no bar is drawn: a plain line of steps,
    percentage, rate and return, at most every `log_every_s` seconds; none when disabled."""
    progress = chunked.Progress(total_steps=2_000, start_steps=0, enabled=True, log_every_s=0.0)
    assert progress.bar is None
    progress.update(500, 1234.4, 17.25)
    progress.update(1_000, 99.0, float("nan"))
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "500/2,000 env steps (25%), 1,234 steps/s, return 17.2",
        "1,000/2,000 env steps (50%), 99 steps/s, return -",
    ]
    slow = chunked.Progress(total_steps=2_000, start_steps=0, enabled=True, log_every_s=3600)
    slow.update(500, 1.0, 1.0)
    off = chunked.Progress(total_steps=2_000, start_steps=0, enabled=False, log_every_s=0.0)
    off.update(500, 1.0, 1.0)
    assert capsys.readouterr().err == ""


def test_plot_band_runs_from_the_lowest_seed_to_the_highest(tmp_path, monkeypatch):
    """Three seeds with known curves (no training): the line is their mean at every x, the band
    their lowest and highest (not, say, the mean ± a standard deviation, which two seeds cannot
    tell apart from it)."""

    run = tmp_path / "run"
    run.mkdir()
    steps = np.arange(1, 6) * 100
    curves = {0: 0.0 * steps, 1: 10.0 + 0.0 * steps, 2: steps / 5.0}  # 2 crosses 1 at 50
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=chunked.METRIC_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for i, step in enumerate(steps):
            for seed, curve in curves.items():
                row = dict.fromkeys(chunked.METRIC_COLUMNS, 0.0)
                row.update(seed=seed, update=i + 1, env_steps=step, time_s=step / 100.0)
                writer.writerow({**row, "return_mean": curve[i]})
    figures = _saved_figures(monkeypatch)
    assert main(["plot", str(run), "--out", str(tmp_path / "curves.png")]) == 0
    for ax in figures[0].axes:
        (line,) = ax.get_lines()
        x = np.asarray(line.get_xdata())
        scale = 1.0 if ax.get_xlabel().startswith("environment") else 100.0
        ys = np.stack([np.interp(x, steps / scale, curve) for curve in curves.values()])
        np.testing.assert_allclose(line.get_ydata(), ys.mean(0), atol=1e-9)
        vertices = ax.collections[0].get_paths()[0].vertices
        for xi, low, high in zip(x[::20], ys.min(0)[::20], ys.max(0)[::20], strict=True):
            at = vertices[np.isclose(vertices[:, 0], xi), 1]
            np.testing.assert_allclose([at.min(), at.max()], [low, high], atol=1e-9)


def _saved_figures(monkeypatch) -> list:
    """The list every matplotlib figure saved from now on is appended to (then saved as usual)."""
    import matplotlib.figure

    figures = []
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(fig, *args, **kwargs):
        figures.append(fig)
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures
