"""One process of the 2-process test (`test_two_processes_train_as_one`), started by
`python -m a3c_jax.launch --num-processes 2 --script multihost_worker.py OUT_DIR`.

The script joins the run first (`distributed.initialize_from_env`, from the launcher's A3C_JAX_*
variables), as a script run with `--script` must: importing a3c_jax changes nothing. The process
trains `CONFIG` on every device of both processes and saves the parameters it ends with to
`OUT_DIR/params_process{i}.npz`, so that the test can compare the processes' copies; process 0
alone writes `OUT_DIR/report.json`, as the library's outputs are written. The pmap backend must
refuse to run over processes.
"""

import json
import os
import sys

import jax
import numpy as np

from a3c_jax import distributed

distributed.initialize_from_env()  # before anything starts JAX's backend

import a3c_jax  # noqa: E402

CONFIG = a3c_jax.Config(
    num_envs=4, n_steps=5, total_timesteps=4 * 5 * 4, max_grad_norm=0.5, num_devices="all"
)
KEY = 5


def main(out_dir: str) -> None:
    assert jax.process_count() == 2, jax.process_count()
    os.makedirs(out_dir, exist_ok=True)
    report = {"devices": [str(d) for d in jax.devices()]}
    result = a3c_jax.jit_train(CONFIG)(jax.random.PRNGKey(KEY))
    params = distributed.fetch(result.params)
    leaves = {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    }
    np.savez(os.path.join(out_dir, f"params_process{jax.process_index()}.npz"), **leaves)
    report["total_loss"] = distributed.fetch(result.metrics.total_loss).tolist()
    try:
        a3c_jax.make_trainer(CONFIG.replace(parallel_backend="pmap"))
    except a3c_jax.ConfigError as error:
        report["pmap_error"] = str(error)
    if distributed.is_output_process():
        with open(os.path.join(out_dir, "report.json"), "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1])
