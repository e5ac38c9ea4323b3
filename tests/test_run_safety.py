"""Nothing a user saved is ever lost (issue 15): --overwrite, the run folder's lock, SIGTERM and
SIGKILL (also during a checkpoint write), failed starts, options kept on resume, torn metrics,
damaged checkpoints, a folder deleted mid-run; and bad input as a message, never a traceback.

Signals and locks are tested against real `python -m a3c_jax` processes; the rest in-process
through `cli.main`, on tiny budgets that share one compiled chunk."""

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import a3c_jax
from a3c_jax import Config
from a3c_jax.cli.main import main
from a3c_jax.runs import checkpoint_file, chunked
from a3c_jax.runs.checkpoint_file import flatten_state

REPO = Path(__file__).resolve().parents[1]
TINY = ["num_envs=4", "n_steps=4", "total_timesteps=1600"]  # 100 updates
CLI = ["train", "--no-cache", "--episodes", "0", "--chunk-updates", "25", "--no-progress"]
# A run long enough to be stopped by a signal (the config of test_workflow's Ctrl-C test, so
# that the in-process reference runs share its compiled chunk).
LONG = Config(num_envs=4, n_steps=4, total_timesteps=100_000_000)
LONG_SET = ["num_envs=4", "n_steps=4", "total_timesteps=100000000"]


def _assert_states_equal(a, b):
    flat_a, flat_b = flatten_state(a), flatten_state(b)
    assert flat_a.keys() == flat_b.keys()
    for path in flat_a:
        np.testing.assert_array_equal(flat_a[path], flat_b[path], err_msg=path)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A CLI run of TINY stopped at update 50 (checkpoints 25 and 50); tests copy it."""
    out = tmp_path_factory.mktemp("base") / "run"
    argv = [*CLI, "--out", str(out), "--checkpoint-every", "25", "--keep-checkpoints", "10"]
    assert main([*argv, "--stop-after", "50", "--set", *TINY]) == 0
    return out


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    out = tmp_path / name
    shutil.copytree(run, out)
    return out


# --------------------------------------------------------------------------- 1. --overwrite


def test_overwrite_replaces_only_a_folder_a3c_jax_wrote(tmp_path, capsys, stopped_run):
    # The case: a config.json of the user's own beside their code.
    project = tmp_path / "p"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text("{}")
    (project / "src" / "important.py").write_text("x\n")
    before = _files(project)
    assert main([*CLI, "--out", str(project), "--overwrite", "--set", *TINY]) == 2
    assert "holds no a3c_jax run" in capsys.readouterr().err
    assert _files(project) == before
    # A real run with a file of the user's added: not replaced either, the file named.
    run = _copy(stopped_run, tmp_path)
    (run / "notes.txt").write_text("keep me")
    before = _files(run)
    assert main([*CLI, "--out", str(run), "--overwrite", "--set", *TINY]) == 2
    assert "also notes.txt, which a3c_jax did not write" in capsys.readouterr().err
    assert _files(run) == before
    # A setting that fails late (too many devices) leaves the old run as it was.
    (run / "notes.txt").unlink()
    before = _files(run)
    argv = [*CLI, "--out", str(run), "--overwrite", "--set", *TINY, "num_devices=2"]
    assert main(argv) == 2
    assert "num_devices=2 asks for more devices than exist" in capsys.readouterr().err
    assert _files(run) == before


# ----------------------------------------------------------------- 2, 4, 8. signals and locks


def _popen(out: Path, argv: list[str], slow_checkpoint: int | None = None, sleep: float = 0.0):
    """`python -m a3c_jax train ...` in a process of its own; with `slow_checkpoint`, the
    rename of that update's checkpoint file waits `sleep` seconds after printing WRITING (its
    bytes are written and fsynced by then)."""
    script = "from a3c_jax.cli.main import run; run()"
    if slow_checkpoint is not None:
        script = (
            "import os, sys, time\n"
            "real = os.replace\n"
            "def slow(src, dst):\n"
            f"    if str(dst).endswith('update_{slow_checkpoint:09d}.ckpt'):\n"
            "        print('WRITING', flush=True)\n"
            f"        time.sleep({sleep})\n"
            "    real(src, dst)\n"
            "os.replace = slow\n" + script
        )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", script, "train", "--no-cache", "--out", str(out)]
    command += ["--episodes", "0", "--no-progress", "--chunk-updates", "50", *argv]
    command += ["--set", *LONG_SET]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def _wait_for(proc, condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited {proc.returncode} before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _straight(config: Config, out: Path, update: int):
    """The state of an uninterrupted run at `update` (chunks of 50, as the processes')."""
    return a3c_jax.train_run(
        config, out, chunk_updates=50, stop_after=update, progress=False, log=lambda _: None
    ).runner_state


def test_sigterm_during_a_checkpoint_write_and_the_lock(tmp_path, capsys):
    """SIGTERM arrives while the checkpoint of update 100 is being written, and while the run
    holds its folder's lock: other processes are refused (new run, --overwrite, --resume); the
    write completes, the run stops after its chunk with exit code 143 and a checkpoint that is
    bitwise the state of an uninterrupted run."""
    out = tmp_path / "run"
    proc, lines = _popen(out, ["--checkpoint-every", "100"], slow_checkpoint=100, sleep=3)
    try:
        _wait_for(proc, lambda: "WRITING\n" in lines, "the checkpoint write")
        for argv in (["--out", str(out)], ["--out", str(out), "--overwrite"]):
            assert main([*CLI, *argv, "--set", *LONG_SET]) == 2
            assert f"is in use by another a3c_jax process (pid {proc.pid})" in (
                capsys.readouterr().err
            )
        assert main(["train", "--episodes", "0", "--resume", str(out)]) == 2
        assert "in use by another a3c_jax process" in capsys.readouterr().err
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert any("interrupted by SIGTERM" in line for line in lines)
    saved = a3c_jax.load(out)
    assert saved.meta["status"] == "interrupted" and saved.meta["update"] == 150
    names = [p.name for p in (out / "checkpoints").iterdir()]
    assert "update_000000100.ckpt" in names and not [n for n in names if ".tmp-" in n]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    _assert_states_equal(
        saved.runner_state, _straight(LONG, tmp_path / "ref", saved.meta["update"])
    )


def test_sigterm_while_compiling_still_leaves_a_checkpoint(tmp_path):
    """SIGTERM as soon as the folder is locked (the program is still compiling): the first
    chunk runs, its checkpoint is written and the process exits with 143."""
    out = tmp_path / "run"
    proc, lines = _popen(out, [])
    try:
        _wait_for(proc, (out / ".a3c_jax.lock").exists, "the lock")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr
    said = [line.split(":")[0].split(" ")[0] for line in lines]
    assert said.index("interrupted") < said.index("compiled")  # it came during the compile
    saved = a3c_jax.load(out)
    assert saved.meta["status"] == "interrupted" and saved.meta["update"] == 50
    _assert_states_equal(saved.runner_state, _straight(LONG, tmp_path / "ref", 50))


def test_sigkill_during_a_checkpoint_write_then_resume_bitwise(tmp_path):
    """SIGKILL while the checkpoint of update 100 is being written: the early checkpoint of the
    first chunk is intact, the unfinished temporary file is removed on resume (one of a live
    process is not), and the resumed run is bitwise an uninterrupted one."""
    out = tmp_path / "run"
    proc, lines = _popen(out, ["--checkpoint-every", "100"], slow_checkpoint=100, sleep=60)
    try:
        _wait_for(proc, lambda: "WRITING\n" in lines, "the checkpoint write")
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    checkpoints = out / "checkpoints"
    orphan = checkpoints / f".update_000000100.ckpt.tmp-{proc.pid}"
    assert orphan.exists() and (checkpoints / "update_000000050.ckpt").exists()
    live = checkpoints / f".update_000000999.ckpt.tmp-{os.getpid()}"  # a live writer's
    live.write_bytes(b"partial")
    messages = []
    resumed = a3c_jax.train_run(
        LONG, out, resume=True, stop_after=100, progress=False, log=messages.append
    )
    assert not orphan.exists() and live.exists()
    assert any(orphan.name in m and "killed" in m for m in messages), messages
    assert resumed.update == 150 and resumed.status == "stopped"
    _assert_states_equal(resumed.runner_state, _straight(LONG, tmp_path / "ref", 150))
    updates = chunked.read_metrics(out)["update"]
    np.testing.assert_array_equal(updates, [50, 100, 150])


# ----------------------------------------------------------------- 3, 6, 8. resuming


def test_resume_keeps_options_and_command_and_repairs_metrics(tmp_path, capsys, stopped_run):
    run = _copy(stopped_run, tmp_path)
    with open(run / "metrics.csv", "a", newline="") as f:
        f.write("0,7")  # the row of update 75, torn by a crash mid-write (its update reads 7)
    resume = ["train", "--no-cache", "--episodes", "0", "--resume"]
    assert main([*resume, str(run)]) == 0
    assert "finished at update 100 of 100" in capsys.readouterr().out
    # --checkpoint-every 25 and --keep-checkpoints 10 were remembered (else: one checkpoint a
    # minute and the newest 3 kept, 25, 50, 100).
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [f"update_{u:09d}.ckpt" for u in (25, 50, 75, 100)]
    info = json.loads((run / "run.json").read_text())
    assert info["options"]["checkpoint_every"] == 25 and info["options"]["keep_checkpoints"] == 10
    assert len(info["commands"]) == 2 and info["command"] == info["commands"][0]
    metrics = chunked.read_metrics(run)  # the torn row cut off, not glued to the next one
    np.testing.assert_array_equal(metrics["update"], [25, 50, 75, 100])
    assert np.all(np.isfinite(metrics["steps_per_second"]))
    # An empty metrics.csv gets its header back.
    other = _copy(stopped_run, tmp_path, "other")
    (other / "metrics.csv").write_text("")
    assert main([*resume, str(other), "--stop-after", "25"]) == 0
    with open(other / "metrics.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == chunked.METRIC_COLUMNS
    np.testing.assert_array_equal(chunked.read_metrics(other)["update"], [75])


def test_resume_skips_a_damaged_checkpoint_and_takes_a_checkpoint_file(
    tmp_path, capsys, stopped_run
):
    run = _copy(stopped_run, tmp_path)
    newest = run / "checkpoints" / "update_000000050.ckpt"
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated
    argv = ["train", "--no-cache", "--episodes", "0", "--stop-after", "25"]
    assert main([*argv, "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "skipping a damaged checkpoint" in out and "using update_000000025.ckpt" in out
    assert "stopped at update 50 of 100" in out
    # The documented way back to an older state: --resume FOLDER/checkpoints/update_N.ckpt.
    older = run / "checkpoints" / "update_000000025.ckpt"
    assert main([*argv, "--resume", str(older)]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {run}\n" in out and "stopped at update 50 of 100" in out
    np.testing.assert_array_equal(chunked.read_metrics(run)["update"], [25, 50])
    stray = tmp_path / "stray.ckpt"
    shutil.copy(older, stray)
    assert main([*argv, "--resume", str(stray)]) == 2
    assert "a checkpoint outside a run folder" in capsys.readouterr().err


# ----------------------------------------------------------------- 5, 9. failures


def test_a_failed_start_leaves_nothing_behind(tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory while allocating")

    monkeypatch.setattr(chunked, "compiled_init", out_of_memory)
    config = Config(num_envs=4, n_steps=4, total_timesteps=1600)
    new = tmp_path / "a" / "b" / "run"
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        a3c_jax.train_run(config, new, progress=False, log=lambda _: None)
    assert not (tmp_path / "a").exists()  # the folders this run made, and nothing else
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        a3c_jax.train_run(config, empty, progress=False, log=lambda _: None)
    assert empty.is_dir() and not any(empty.iterdir())
    # And the command line says so in a line, exit code 2.
    assert main([*CLI, "--out", str(new), "--set", *TINY]) == 2
    assert not (tmp_path / "a").exists()


def test_a_run_folder_deleted_during_training_is_rescued(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "run"

    def delete_once_training():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            metrics = out / "metrics.csv"
            if metrics.exists() and len(metrics.read_text().splitlines()) > 2:
                while out.exists():
                    shutil.rmtree(out, ignore_errors=True)
                return
            time.sleep(0.02)

    threading.Thread(target=delete_once_training, daemon=True).start()
    with pytest.raises(a3c_jax.RunFolderLostError, match="was deleted or replaced") as caught:
        a3c_jax.train_run(
            LONG, out, chunk_updates=50, checkpoint_seconds=1e9, stop_after=5000, progress=False
        )
    rescued = Path(str(caught.value).split("resume it with a3c-jax train --resume ")[1][:-1])
    assert rescued.parent == tmp_path / "tmp"
    saved = a3c_jax.load(rescued)
    assert saved.meta["status"] == "rescued" and saved.meta["update"] >= 100
    assert json.loads((rescued / "run.json").read_text())["rescued_from"] == str(out)


def test_a_full_disk_keeps_the_older_checkpoints(tmp_path, capsys, stopped_run, monkeypatch):
    run = _copy(stopped_run, tmp_path)
    real = checkpoint_file.write_atomic

    def disk_full(path, data):
        if str(path).endswith(".ckpt"):
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(checkpoint_file, "write_atomic", disk_full)
    assert main(["train", "--no-cache", "--episodes", "0", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert "the older checkpoints are intact: update_000000025.ckpt, update_000000050.ckpt" in err
    monkeypatch.undo()
    assert a3c_jax.load(run).meta["update"] == 50


# --------------------------------------------------------------------------- messages


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    (root / "afile").write_text("x")
    (root / "latin1.yaml").write_bytes("env_name: Acrobot-v1 # café\n".encode("latin-1"))
    (root / "number.yaml").write_text("env_name: 123\n")
    return {p.name: p for p in root.iterdir()}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--set", "total_timesteps=2147483648"], "total_timesteps=2147483648 must be below 2**31"),
        (
            ["--set", "num_envs=10000000", "total_timesteps=100000000"],
            "num_envs=10000000 with n_steps=8 needs at least",
        ),
        (["--env", "MNISTBandit-bsuite"], "downloads the MNIST data set"),
        (["--config", "@number.yaml"], "env_name=123 must be a string"),
        (["--config", "@latin1.yaml"], "latin1.yaml: not UTF-8 text (byte 0xe9"),
        (["--out", "@afile/sub"], "afile is a file, not a folder"),
        (["--out", "/proc/a3c_jax_run"], "--out /proc/a3c_jax_run: cannot"),  # create / write
    ],
)
def test_bad_input_is_a_message_with_exit_code_2(argv, message, files, capsys):
    for name, path in files.items():
        argv = [a.replace(f"@{name}", str(path)) for a in argv]
    code = main([*CLI, *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_set_given_twice_keeps_both(capsys):
    assert main(["train", "--set", "lr=0.123", "--set", "num_envs=4", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["lr"] == 0.123 and resolved["num_envs"] == 4


def test_numpy_scalars_and_non_string_names_in_config():
    config = Config(lr=np.float32(1e-3), num_envs=np.int64(8), anneal_lr=np.bool_(True))
    assert config.lr == 1e-3 and type(config.lr) is float and type(config.num_envs) is int
    assert config.anneal_lr is True and config == Config(lr=1e-3, num_envs=8, anneal_lr=True)
    for bad, message in ((dict(env_name=None), "env_name=None must be a string"),
                         (dict(algo=["a2c"]), "algo=['a2c'] is not an algorithm")):  # fmt: skip
        with pytest.raises(a3c_jax.ConfigError, match=message.replace("[", r"\[")):
            Config(**bad)


def test_eval_video_without_a_renderer_fails_before_evaluating(tmp_path, capsys):
    from a3c_jax.training.loop import make_trainer

    config = Config(env_name="BernoulliBandit-misc", num_envs=4, n_steps=4, total_timesteps=64)
    shapes = jax.eval_shape(make_trainer(config).init, jax.random.PRNGKey(0))
    state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)  # never played
    a3c_jax.save(tmp_path / "bandit", state, config)
    argv = ["eval", str(tmp_path / "bandit"), "--episodes", "1"]
    assert main([*argv, "--video", str(tmp_path / "v.gif")]) == 2
    captured = capsys.readouterr()
    assert "no renderer for BernoulliBandit-misc" in captured.err
    assert "greedy over" not in captured.out  # nothing was evaluated first
    assert main([*argv, "--video", str(tmp_path / "v.mp4")]) == 2
    assert "only .gif videos" in capsys.readouterr().err


# --------------------------------------------------------------------------- 7. A3C runs

A3C = ["--algo", "a3c", "--set", "num_workers=3", "num_envs=2", "n_steps=4"]  # test_asynchronous


def test_an_a3c_run_has_a_folder_checkpoints_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--no-cache", "--episodes", "0", "--no-progress", "--chunk-updates", "10"]
    first = [*argv, "--out", str(out), "--checkpoint-every", "20", "--stop-after", "60"]
    assert main([*first, *A3C, "total_timesteps=2400"]) == 0  # 300 updates
    assert "stopped at update" in capsys.readouterr().out
    stopped = a3c_jax.load(out)
    assert stopped.meta["trainer"] == "async" and stopped.meta["status"] == "stopped"
    assert 60 <= stopped.meta["update"] < 300
    assert len(list((out / "checkpoints").iterdir())) == 3  # every 20 updates, newest 3
    assert main([*argv[:5], "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not bitwise" in printed and "finished at update 300 of 300" in printed
    saved = a3c_jax.load(out)
    assert saved.meta["update"] == 300 and saved.meta["env_steps"] == 2400
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and len(info["commands"]) == 2
    metrics = chunked.read_metrics(out)
    assert np.all(np.diff(metrics["update"]) > 0) and metrics["update"][-1] == 300
    assert np.all(np.diff(metrics["env_steps"]) > 0) and metrics["env_steps"][-1] == 2400
    returns = a3c_jax.evaluate(saved.config, saved.params, jax.random.PRNGKey(0), 2)
    assert returns.shape == (2,)


def test_a_diverging_a3c_run_stops_with_the_last_good_state(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--no-cache", "--episodes", "2", "--no-progress", "--out", str(out)]
    assert main([*argv, *A3C, "total_timesteps=2400", "lr=inf"]) == 3
    err = capsys.readouterr().err
    assert "training diverged" in err and "the last good state (update 0)" in err
    saved = a3c_jax.load(out)
    assert saved.meta["status"] == "diverged" and saved.meta["update"] == 0
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(saved.params))
    # check_finite on the AsyncResult of a diverged train_async run (the programs compiled
    # above and in the test before).
    config = Config(algo="a3c", num_workers=3, num_envs=2, n_steps=4, total_timesteps=2400)
    result = a3c_jax.train_async(config.replace(lr=math.inf), jax.random.PRNGKey(0))
    with pytest.raises(a3c_jax.DivergenceError, match="of the asynchronous run produced a non-"):
        a3c_jax.check_finite(result)
    a3c_jax.check_finite(a3c_jax.train_async(config, jax.random.PRNGKey(0)))  # finite: None


def test_an_a3c_run_folder_deleted_during_training_is_rescued(tmp_path, monkeypatch):
    from a3c_jax.runs import worker_runs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "run"
    report = worker_runs._Watcher.report

    def report_then_delete(self, upto=None):  # the folder goes after the second row
        report(self, upto)
        if self.chunks == 2:
            shutil.rmtree(out)

    monkeypatch.setattr(worker_runs._Watcher, "report", report_then_delete)
    config = Config(algo="a3c", num_workers=3, num_envs=2, n_steps=4, total_timesteps=2400)
    with pytest.raises(a3c_jax.RunFolderLostError, match="was deleted or replaced") as caught:
        a3c_jax.train_async_run(config, out, chunk_updates=10, progress=False, log=lambda _: 0)
    rescued = Path(str(caught.value).split("resume it with a3c-jax train --resume ")[1][:-1])
    saved = a3c_jax.load(rescued)
    assert saved.meta["status"] == "rescued" and 20 <= saved.meta["update"] < 300
    assert not out.exists()
