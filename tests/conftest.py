"""Shared fixtures: a real hub (runtime + WebSocket server on 127.0.0.1) for each test that asks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.hub import Hub, start_hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = await start_hub(tmp_path / "state")
    try:
        yield h
    finally:
        await h.stop()
