"""The jitted training program: `loop` (`make_train`, `make_trainer`, `jit_train`), device
parallelism (`parallel`), evaluation inside a jitted program, the divergence guard, the memory
estimate checked before a run, and the "compile once" helpers (`xla`, `compiled`,
`program_cache`, `background`)."""
