"""Trust, round three (issue 31): no write through a symlink, no overwritten user file, no lost
timeline, no traceback. One test (or a few) per numbered item of the issue, and per group of
tracebacks; the docs' reliability page names each.

Signals, locks and the launcher are tested against real processes; the rest in-process through
`cli.main`, on one tiny budget (8 updates) whose chunk compiles once."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import a3c_jax
from a3c_jax import Config
from a3c_jax.cli.main import main
from a3c_jax.errors import UnsafePathError
from a3c_jax.runs import checkpoint_file, chunked, run_claim, safe_io

REPO = Path(__file__).resolve().parents[1]
TINY = ["total_timesteps=256", "num_envs=4", "n_steps=8"]  # 8 updates
CLI = ["train", "--no-cache", "--episodes", "0", "--chunk-updates", "2", "--no-progress"]
RESUME = ["train", "--no-cache", "--episodes", "0", "--no-progress", "--resume"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _ckpt(update: int) -> str:
    return f"update_{update:09d}.ckpt"


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A CLI run stopped at update 6 of 8, checkpoints 2, 4 and 6 kept; tests copy it."""
    out = tmp_path_factory.mktemp("base") / "run"
    argv = [*CLI, "--out", str(out), "--checkpoint-every", "2", "--keep-checkpoints", "10"]
    assert main([*argv, "--stop-after", "6", "--set", *TINY]) == 0
    assert _names(out / "checkpoints") == [_ckpt(2), _ckpt(4), _ckpt(6)]
    return out


@pytest.fixture
def run(stopped, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(stopped, out, symlinks=True)
    return out


@pytest.fixture
def outside(tmp_path) -> Path:
    """A file of the user's outside every run folder (`~/.bashrc` in the issue)."""
    path = tmp_path / "bashrc"
    path.write_text("export SECRET=1\n")
    return path


# --------------------------------------------------------------------------- data loss


def test_1_a_symlinked_lock_file_is_refused_and_its_target_untouched(run, outside, capsys):
    (run / ".a3c_jax.lock").unlink(missing_ok=True)
    (run / ".a3c_jax.lock").symlink_to(outside)
    assert main([*RESUME, str(run)]) == 2
    assert "is a symlink" in capsys.readouterr().err
    assert main([*CLI, "--out", str(run), "--overwrite", "--set", *TINY]) == 2
    assert ".a3c_jax.lock" in capsys.readouterr().err
    assert outside.read_text() == "export SECRET=1\n"
    assert (run / ".a3c_jax.lock").is_symlink()


@pytest.mark.parametrize(
    "stray", ["tensorboard/my_logs/notes.txt", "checkpoints/process_0/notes.txt", "notes.txt"]
)
def test_2_overwrite_deletes_only_what_a3c_jax_wrote_anywhere(run, stray, capsys):
    (run / stray).parent.mkdir(parents=True, exist_ok=True)
    (run / stray).write_text("mine")
    before = _files(run)
    assert main([*CLI, "--out", str(run), "--overwrite", "--set", *TINY]) == 2
    err = capsys.readouterr().err
    named = stray if stray.startswith("checkpoints") or "/" not in stray else "tensorboard/my_logs/"
    assert f"also {named}" in err and "which a3c_jax did not write" in err, err
    assert _files(run) == before


def test_2_overwrite_replaces_a3c_jax_files_in_subfolders_too(run, capsys):
    # a3c_jax's own files below its subfolders (a multi-process run's, TensorBoard's) go.
    (run / "checkpoints" / "process_0").mkdir()
    shutil.copy(run / "checkpoints" / _ckpt(2), run / "checkpoints" / "process_0" / _ckpt(2))
    (run / "tensorboard" / "seed_0").mkdir(parents=True)
    (run / "tensorboard" / "seed_0" / "events.out.tfevents.1.host").write_bytes(b"x")
    argv = [*CLI, "--out", str(run), "--overwrite", "--stop-after", "2", "--set", *TINY]
    assert main(argv) == 0
    assert not (run / "tensorboard").exists()
    assert _names(run / "checkpoints") == [_ckpt(2)]


def test_3_eval_video_never_overwrites_a_file(run, tmp_path, capsys):
    video = tmp_path / "out.gif"
    video.write_bytes(b"my own gif")
    assert main(["eval", str(run), "--episodes", "1", "--video", str(video)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert video.read_bytes() == b"my own gif"


def test_4_resuming_an_older_checkpoint_starts_a_new_timeline(run, capsys):
    older = run / "checkpoints" / _ckpt(2)
    assert main([*RESUME, str(older), "--stop-after", "2"]) == 0
    assert "starts a new timeline" in capsys.readouterr().out
    # The abandoned timeline's later checkpoints are set aside (kept), the new one's kept.
    names = _names(run / "checkpoints")
    assert names == ["abandoned_0_" + _ckpt(4), "abandoned_0_" + _ckpt(6), _ckpt(2), _ckpt(4)]
    new_4 = (run / "checkpoints" / _ckpt(4)).read_bytes()
    # The next plain resume continues the new timeline, not the abandoned update 6.
    assert main([*RESUME, str(run), "--stop-after", "2"]) == 0
    out = capsys.readouterr().out
    assert f"from {_ckpt(4)} (update 4)" in out and "stopped at update 6 of 8" in out
    np.testing.assert_array_equal(chunked.read_metrics(run)["update"], [2, 4, 6])
    assert (run / "checkpoints" / _ckpt(4)).read_bytes() == new_4  # nothing of it pruned
    assert a3c_jax.load(run).meta["parent"] == _ckpt(4)
    # The abandoned checkpoints still load by name.
    assert a3c_jax.load(run / "checkpoints" / ("abandoned_0_" + _ckpt(6))).meta["update"] == 6


def test_5_pruning_never_keeps_a_damaged_newest_over_a_good_one(run, capsys):
    newest = run / "checkpoints" / _ckpt(6)
    newest.write_bytes(newest.read_bytes()[:-50])  # truncated
    argv = [str(run), "--keep-checkpoints", "1", "--stop-after", "2"]
    assert main([*RESUME, *argv]) == 0
    assert "skipping a damaged checkpoint" in capsys.readouterr().out
    names = _names(run / "checkpoints")
    assert names == ["abandoned_0_" + _ckpt(6), _ckpt(6)]  # the good new 6 is the one kept
    assert a3c_jax.load(run).meta["update"] == 6
    assert main(["eval", str(run), "--episodes", "1"]) == 0


def _study_folder(folder: Path) -> None:
    """A study folder as `tune` writes it, but for its `study.db`."""
    folder.mkdir()
    info = {
        "config": Config(num_envs=4, n_steps=8, total_timesteps=256).to_dict(),
        "space": {"lr": "0.0001:0.01:log"},
        "batch": 1,
        "num_seeds": 1,
        "seed": 0,
        "episodes": 1,
        "quantile": None,
    }
    (folder / "tune.json").write_text(json.dumps(info))
    (folder / "best.json").write_text('{"mine": 1}')
    (folder / "trials.csv").write_text("trial\n")


@pytest.mark.parametrize("content", [b"", b"garbage, not a database" * 10])
def test_6_an_empty_or_garbage_study_db_is_an_error_not_a_fresh_study(tmp_path, content, capsys):
    pytest.importorskip("optuna")
    folder = tmp_path / "tune"
    _study_folder(folder)
    (folder / "study.db").write_bytes(content)
    before = _files(folder)
    assert main(["tune", "--trials", "2", "--resume", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "study.db" in err and ("empty" in err or "not an SQLite database" in err), err
    assert {k: v for k, v in _files(folder).items() if k != ".a3c_jax.lock"} == before


# ------------------------------------------------------------- writes outside the folder


def test_7_a_symlinked_metrics_csv_or_checkpoints_folder_is_refused(run, outside, capsys):
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").symlink_to(outside)
    assert main([*RESUME, str(run)]) == 2
    assert "metrics.csv is a symlink" in capsys.readouterr().err
    assert outside.read_text() == "export SECRET=1\n"
    # A checkpoints/ folder that is a symlink: nothing written or pruned where it points.
    (run / "metrics.csv").unlink()
    elsewhere = run.parent / "elsewhere"
    (run / "checkpoints").rename(elsewhere)
    (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    before = _files(elsewhere)
    argv = [str(run), "--keep-checkpoints", "1", "--stop-after", "2"]
    assert main([*RESUME, *argv]) == 2
    assert "checkpoints is a symlink" in capsys.readouterr().err
    assert _files(elsewhere) == before


def test_7_safe_writes_refuse_symlinks_and_fifos(tmp_path, outside):
    link = tmp_path / "trials.csv"
    link.symlink_to(outside)
    with pytest.raises(UnsafePathError, match="is a symlink"):
        safe_io.write_atomic(link, b"x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePathError, match="FIFO"):
        safe_io.write_atomic(fifo, b"x")
    assert outside.read_text() == "export SECRET=1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bashrc", "fifo", "trials.csv"]


def test_7_tune_results_are_never_written_through_a_symlink(tmp_path, outside):
    optuna = pytest.importorskip("optuna")
    from a3c_jax.sweeps import tune

    study = optuna.create_study(direction="maximize")
    study.tell(study.ask(), 1.0)
    (tmp_path / "trials.csv").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        tune.write_results(tmp_path, Config(), study)
    assert outside.read_text() == "export SECRET=1\n"


@pytest.mark.parametrize("name", ["tu?x=1", "tu%41", "a#b"])
def test_8_the_study_url_is_built_safely(tmp_path, name):
    pytest.importorskip("optuna")
    from a3c_jax.sweeps import tune

    folder = tmp_path / name
    folder.mkdir()
    tune.open_study(folder, seed=0, resume=False)
    assert (folder / "study.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing beside it


def test_9_a_fifo_named_like_a_checkpoint_is_an_error_not_a_hang(run, capsys):
    os.mkfifo(run / "checkpoints" / _ckpt(99))
    done = []
    thread = threading.Thread(
        target=lambda: done.append(main(["eval", str(run), "--episodes", "1"])), daemon=True
    )
    thread.start()
    thread.join(60)
    assert done == [1], "eval hung on a FIFO"
    assert "not a regular file" in capsys.readouterr().err


# --------------------------------------------------------------------------- promises


def _train_process(out: Path, *argv: str) -> tuple[subprocess.Popen, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "a3c_jax", "train", "--no-cache", "--out", str(out)]
    command += ["--episodes", "0", "--no-progress", *argv]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def _wait_line(proc, lines: list[str], start: str, timeout: float) -> float:
    """Waits for a line starting with `start`; returns when it came (monotonic)."""
    deadline = time.monotonic() + timeout
    while not any(line.startswith(start) for line in lines):
        assert proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, f"no {start!r} line: {''.join(lines)}"
        time.sleep(0.02)
    return time.monotonic()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_10_a_signal_is_acknowledged_at_once_and_a_second_aborts(tmp_path, signum):
    # One chunk of 1,000,000 updates: minutes; the run is inside it once compiled.
    argv = ["--chunk-updates", "1000000", "--set", "num_envs=4", "n_steps=4"]
    proc, lines = _train_process(tmp_path / "run", *argv, "total_timesteps=100000000")
    try:
        _wait_line(proc, lines, "compiled", 240)
        time.sleep(1.0)  # well inside the chunk
        sent = time.monotonic()
        proc.send_signal(signum)
        acknowledged = _wait_line(proc, lines, "interrupted", 30)
        assert acknowledged - sent < 3.0, "".join(lines)
        sent = time.monotonic()
        proc.send_signal(signum)
        proc.wait(timeout=30)
        assert time.monotonic() - sent < 5.0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(lines)
    assert "Traceback" not in "".join(lines)


def test_11_a_checkpoint_of_another_configuration_is_refused(run, capsys):
    content = checkpoint_file.read_checkpoint(run / "checkpoints" / _ckpt(6))
    other = content.config.replace(lr=0.5)
    data = checkpoint_file.encode(content.arrays, other, {**content.meta, "update": 8})
    (run / "checkpoints" / _ckpt(8)).write_bytes(data)
    config_json = (run / "config.json").read_bytes()
    assert main([*RESUME, str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{_ckpt(8)} is not a checkpoint of this run" in err and "lr: checkpoint 0.5" in err
    assert (run / "config.json").read_bytes() == config_json


def test_12_tune_takes_the_folder_lock(tmp_path, capsys):
    pytest.importorskip("optuna")
    folder = tmp_path / "tune"
    _study_folder(folder)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from a3c_jax.runs import run_claim\n"
            "fd = run_claim.lock_folder(sys.argv[1]); print('LOCKED', flush=True); time.sleep(60)",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        from a3c_jax.sweeps import tune

        with pytest.raises(a3c_jax.RunDirError, match="in use by another a3c_jax process"):
            tune.tune(
                Config(num_envs=4, n_steps=8, total_timesteps=256),
                {"lr": tune.Range(1e-4, 1e-2, True)},
                folder,
                trials=1,
                batch=1,
                num_seeds=1,
                resume=True,
            )
    finally:
        holder.kill()
        holder.wait()


def test_13_infinite_optimizer_eps_is_refused():
    with pytest.raises(a3c_jax.ConfigError, match="optimizer_eps=inf must be a finite number"):
        Config(optimizer_eps=float("inf"))


# --------------------------------------------------------------------------- tracebacks


@pytest.mark.parametrize(
    "edit, message",
    [
        ("header", "missing update; unknown updates"),
        ("float", "line 2: not a row a3c_jax wrote (update '2.0'"),
        ("note", "line 5: not a row a3c_jax wrote (update None"),
    ],
)
def test_hand_edited_metrics_csv_on_resume_is_a_message(run, edit, message, capsys):
    path = run / "metrics.csv"
    lines = path.read_bytes().decode().split("\r\n")
    if edit == "header":
        lines[0] = lines[0].replace("update,", "updates,", 1)
    elif edit == "float":
        lines[1] = lines[1].replace("0,2,", "0,2.0,", 1)
    else:
        lines[-1] = "a note of mine"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    assert main([*RESUME, str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and "metrics.csv" in err and "Traceback" not in err, err


def test_plot_to_an_unknown_format_is_a_message(run, tmp_path, capsys):
    assert main(["plot", str(run), "--out", str(tmp_path / "thesis.txt")]) == 2
    assert "thesis.txt: the plot is written as .png, .pdf or .svg" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_a_read_only_run_folder_is_a_message(run, capsys):
    run.chmod(0o555)
    try:
        assert main([*RESUME, str(run)]) == 2
        assert "cannot write in the folder (permission denied)" in capsys.readouterr().err
        assert main([*CLI, "--out", str(run), "--overwrite", "--set", *TINY]) == 2
        assert "permission denied" in capsys.readouterr().err
    finally:
        run.chmod(0o755)


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"update": None}, "meta update=None"),
        ({"num_seeds": "many"}, "meta num_seeds='many'"),
        ("config-list", "its config is a list"),
    ],
)
def test_hand_made_checkpoints_with_odd_meta_are_a_message(run, meta, message, capsys):
    content = checkpoint_file.read_checkpoint(run / "checkpoints" / _ckpt(6))
    from flax import serialization

    if meta == "config-list":
        payload = {"format": 1, "config": [1, 2], "meta": content.meta, "arrays": content.arrays}
    else:
        new_meta = {**content.meta, **meta}
        payload = {"format": 1, "config": content.config.to_dict(), "meta": new_meta}
        payload["arrays"] = content.arrays
    body = serialization.msgpack_serialize(payload)
    import hashlib

    data = checkpoint_file.MAGIC + hashlib.sha256(body).digest() + body
    (run / "checkpoints" / _ckpt(6)).write_bytes(data)
    assert main(["eval", str(run / "checkpoints" / _ckpt(6)), "--episodes", "1"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--seed", "99999999999999999999", "--dry-run"], "must lie in 0 .. 4294967295"),
        (["eval", "RUN", "--video-steps", "-1"], "--video-steps=-1 must be positive"),
        (["tune", "--out", "OUT", "--space", "lr=1e-4:inf:log"], "both bounds must be finite"),
    ],
)
def test_bad_options_are_messages(argv, message, tmp_path, capsys, run):
    argv = [a.replace("RUN", str(run)).replace("OUT", str(tmp_path / "t")) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "t").exists()  # no study left behind


def test_malformed_tune_json_is_a_message(tmp_path, capsys):
    pytest.importorskip("optuna")
    folder = tmp_path / "tune"
    _study_folder(folder)
    (folder / "study.db").write_bytes(b"")
    (folder / "tune.json").write_text('{"config": [], "space": 3}')
    assert main(["tune", "--trials", "2", "--resume", str(folder)]) == 2
    assert "tune.json" in capsys.readouterr().err


def test_python_api_bad_arguments_are_config_errors(tmp_path):
    config = Config(num_envs=4, n_steps=8, total_timesteps=256)
    with pytest.raises(a3c_jax.ConfigError, match="has no settings"):
        a3c_jax.sweep(config, {})
    with pytest.raises(a3c_jax.ConfigError, match="num_seeds=-1"):
        a3c_jax.jit_train(config, num_seeds=-1)
    with pytest.raises(a3c_jax.ConfigError, match="chunk_updates=0"):
        a3c_jax.train_run(config, tmp_path / "run", chunk_updates=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--coordinator=127.0.0.1:abc"], "the port 'abc' must be a number"),
        (["--coordinator=localhost"], "expected HOST:PORT"),
        (["--process-id=5", "--coordinator=127.0.0.1:1234"], "--process-id=5 must lie in 0..1"),
    ],
)
def test_launcher_options_are_messages(options, message):
    done = subprocess.run(
        [sys.executable, "-m", "a3c_jax.launch", "--num-processes=2", *options, "train"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- import side effects


def test_an_unreachable_coordinator_raises_instead_of_ending_the_process():
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('ATEXIT RAN', flush=True))\n"
        "from a3c_jax import distributed, launch\n"
        "from a3c_jax.errors import ProcessesUnreachableError\n"
        "port = launch.free_port()\n"
        "try:\n"
        "    distributed.initialize(f'127.0.0.1:{port}', 2, 1, timeout=2)\n"
        "except ProcessesUnreachableError as error:\n"
        "    print('RAISED', 'within 2 s' in str(error), flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert "RAISED True" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "ATEXIT RAN" in done.stdout  # the embedding program's own exit code ran
    assert run_claim is not None  # (imported for test_12's holder)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"hidden_sizes": (100000, 100000)}, "lower hidden_sizes"),
        ({"algo": "a3c", "num_devices": 2, "num_envs": 3}, "does not apply to algo='a3c'"),
        ({"env_name": "gymnasium:CartPole-v1", "num_devices": 2}, "a host environment"),
        ({"algo": "ac_replay", "replay_capacity": 10**20}, "replay_capacity=100000000000000000000"),
        ({"algo": "ac_replay", "replay_capacity": 10**9}, "lower replay_capacity"),
    ],
)
def test_13_messages_name_the_field_to_change(fields, message, monkeypatch):
    from a3c_jax.training import memory_estimate

    monkeypatch.setattr(memory_estimate, "memory_limit", lambda: 2**30)  # 1 GiB here

    with pytest.raises(a3c_jax.ConfigError, match=message.replace("(", r"\(")):
        memory_estimate.check_fits(Config(**fields))


def test_13_resume_of_a_run_without_checkpoints_says_where_it_looked(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text('{"written_by": "a3c_jax"}')
    assert main([*RESUME, str(run)]) == 2
    err = capsys.readouterr().err
    assert f"holds no checkpoint in {run / 'checkpoints'}" in err and "process_0" not in err


def test_a_full_disk_on_resume_or_a_new_run_is_a_message(run, tmp_path, capsys, monkeypatch):
    real = checkpoint_file.write_atomic

    def disk_full(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint_file, "write_atomic", disk_full)
    older = run / "checkpoints" / _ckpt(2)  # metrics.csv must be cut back: a write
    assert main([*RESUME, str(older)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "metrics.csv" in err and "Traceback" not in err
    new = tmp_path / "new"
    assert main([*CLI, "--out", str(new), "--set", *TINY]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not new.exists()  # nothing left behind, no empty lock file
    monkeypatch.setattr(checkpoint_file, "write_atomic", real)


def test_a_gymnasium_environment_with_missing_dependencies_is_a_message(capsys):
    gymnasium = pytest.importorskip("gymnasium")
    try:
        gymnasium.make("LunarLander-v3").close()
        pytest.skip("Box2D is installed here")
    except gymnasium.error.DependencyNotInstalled:
        pass
    argv = ["train", "--env", "gymnasium:LunarLander-v3", "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "gymnasium:LunarLander-v3' needs a package that is not installed" in err
