"""Launch one training run over several JAX processes (hosts): `python -m a3c_jax.launch`.

On one machine (loopback), start 2 processes that train as one, gradients averaged over the
devices of both (here each process forces 2 CPU devices, so `num_devices=all` is 4):

    python -m a3c_jax.launch --num-processes 2 --devices-per-process 2 \\
        train --env CartPole-v1 --out runs/two --set num_devices=all num_envs=64
    python -m a3c_jax.launch --num-processes 2 --devices-per-process 2 train --resume runs/two

Everything after the launcher's own options is an `a3c-jax` command line (or, with `--script`,
a Python script and its arguments). Each process gets `A3C_JAX_COORDINATOR`,
`A3C_JAX_NUM_PROCESSES`, `A3C_JAX_PROCESS_ID` and `A3C_JAX_INIT_TIMEOUT` in its environment and
calls `a3c_jax.distributed.initialize_from_env()` before anything else (the `a3c-jax` command
does; a `--script` must: importing a3c_jax does not);
process 0 serves the coordinator and is the only one that reports and writes the run folder
(each process keeps its own checkpoints: `a3c_jax.runs.checkpoints`). When one process fails, the
launcher stops the others and exits with its status.

On several machines, run one process per machine, each with its `--process-id` and the address
of process 0's machine:

    python -m a3c_jax.launch --num-processes 2 --process-id 0 --coordinator 10.0.0.1:4321 train ...
    python -m a3c_jax.launch --num-processes 2 --process-id 1 --coordinator 10.0.0.1:4321 train ...

(or set the four environment variables yourself and run `a3c-jax train ...`). A process that
cannot meet the others within `--timeout` seconds stops with a message and exit status 3.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from a3c_jax import distributed


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(
    coordinator: str,
    num_processes: int,
    process_id: int,
    timeout: float,
    devices_per_process: int | None,
) -> dict[str, str]:
    """The environment of process `process_id`: this one's, plus the run's description."""
    env = dict(os.environ)
    env[distributed.ENV_COORDINATOR] = coordinator
    env[distributed.ENV_NUM_PROCESSES] = str(num_processes)
    env[distributed.ENV_PROCESS_ID] = str(process_id)
    env[distributed.ENV_TIMEOUT] = str(timeout)
    if devices_per_process is not None:
        flag = f"--xla_force_host_platform_device_count={devices_per_process}"
        env["XLA_FLAGS"] = " ".join(x for x in (env.get("XLA_FLAGS", ""), flag) if x)
    return env


# A script runs under this wrapper: as `python SCRIPT ARGS` would run it, but a process that
# could not meet the others (`ProcessesUnreachableError`, raised by `initialize_from_env`) ends
# with its one-line message and exit status 3, as the `a3c-jax` command does.
_SCRIPT_WRAPPER = """\
import os, runpy, sys
from a3c_jax.errors import EXIT_UNREACHABLE, ProcessesUnreachableError
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except ProcessesUnreachableError as error:
    print(f"a3c_jax: error: {error}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(EXIT_UNREACHABLE)
"""


def _command(args: argparse.Namespace) -> list[str]:
    if args.script:
        return [sys.executable, "-c", _SCRIPT_WRAPPER, args.script, *args.rest]
    return [sys.executable, "-m", "a3c_jax", *args.rest]


def parse_coordinator(text: str) -> tuple[str, int]:
    """`"host:port"` -> `(host, port)`; `ValueError` saying what is wrong otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--coordinator {text!r}: expected HOST:PORT, e.g. 10.0.0.1:4321")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator {text!r}: the port {port!r} must be a number in 1..65535")
    return host, int(port)


def _stop(processes: Sequence[subprocess.Popen], grace: float = 5.0) -> None:
    """Terminates the processes that still run (ours alone), then kills what outlives `grace`."""
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in processes:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_local(
    command: Sequence[str],
    num_processes: int,
    timeout: float,
    devices_per_process: int | None = None,
    port: int | None = None,
) -> int:
    """Starts `num_processes` copies of `command` on this machine, one run over loopback.

    Returns 0 when all succeed, else the status of the first that failed (the others are
    stopped then, rather than left waiting for it in a collective)."""
    coordinator = f"127.0.0.1:{port or free_port()}"
    processes = [
        subprocess.Popen(
            list(command),
            env=process_env(coordinator, num_processes, i, timeout, devices_per_process),
        )
        for i in range(num_processes)
    ]
    try:
        while True:
            codes = [p.poll() for p in processes]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                _stop(processes)
                return failed[0]
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop(processes)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m a3c_jax.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument(
        "--process-id",
        type=int,
        default=None,
        help="run only this process (one per machine); default: all of them here, on loopback",
    )
    parser.add_argument(
        "--coordinator",
        default=None,
        help="host:port of process 0 (default: 127.0.0.1 and a free port)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=distributed.DEFAULT_INIT_TIMEOUT,
        help="seconds to wait for all processes to meet (default %(default)s)",
    )
    parser.add_argument(
        "--devices-per-process",
        type=int,
        default=None,
        help="CPU only: split each process's CPU into this many devices (XLA_FLAGS)",
    )
    parser.add_argument("--script", default=None, help="run this Python script instead of a3c-jax")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="the a3c-jax (or script) arguments")
    return parser


def _checked_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> Any:
    """The launcher's arguments, each checked (`parser.error`: a message and exit code 2)."""
    args = parser.parse_args(argv)
    if args.rest and args.rest[0] == "--":
        args.rest = args.rest[1:]
    if args.num_processes < 1:
        parser.error(f"--num-processes={args.num_processes} must be positive")
    if not args.script and not args.rest:
        parser.error("give an a3c-jax command line (e.g. train --env CartPole-v1) or --script")
    if args.timeout is not None and not args.timeout > 0:
        parser.error(f"--timeout={args.timeout} must be positive")
    if args.process_id is not None and not 0 <= args.process_id < args.num_processes:
        parser.error(
            f"--process-id={args.process_id} must lie in 0..{args.num_processes - 1} "
            f"(--num-processes={args.num_processes})"
        )
    port = None
    if args.coordinator:
        try:
            port = parse_coordinator(args.coordinator)[1]
        except ValueError as error:
            parser.error(str(error))
    if args.script and not os.path.isfile(args.script):
        parser.error(f"--script {args.script}: no such file")
    args.port = port
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = _checked_args(parser, argv)
    port = args.port
    command = _command(args)
    if args.process_id is None:
        if args.coordinator and not args.coordinator.startswith(("127.", "localhost")):
            parser.error("--coordinator without --process-id must be on loopback (127.0.0.1)")
        return run_local(
            command, args.num_processes, args.timeout, args.devices_per_process, port=port
        )
    if not args.coordinator:
        parser.error("--process-id needs --coordinator HOST:PORT (process 0's machine)")
    env = process_env(
        args.coordinator,
        args.num_processes,
        args.process_id,
        args.timeout,
        args.devices_per_process,
    )
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
