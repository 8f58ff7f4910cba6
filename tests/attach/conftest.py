"""A real hub on 127.0.0.1 over a real SQLite state folder, with a known operator token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.hub import Hub, start_hub

#: the operator token every attach test's hub has
TOKEN = "operator-secret-for-the-feed"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await start_hub(tmp_path / "state", operator_token=TOKEN)
    try:
        yield hub
    finally:
        await hub.stop()
