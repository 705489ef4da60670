"""The run store: every run that `run`, `compare` and `sweep` train, kept by what it trained, so
nothing is trained twice and finished work outlives any failure of the command that asked."""
