"""What a client knows about a hub before it connects: where a hub listens unless told
otherwise.

A leaf (the standard library only), so the command line can offer these in its options without loading
the WebSocket client or server.
"""

from __future__ import annotations

import getpass
import os
from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8876
DEFAULT_URI: Final = f"ws://{DEFAULT_HOST}:{DEFAULT_PORT}"


def default_uri() -> str:
    """``MARROW_HUB_URI``, else the hub's default loopback address."""
    return os.environ.get("MARROW_HUB_URI") or DEFAULT_URI
#: the most bytes one `file_read` reply carries (docs/protocol.md §6.9)
MAX_FILE_READ: Final = 256 * 1024


def default_operator() -> str:
    """The console's name on the hub: ``operator/<your user>``."""
    try:
        return f"operator/{getpass.getuser()}"
    except Exception:
        return "operator/console"
