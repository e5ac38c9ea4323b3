"""Gradient parallelism, from a one-device process: bad requests fail before compiling, a
multi-process launch without its coordinator times out with a message, and the tests that need
4 devices (tests/multidevice) pass in a process of their own."""

import os
import subprocess
import sys
import time

import pytest

import a3c_jax
from a3c_jax import Config, ConfigError, launch
from a3c_jax.cli.args import parse_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MULTIDEVICE = os.path.join("tests", "multidevice")


def test_config_checks_device_split_when_built():
    with pytest.raises(ConfigError, match=r"num_envs=10 is not divisible by num_devices=4"):
        Config(num_envs=10, num_devices=4)
    for bad in (0, -1, 1.5, True, "some"):
        with pytest.raises(ConfigError, match=r"num_devices=.* must be a positive integer or"):
            Config(num_devices=bad)
    with pytest.raises(ConfigError, match=r"parallel_backend='jit' must be one of"):
        Config(parallel_backend="jit")
    assert Config().num_devices == 1
    assert Config(num_devices="all").num_devices == "all"


def test_more_devices_than_exist_fails_when_the_trainer_is_built():
    config = Config(num_envs=4, n_steps=4, total_timesteps=64, num_devices=2)  # made: fine
    with pytest.raises(ConfigError, match=r"num_devices=2 asks for more devices than exist"):
        a3c_jax.make_trainer(config)
    with pytest.raises(ConfigError, match=r"xla_force_host_platform_device_count"):
        a3c_jax.jit_train(config)


def test_cli_parses_num_devices():
    assert parse_overrides(["num_devices=all", "parallel_backend=pmap"]) == {
        "num_devices": "all",
        "parallel_backend": "pmap",
    }
    assert parse_overrides(["num_devices=2"]) == {"num_devices": 2}
    with pytest.raises(ConfigError, match=r"--set num_envs='x': not a valid int"):
        parse_overrides(["num_envs=x"])


def test_unreachable_coordinator_times_out_with_a_message(tmp_path):
    script = tmp_path / "never_reached.py"
    script.write_text(
        "from a3c_jax import distributed\ndistributed.initialize_from_env()\nprint('joined')\n"
    )
    port = launch.free_port()  # nothing listens there
    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "a3c_jax.launch",
            "--num-processes=2",
            "--process-id=1",
            f"--coordinator=127.0.0.1:{port}",
            "--timeout=3",
            f"--script={script}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == a3c_jax.distributed.EXIT_UNREACHABLE, done.stderr[-2000:]
    assert "joined" not in done.stdout
    assert f"process 1 of 2 (connecting to the coordinator at 127.0.0.1:{port})" in done.stderr
    assert "within 3 s" in done.stderr
    assert time.monotonic() - start < 60


def _run_multidevice(marker: str) -> None:
    env = dict(os.environ, A3C_JAX_MULTIDEVICE="1")
    # -n 0: one process here, beside the other pytest-xdist worker, not two more.
    options = ["-q", "-p", "no:cacheprovider", "-n", "0", "-m", marker]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *options, MULTIDEVICE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout, done.stdout[-3000:]


def test_multidevice_suite():
    """tests/multidevice on 4 forced CPU devices: equivalence of D = 1, 2, 4 under both
    backends, replicas bitwise equal, seeds, errors, and a 2-process run."""
    _run_multidevice("not slow")


@pytest.mark.slow
def test_multidevice_learning():
    """A learning test on 2 devices (tests/multidevice, marked slow)."""
    _run_multidevice("slow")


def _launch(tmp_path, script_text: str, *options: str, timeout: float = 240):
    script = tmp_path / "script.py"
    script.write_text(script_text)
    command = [sys.executable, "-m", "a3c_jax.launch", "--num-processes=2", *options]
    return subprocess.run(
        [*command, f"--script={script}"], capture_output=True, text=True, timeout=timeout
    )


def test_launcher_stops_the_other_processes_when_one_fails(tmp_path):
    """Process 1 fails at once; process 0 would wait for 10 minutes: the launcher returns
    process 1's status and stops process 0 instead of leaving it waiting."""
    script = f"""
import os, sys, time
from pathlib import Path
rank = os.environ["{a3c_jax.distributed.ENV_PROCESS_ID}"]
Path(r"{tmp_path}", f"pid_{{rank}}").write_text(str(os.getpid()))
if rank == "1":
    while not Path(r"{tmp_path}", "pid_0").exists():
        time.sleep(0.05)
    sys.exit(7)
time.sleep(600)
"""
    start = time.monotonic()
    done = _launch(tmp_path, script, timeout=120)
    assert done.returncode == 7, done.stderr[-2000:]
    assert time.monotonic() - start < 60
    pid = int((tmp_path / "pid_0").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # process 0 is gone


def test_launch_with_two_devices_per_process(tmp_path):
    """--devices-per-process 2: each of the 2 processes has 2 local devices, 4 in all, and a
    gradient mean over all of them (a psum of each device's index) sees every device."""
    # Each process writes its own file: the two share one stdout, where unbuffered prints
    # (PYTHONUNBUFFERED) interleave word by word.
    script = f"""
from a3c_jax import distributed
distributed.initialize_from_env()  # joins the run (importing a3c_jax does not)
from pathlib import Path
import jax, jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.array(jax.devices()), ("d",))
x = jax.make_array_from_process_local_data(
    NamedSharding(mesh, P("d")), np.arange(2, dtype=np.float32) + 2 * jax.process_index()
)
total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(x)
facts = (jax.process_index(), jax.process_count(), jax.local_device_count(),
         jax.device_count(), float(total))
Path(r"{tmp_path}", f"process_{{jax.process_index()}}.txt").write_text(" ".join(map(str, facts)))
"""
    done = _launch(tmp_path, script, "--devices-per-process=2", "--timeout=60")
    assert done.returncode == 0, done.stderr[-3000:]
    facts = [(tmp_path / f"process_{i}.txt").read_text() for i in range(2)]
    assert facts == ["0 2 2 4 6.0", "1 2 2 4 6.0"], done.stdout
