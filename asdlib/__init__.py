"""asdlib: self-supervised anomalous sound detection for DCASE Task 2."""

__version__ = "0.1.0"
