"""Chat: a numbered history and the rules for who a message is addressed to."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

MAX_HISTORY = 10_000
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


class ChatLog:
    def __init__(self, limit: int = MAX_HISTORY) -> None:
        self.msg_id = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=limit)

    def apply(self, frame: dict[str, Any]) -> None:
        self.history.append(frame)
        self.msg_id = max(self.msg_id, int(frame["msg_id"]))

    def since(self, msg_id: int) -> list[dict[str, Any]]:
        return [frame for frame in self.history if frame["msg_id"] > msg_id]

    def tail(self, limit: int) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        return list(self.history)[-limit:]
