"""The `a3c-jax` command: `main` (the parser, `train`, `eval`, `plot`, exit codes from
`a3c_jax.errors`) and `sweep` (`sweep`, `tune`)."""
