"""Full garbage collections while the operator is not typing.

A full collection stops the event loop for as long as it scans; in a console that has drawn
thousands of lines (a long diff read through, a busy transcript) that is tens of milliseconds,
and one that falls between two keys makes a visible hitch. Textual's compositor leaves many
strips in reference cycles (a divided strip keeps itself in its own cache), so such garbage
accumulates by design and only a full collection frees it.

So full collections are made rare on their own (`gc.set_threshold`), and made here instead
when a full collection would have been due and no key or mouse input came for IDLE_FOR
seconds. While input never pauses, the raised threshold still bounds how long garbage waits.
Young collections are untouched: they stay short and frequent.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

#: input this long ago means the operator is reading, not typing
IDLE_FOR = 1.0
#: how often the console looks whether a full collection is due
CHECK_EVERY = 0.5
#: the collector's own full collections come this many times less often than by default
RARER = 50


class IdleCollector:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last_input = clock()
        self._default: tuple[int, int, int] | None = None
        #: full collections made here, and the longest one (seconds)
        self.collections = 0
        self.longest = 0.0

    def start(self) -> None:
        """Make the collector's own full collections rare (call `check` every CHECK_EVERY)."""
        if self._default is None:
            self._default = gc.get_threshold()
            young, middle, full = self._default
            gc.set_threshold(young, middle, full * RARER)

    def stop(self) -> None:
        if self._default is not None:
            gc.set_threshold(*self._default)
            self._default = None

    def saw_input(self) -> None:
        self.last_input = self.clock()

    def check(self) -> bool:
        """Collect now when a full collection is due by the default rule and the operator is
        idle; True when it did."""
        if self._default is None or gc.get_count()[2] < self._default[2]:
            return False
        if self.clock() - self.last_input < IDLE_FOR:
            return False
        started = time.perf_counter()
        gc.collect()
        self.collections += 1
        self.longest = max(self.longest, time.perf_counter() - started)
        return True
