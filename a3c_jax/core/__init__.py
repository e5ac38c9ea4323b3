"""The pure core: types, distributions, returns, losses and replay, functions of arrays only
(no environment, no configuration). Shapes are time-major `[T, B]`; everything jits and vmaps."""
