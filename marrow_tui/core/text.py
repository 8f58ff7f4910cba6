"""Short texts for people, shared by the console and the command line."""

from __future__ import annotations


def ago(seconds: float) -> str:
    """A short, stable duration: 45s, 12m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
