"""Runs the scheduler starts get their agent key ($MARROW_AGENT_KEY) and never the operator's
token: with the key, a run's separate `marrow-tui` calls take back the name that holds its
lease (a real scheduled run, real subprocesses, a real hub)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from marrow_tui.hub.secrets import agent_key

from tests.support.scheduler import make, write_config  # noqa: F401  (make is a fixture)


async def test_a_scheduled_run_proves_its_name_with_its_agent_key(tmp_path: Path,
                                                                  make: Any) -> None:  # noqa: F811
    cli = f"{shlex.quote(sys.executable)} -m marrow_tui"
    body = (f"env | grep -E '^MARROW_(AGENT|AGENT_KEY|OPERATOR_TOKEN)=' | sort > env.txt\n"
            f"{cli} claim T1 src > claim.txt 2>&1; echo $? >> claim.txt\n"
            f"{cli} release T1 > release.txt 2>&1; echo $? >> release.txt\n")
    config = write_config(tmp_path, {"a": body})
    run = await make(config, state=tmp_path / "state")
    [end] = await run.ended(1)
    ws = tmp_path / "ws" / "a"
    env = dict(line.split("=", 1) for line in (ws / "env.txt").read_text().splitlines())
    assert env["MARROW_AGENT_KEY"] == agent_key(tmp_path / "state", "a")
    assert env["MARROW_OPERATOR_TOKEN"] == ""  # never the operator's, even if we had one
    assert (ws / "claim.txt").read_text().splitlines()[-1] == "0", (ws / "claim.txt").read_text()
    release = (ws / "release.txt").read_text()
    assert release.splitlines()[-1] == "0", release  # the second call took its name back
    assert run.hub.runtime.state.claims.get("T1") is None
    assert end["state"] != "failed"
