"""Analysis of finished runs, shared by the commands: the spike detector, the per-seed outcomes
a comparison or study tests, and the statistics."""
