"""Environments that live outside XLA: Gymnasium (and Atari through ale-py) on the host.

Name one `env_name="gymnasium:<id>"` and train it with `train_host(config, key)` (`a2c`,
`nstep_da2c`, `online_ac` over a Gymnasium vector environment; `a3c` through
`a3c_jax.train_async`, each worker thread with its own environments). `make_act` works as for
gymnax runs; `evaluate` dispatches to `host.evaluation.evaluate`.

- `spaces`: names, spaces -> heads, the environment factory (Atari's preprocessing);
- `rollout`: the vector environment (`SAME_STEP` autoreset) and the host rollout loop;
- `train`: the synchronous host loop and the A3C workers' parts;
- `evaluation`: whole episodes with the greedy (or sampling) policy.
"""

from a3c_jax.host.spaces import PREFIX, is_host_env

__all__ = ["PREFIX", "is_host_env"]
