"""envkit: provision and prove GPU software environments."""

__version__ = "0.1.0"
