"""`python -m a3c_jax` is the `a3c-jax` command."""

from a3c_jax.cli.main import run

run()
