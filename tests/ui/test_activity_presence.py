"""Activity keeps joins and leaves of agents that stay, and folds a connection that comes and
goes (a CLI command) into what it did, or one "connected briefly" line. Real CLI processes
against the console's real hub on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys
import tempfile

from tests.support.console_app import ConsoleApp, filled, until
from tests.support.hub import Agent
from tests.support.hubproc import clean_env

SIZE = (100, 30)


def lines(app: ConsoleApp) -> list[str]:
    assert app.main is not None
    return [entry.text for entry in app.main.activity.lines_kept]


async def cli(app: ConsoleApp, *args: str) -> str:
    """Run `marrow-tui ARGS --uri <the console's hub>` as cli/test; its output."""
    # Its own cwd: the CLI looks for an operator token in ./.marrow.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marrow_tui", *args, "--uri", app.hub_uri, "--name", "cli/test",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=tempfile.mkdtemp(prefix="marrow-cli-"), env=clean_env())
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out
    return out.decode()


async def test_a_cli_query_is_one_line_and_an_agent_that_stays_keeps_both() -> None:
    app = ConsoleApp(hub=True)
    async with app.run_test(size=SIZE) as pilot:
        await filled(pilot, app)
        await pilot.press("4")
        await cli(app, "who")
        await until(pilot, lambda: "connected cli/test briefly" in lines(app))
        await cli(app, "claim", "T9", "src/x.py")
        await until(pilot, lambda: any(line.startswith("claim") and "T9" in line
                                       for line in lines(app)))
        assert app.runtime.state.claims.get("T9") is not None
        agent = await Agent.join(app.hub_uri, "demo/dave")
        app.clock.advance(1)
        app.runtime.handle("demo/alice", {"type": "chat", "target": "all",
                                          "payload": "after dave came"}, None)
        # One that stays shows as it always did: joined (in its place in time, though it is
        # shown once it has stayed), and later left.
        await until(pilot, lambda: "joined    demo/dave" in lines(app))
        said = lines(app)
        chat = next(n for n, line in enumerate(said) if "after dave came" in line)
        assert said.index("joined    demo/dave") == chat - 1
        await agent.ws.close()
        await until(pilot, lambda: "left      demo/dave" in lines(app))
        said = [line for line in lines(app) if "cli/test" in line]
        assert len(said) == 2 and said[0] == "connected cli/test briefly", said
        assert not any(line.startswith(("joined", "left")) and "cli/test" in line
                       for line in lines(app))
