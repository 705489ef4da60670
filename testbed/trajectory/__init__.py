"""`testbed trajectories`: every snapshot of every seed of one or more runs as a point of one
joint 2-D map of the flattened parameters (PCA, or t-SNE with scikit-learn), each seed's
snapshots joined in epoch order, written as trajectories.csv, trajectories.png and report.md."""
