"""testbed: a plugin-based optimizer and normalization testbed on a d=2 one-layer transformer."""

__version__ = "0.1.0"
