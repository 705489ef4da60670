"""The training engine: the model over a leading seed axis, its hand-written backward pass, the
task's data, batching and evaluation (stage), the optimizer wrapper, per-purpose seeding, the
ideal circuit and the training loop. Nothing here prints or writes files except through probes."""
