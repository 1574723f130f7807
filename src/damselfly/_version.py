"""The package version, in a leaf that imports nothing, so any layer may name it."""

__version__ = "0.1.0"
