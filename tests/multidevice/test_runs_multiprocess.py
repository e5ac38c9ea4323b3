"""A run over 2 local processes (`a3c_jax.launch`) has a run folder, metrics and checkpoints,
and `--resume` ends bitwise equal to a run that never stopped."""

import csv
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np

import a3c_jax
from a3c_jax.runs import checkpoint_file

TRAIN = ["--no-cache", "--episodes", "0", "--no-progress"]
SETTINGS = ["--chunk-updates", "2", "--set", "num_devices=all", "num_envs=4", "n_steps=5"]
SETTINGS += ["total_timesteps=160"]  # 8 updates of 4 x 5 steps


def _launch(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "A3C_JAX_MULTIDEVICE")}
    command = [sys.executable, "-m", "a3c_jax.launch", "--num-processes", "2", "--timeout", "120"]
    done = subprocess.run(
        [*command, "train", *TRAIN, *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _newest(run, process):
    return checkpoint_file.read_checkpoint(
        checkpoint_file.list_checkpoints(run / "checkpoints" / f"process_{process}")[-1]
    )


def _rows(run):
    with open(run / "metrics.csv") as f:
        return [
            {k: v for k, v in row.items() if k not in ("time_s", "steps_per_second")}
            for row in csv.DictReader(f)
        ]


def test_two_process_run_resumes_and_ends_bitwise_equal(tmp_path):
    """The run checkpoints at update 4; a copy of its folder cut back to that checkpoint (as a
    run stopped there leaves it, metrics rows after it included) resumes to the same end."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    printed = _launch("--out", str(straight), "--checkpoint-every", "4", *SETTINGS)
    assert "finished at update 8 of 8" in printed
    assert printed.count("run folder:") == 1  # process 0 alone reports
    shutil.copytree(straight, resumed)
    for later in resumed.glob("checkpoints/process_*/update_000000008.ckpt"):
        later.unlink()
    assert len(list(resumed.glob("checkpoints/process_*/update_000000004.ckpt"))) == 2
    printed = _launch("--resume", str(resumed))
    assert "resuming" in printed and "(update 4)" in printed
    assert "finished at update 8 of 8" in printed
    for process in (0, 1):
        a, b = _newest(straight, process), _newest(resumed, process)
        assert a.meta["update"] == b.meta["update"] == 8
        assert a.meta["process"] == b.meta["process"] == process
        assert a.arrays.keys() == b.arrays.keys() and a.meta["split"]  # environments split
        for name in a.arrays:
            np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)
    # The processes' environments differ; their replicated parameters agree.
    p0, p1 = _newest(straight, 0), _newest(straight, 1)
    params = [n for n in p0.arrays if n.startswith(".train_state.params")]
    assert params and all(np.array_equal(p0.arrays[n], p1.arrays[n]) for n in params)
    # Process 0 wrote the folder's files; the metrics continue where the checkpoint was.
    info = json.loads((resumed / "run.json").read_text())
    assert info["status"] == "finished" and info["update"] == 8
    assert [int(r["update"]) for r in _rows(resumed)] == [2, 4, 6, 8]
    assert _rows(resumed) == _rows(straight)
    # One process loads the parameters (for a3c-jax eval); the split state needs both.
    saved = a3c_jax.load(straight)
    assert saved.runner_state is None and saved.meta["update"] == 8
    returns = a3c_jax.evaluate(saved.config, saved.params, jax.random.PRNGKey(0), 2)
    assert returns.shape == (2,) and np.all(returns >= 1)
