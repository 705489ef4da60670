"""`testbed barrier`: loss and accuracy along the straight line between two weight vectors (the
final weights of two runs, two seeds of one run, or two snapshot epochs), and the loss barrier
along it (second paper, Figure 6).

The package is not named `barrier`: importing a subpackage sets it as an attribute of `testbed`,
which would hide the API function `testbed.barrier`."""
