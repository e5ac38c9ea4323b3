"""Ray workers on a simulated two-node cluster on this machine (`ray.cluster_utils.Cluster`):
the run joins it by its address (`ray_address`), its workers run on both nodes (recorded per
worker in run.json), and it learns Gymnasium's CartPole-v1."""

import importlib.util
import json

import pytest

import a3c_jax
from a3c_jax import Config

if importlib.util.find_spec("ray") is None or importlib.util.find_spec("gymnasium") is None:
    pytest.skip(
        'Ray or Gymnasium is not installed (pip install "a3c_jax[ray,gymnasium]")',
        allow_module_level=True,
    )

from test_ray import LEARNING, greedy_return


@pytest.fixture(scope="module")
def two_nodes():
    """A head node and one more, one CPU each: two workers can only run one on each."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # a3c_jax joins the cluster itself, by its address
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_workers_run_on_both_nodes_and_learn(two_nodes, tmp_path):
    import ray

    config = Config(
        env_name="gymnasium:CartPole-v1",
        algo="a3c",
        num_workers=2,
        workers="ray",
        ray_address=two_nodes.address,
        **LEARNING,
    )
    trained = a3c_jax.train(config, run_dir=tmp_path / "run", progress=False)
    assert trained.status == "finished"
    assert not ray.is_initialized()  # it joined the cluster for the run, then left it
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    nodes = {worker["node_id"] for worker in info["workers"]}
    cluster_nodes = {node.node_id for node in two_nodes.list_all_nodes()}
    assert len(nodes) == 2 and nodes <= cluster_nodes, (nodes, cluster_nodes)
    assert greedy_return(config, trained.params) >= 475.0
