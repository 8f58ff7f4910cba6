"""marrow-tui: an operator console and coordination runtime for coding agents."""

__version__ = "0.1.0"
