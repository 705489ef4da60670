"""Spike forensics (`testbed spikes`): which mechanism made each loss spike of a finished run.

- `recovery`: the exact weights and batch of any step, from spike_steps.npz or a deterministic
  replay of the seed's training;
- `attribution`: the loss jump per parameter group, the numbers of the first paper's two
  mechanisms (norm curvature near the origin, sequences near the MLP's decision boundary) and
  the cause rule;
- `hessian`: the sharpness (largest Hessian eigenvalue, plain and Adam-preconditioned) by
  Lanczos on Hessian-vector products, vectorized over seeds (also used by the sharpness probe);
- `spike_causes`: the command and API, writing spike_causes.csv;
- `by_cause`: spikes per cause per scenario for `testbed compare` and sweep reports;
- `forensics_figures`: step losses with spikes marked by cause, beside the sharpness.
"""
