"""The fused training engine (`training.engine: fused | auto`): each seed's whole training
step, and its evaluation, as one numba-compiled kernel over seeds (`kernels`), with its own
exp/log/GELU (`mathlib`); `coverage` says which scenarios it trains, `driver` connects it to
the training loop. numba is an optional dependency (`testbed[fused]`): nothing here is
imported unless a scenario asks for the engine."""
