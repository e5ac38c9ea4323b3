"""`python -m a3c_jax` is the `a3c-jax` command."""

import sys

from a3c_jax.cli import main

sys.exit(main())
