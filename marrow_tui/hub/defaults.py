"""What a client knows about a hub before it connects: where a hub listens unless told
otherwise, and the words the board and claims accept.

A leaf with no imports, so the command line can offer these in its options without loading
the WebSocket client or server.
"""

from __future__ import annotations

from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8876
DEFAULT_URI: Final = f"ws://{DEFAULT_HOST}:{DEFAULT_PORT}"

PROGRESS_KINDS: Final = ("note", "blocked", "assessment", "usage", "approval")
BOARD_STATUSES: Final = ("open", "in_progress", "blocked", "done", "cancelled")
CLAIM_STATUSES: Final = ("claimed", "working", "input_required", "done", "failed")
