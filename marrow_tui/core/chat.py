"""Chat: a numbered history and the rules for who a message is addressed to.

History is bounded twice: by count (`MAX_HISTORY` frames) and by bytes (`max_bytes`, the
encoded frames' total, `MAX_HISTORY_BYTES` unless the runtime is told otherwise), so a burst of
large messages cannot pin memory or grow the snapshot without bound. One chat is capped at
`max_message_bytes`, below the WebSocket frame limit and never above the history budget.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

MAX_HISTORY = 10_000
#: the default bound on the history's encoded size
MAX_HISTORY_BYTES = 16 * 1024 * 1024
#: the largest chat frame the hub keeps, as it serialises it (a quarter of the 1 MiB frame limit)
MAX_CHAT_BYTES = 256 * 1024
#: the chat frames one `history_snapshot` or `resume_snapshot` carries at most, in bytes: with
#: the reply's own fields it stays under the 1 MiB that clients (websockets' default) accept
MAX_REPLY_BYTES = 768 * 1024
BROADCAST_TARGETS = frozenset({"", "all", "*"})


@lru_cache(maxsize=4096)
def _patterns(target: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in target.split(",") if part.strip())


def addressed_to(target: str, name: str, roles: Iterable[str] = ()) -> bool:
    """Whether a message for `target` reaches the agent `name` holding `roles`.

    A target is `all`, or a comma-separated list of exact names, `fnmatch` globs (`proj/*`),
    bare projects (`proj` reaches `proj/anyone`) or roles (`proj/reviewer`).
    """
    if target in BROADCAST_TARGETS:
        return True
    candidates = (name, *roles)
    for pattern in _patterns(target):
        if pattern in BROADCAST_TARGETS:
            return True
        for candidate in candidates:
            if candidate == pattern or candidate.startswith(pattern + "/"):
                return True
            if any(ch in pattern for ch in "*?[") and fnmatchcase(candidate, pattern):
                return True
    return False


def frame_size(frame: dict[str, Any]) -> int:
    """The bytes of `frame` as the hub serialises it (ASCII JSON, so characters are bytes)."""
    return len(json.dumps(frame, separators=(",", ":")))


def within(frames: list[dict[str, Any]], budget: int = MAX_REPLY_BYTES, *,
           newest: bool) -> list[dict[str, Any]]:
    """As many of `frames` as fit in `budget` bytes, from the newest end or the oldest end,
    in their order. At least one frame is kept (one chat is capped well below the budget)."""
    order = reversed(frames) if newest else iter(frames)
    kept: list[dict[str, Any]] = []
    used = 0
    for frame in order:
        used += frame_size(frame) + 1
        if kept and used > budget:
            break
        kept.append(frame)
    return kept[::-1] if newest else kept


class ChatLog:
    def __init__(self, limit: int = MAX_HISTORY, max_bytes: int = MAX_HISTORY_BYTES) -> None:
        self.msg_id = 0
        self.limit = limit
        self.max_bytes = max_bytes
        #: the encoded size of what `history` holds now
        self.bytes = 0
        self.history: deque[dict[str, Any]] = deque()
        self._sizes: deque[int] = deque()

    @property
    def max_message_bytes(self) -> int:
        """The largest chat frame accepted: below the frame limit, and never over the budget."""
        return min(MAX_CHAT_BYTES, self.max_bytes)

    def apply(self, frame: dict[str, Any], size: int | None = None) -> None:
        """Keep `frame` (of `size` encoded bytes, measured when not given), dropping the oldest
        frames until both bounds hold; the numbering never goes back."""
        self.msg_id = max(self.msg_id, int(frame["msg_id"]))
        if size is None:
            size = frame_size(frame)
        self.history.append(frame)
        self._sizes.append(size)
        self.bytes += size
        while self.history and (len(self.history) > self.limit or self.bytes > self.max_bytes):
            self.history.popleft()
            self.bytes -= self._sizes.popleft()

    def since(self, msg_id: int) -> list[dict[str, Any]]:
        return [frame for frame in self.history if frame["msg_id"] > msg_id]

    def tail(self, limit: int) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        return list(self.history)[-limit:]
