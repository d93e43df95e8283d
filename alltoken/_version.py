"""The package version (its own module so the client can name it without a cycle)."""

__version__ = "0.1.0"
