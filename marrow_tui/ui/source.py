"""What the console reads: the embedded `Runtime` or an attached console's `MirroredRuntime`.

Both have the same state, the same change feed and one command path (runtime.py, and
attach/mirror.py). The console is written against these protocols, so it loads neither the
runtime nor the wire client for its own sake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from ..core.events import Event
from ..core.state import State


class Options(Protocol):
    state_dir: Path


class OperatorSession(Protocol):
    name: str

    def send(self, **frame: Any) -> None: ...

    def close(self) -> None: ...


class ConsoleRuntime(Protocol):
    """What the console reads and acts through (runtime.py's `Runtime`, or a mirror)."""

    state: State
    clock: Callable[[], float]

    @property
    def restored(self) -> str: ...

    @property
    def options(self) -> Options: ...

    def subscribe(self, listener: Callable[[list[Event]], None]) -> Callable[[], None]: ...

    def join(self, name: str, on_frame: Callable[[dict[str, Any]], None]) -> OperatorSession: ...

    def history(self, limit: int) -> Awaitable[list[tuple[float, Event]]]: ...
