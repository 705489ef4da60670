"""`testbed barrier`: loss and accuracy along the straight line between two weight vectors (the
final weights of two runs, two seeds of one run, or two snapshot epochs), and the loss barrier
along it (second paper, Figure 6)."""
