"""The console attached to a runtime over the wire: a real hub on 127.0.0.1 over a real SQLite
state folder, consoles on `MirroredRuntime`s driven by keys, checked on the runtime's state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button

from marrow_tui.attach.mirror import MirroredRuntime, OtherVersion
from marrow_tui.hub import feed
from marrow_tui.hub.address import read_address, running_address, write_address
from marrow_tui.runtime import Runtime
from marrow_tui.ui import link as link_module
from marrow_tui.ui.app import MarrowApp
from marrow_tui.ui.link import GoneModal, Link
from marrow_tui.ui.modals.answer import AnswerModal
from marrow_tui.ui.modals.confirm import ConfirmModal
from marrow_tui.ui.screens.main import StatusLine
from tests.support.console_app import filled, until
from tests.attach.conftest import TOKEN
from tests.support.hub import Hub

ROOT = Path(__file__).resolve().parents[2]


def say(runtime: Runtime, name: str, **frame: Any) -> None:
    runtime.handle(name, frame, None)


async def attached(hub: Hub, tmp_path: Path, name: str = "operator/ann") -> MarrowApp:
    mirror = MirroredRuntime(hub.uri, name, TOKEN)
    await mirror.start()
    return MarrowApp(mirror, hub_uri=hub.uri, link=Link(mirror), bell=False,
                     state_dir=tmp_path / f"console-{mirror.name.replace('/', '-')}")


def status(app: MarrowApp) -> str:
    assert app.main is not None
    return app.main.query_one(StatusLine).text.plain


async def test_an_attached_console_shows_the_runtime_and_answers_through_it(
        hub: Hub, tmp_path: Path) -> None:
    runtime = hub.runtime
    say(runtime, "alice", type="claim", task_id="AUTH-1", paths=["src/auth/"], ttl_seconds=600)
    app = await attached(hub, tmp_path)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await filled(pilot, app)
            assert app.main is not None
            assert "AUTH-1" in app.main.tables["claims"].keys
            assert f"attached to {hub.uri}" in status(app)
            # What happens in the runtime shows in the console.
            say(runtime, "bob", type="steer_ask", question="deploy to staging?",
                choices=["yes", "no"])
            await until(pilot, lambda: "bob asks" in status(app))
            # An answer goes over the wire, with the operator token's rights.
            await pilot.press("a")
            assert isinstance(app.screen, AnswerModal)
            await pilot.press("tab", "tab", *"yes, go", "ctrl+s")
            request = runtime.state.steering.get("S1")
            await until(pilot, lambda: request is not None and not request.open)
            assert request is not None and request.answered_by == "operator/ann"
            assert request.answer == "yes, go"
            # The console learns of it from the feed, as of anything else.
            await until(pilot, lambda: "bob asks" not in status(app))
    finally:
        await app.runtime.stop()  # type: ignore[attr-defined]


async def test_two_consoles_one_answer_wins_and_the_other_is_told_by_whom(
        hub: Hub, tmp_path: Path) -> None:
    runtime = hub.runtime
    say(runtime, "bob", type="steer_ask", question="merge it?")
    first = await attached(hub, tmp_path)
    second = await attached(hub, tmp_path)  # same operator: it gets a name of its own
    try:
        assert second.runtime.name == "operator/ann/2"  # type: ignore[attr-defined]
        async with first.run_test(size=(120, 36)) as one, \
                second.run_test(size=(120, 36)) as two:
            await filled(one, first)
            await filled(two, second)
            await one.press("a")
            await two.press("a")
            assert isinstance(first.screen, AnswerModal)
            assert isinstance(second.screen, AnswerModal)
            await one.press(*"first", "ctrl+s")
            request = runtime.state.steering.get("S1")
            await until(one, lambda: request is not None and not request.open)
            # The other console sees it answered within a frame or so.
            await until(two, lambda: not second.runtime.state.steering.get("S1").open)
            if isinstance(second.screen, AnswerModal):
                await two.press(*"second", "ctrl+s")
            else:  # the dialog closed itself on the answer: the key answers nothing now
                second.main.session.send(type="steer_answer", id="S1", answer="second")
            told = await until(two, lambda: [n.message for n in second._notifications
                                             if "already answered" in n.message])
            assert told == ["Request S1 was already answered by operator/ann: first"]
            assert request is not None and request.answer == "first"
    finally:
        await first.runtime.stop()  # type: ignore[attr-defined]
        await second.runtime.stop()  # type: ignore[attr-defined]


async def test_a_dropped_link_says_reconnecting_offers_to_wait_and_resumes(
        hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link_module, "GONE_AFTER", 0.0)
    runtime = hub.runtime
    # The hub refuses the console while it is "down", then lets it back in.
    refusing = {"on": False}
    original = hub.server.feeds.request

    def feed_request(conn: Any, name: str, frame: dict[str, Any], operator: bool) -> Any:
        if refusing["on"]:
            conn.transport.abort()
            return None
        return original(conn, name, frame, operator)

    monkeypatch.setattr(hub.server.feeds, "request", feed_request)
    app = await attached(hub, tmp_path)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await filled(pilot, app)
            refusing["on"] = True
            hub.server.sessions["operator/ann"].transport.abort()
            await until(pilot, lambda: "reconnecting to" in status(app))
            await until(pilot, lambda: isinstance(app.screen, GoneModal))
            dialog = app.screen
            await until(pilot, lambda: [str(b.label) for b in dialog.query(Button)]
                        == ["Wait (w)", "Quit (q)"])
            assert all(dialog.region.contains_region(b.region) for b in dialog.query(Button))
            for n in range(5):  # the runtime goes on meanwhile
                say(runtime, "alice", type="claim", task_id=f"GAP-{n}", paths=[f"gap/{n}"])
            await pilot.press("w")  # wait for it
            assert not isinstance(app.screen, GoneModal)
            refusing["on"] = False
            await until(pilot, lambda: f"attached to {hub.uri}" in status(app), timeout=15)
            assert app.main is not None
            await until(pilot, lambda: all(f"GAP-{n}" in app.main.tables["claims"].keys
                                           for n in range(5)))
    finally:
        await app.runtime.stop()  # type: ignore[attr-defined]


async def test_a_fresh_snapshot_repaints_every_pane(hub: Hub, tmp_path: Path) -> None:
    runtime = hub.runtime
    say(runtime, "alice", type="claim", task_id="OLD-1", paths=["a/"])
    app = await attached(hub, tmp_path)
    mirror = app.runtime
    assert isinstance(mirror, MirroredRuntime)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await filled(pilot, app)
            assert app.main is not None
            table = app.main.tables["claims"]
            assert "OLD-1" in table.keys
            mirror._fresh = True  # as after a gap: the next connection loads a snapshot
            hub.server.sessions["operator/ann"].transport.abort()
            await until(pilot, lambda: mirror.status == "reconnecting")
            say(runtime, "alice", type="release", task_id="OLD-1")
            say(runtime, "alice", type="claim", task_id="NEW-1", paths=["b/"])
            await until(pilot, lambda: mirror.loads == 2 and mirror.connected, timeout=15)
            await until(pilot, lambda: "NEW-1" in table.keys
                        and "OLD-1" not in table.keys)
    finally:
        await mirror.stop()


async def test_quitting_an_attached_console_detaches_and_stops_nothing(
        hub: Hub, tmp_path: Path) -> None:
    runtime = hub.runtime
    say(runtime, "alice", type="claim", task_id="KEEP-1", paths=["k/"])
    app = await attached(hub, tmp_path)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await filled(pilot, app)
            await pilot.press("q")
            dialog = app.screen
            assert isinstance(dialog, ConfirmModal)
            assert dialog.title_text == "Detach from the runtime?"
            assert "nothing is stopped" in dialog.body
            assert str(dialog.query_one("#yes", Button).label) == "Detach (y)"
            await pilot.press("y")
    finally:
        await app.runtime.stop()  # type: ignore[attr-defined]
    assert app.return_code == 0
    assert "KEEP-1" in runtime.state.claims.claims  # nothing of the runtime's was touched
    assert not runtime.failed.is_set()


async def test_the_embedded_quit_dialog_says_it_stops_the_runtime_and_who_loses_it(
        hub: Hub, tmp_path: Path) -> None:
    mirror = MirroredRuntime(hub.uri, "operator/ann", TOKEN)
    await mirror.start()  # another operator is attached
    try:
        app = MarrowApp(hub.runtime, hub_uri=hub.uri, operator="operator/me", bell=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await filled(pilot, app)
            await pilot.press("q")
            dialog = app.screen
            assert isinstance(dialog, ConfirmModal)
            assert "1 other operator attached" in dialog.body
            assert str(dialog.query_one("#yes", Button).label) == \
                "Quit and stop the runtime (y)"
            await pilot.press("n")
    finally:
        await mirror.stop()


async def test_a_runtime_of_another_format_is_refused_with_both_versions(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    real = feed.about

    def newer(runtime: Runtime) -> dict[str, Any]:
        said = real(runtime)
        return {**said, "version": "9.0.0", "formats": {**said["formats"], "snapshot": 2}}

    monkeypatch.setattr(feed, "about", newer)
    mirror = MirroredRuntime(hub.uri, "operator/ann", TOKEN)
    with pytest.raises(OtherVersion) as refused:
        await mirror.start()
    assert refused.value.message == (
        "the runtime is marrow-tui 9.0.0 and this console is 0.1.0: they differ in the state "
        "they exchange (snapshot format 2 (this console reads 1)); attach with the runtime's "
        "version")
    assert mirror.state.claims.claims == {}


async def test_the_history_comes_over_the_wire(hub: Hub, tmp_path: Path) -> None:
    runtime = hub.runtime
    for n in range(3):
        say(runtime, "alice", type="claim", task_id=f"H-{n}", paths=[f"h/{n}"])
    await runtime.settled()
    mirror = MirroredRuntime(hub.uri, "operator/ann", TOKEN)
    await mirror.start()
    try:
        past = await mirror.history(2)
        assert [event.data["task_id"] for _, event in past] == ["H-1", "H-2"]
        assert mirror.restored == runtime.restored
    finally:
        await mirror.stop()


def test_the_address_file_names_a_live_process_only(tmp_path: Path) -> None:
    write_address(tmp_path, "ws://0.0.0.0:9999", "0.1.0")
    found = read_address(tmp_path)
    assert found is not None and found.uri == "ws://127.0.0.1:9999"
    assert running_address(tmp_path) is None  # our own process is not "a runtime here"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (tmp_path / "hub.json").write_text(
        f'{{"uri": "ws://127.0.0.1:9999", "pid": {gone.stdout.strip()}, "version": "0.1.0"}}')
    assert running_address(tmp_path) is None  # a killed runtime's file: nobody there


def run_cli(*words: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MARROW_")}
    environment.update(env or {}, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "marrow_tui", *words], capture_output=True,
                          text=True, env=environment, cwd=cwd, timeout=60)


async def test_attach_with_a_wrong_or_missing_token_says_so_in_one_sentence(
        hub: Hub, tmp_path: Path) -> None:
    import asyncio

    wrong = await asyncio.to_thread(run_cli, "attach", hub.uri, "--operator-token", "nope")
    assert wrong.returncode == 3 and wrong.stdout == ""
    assert wrong.stderr == (f"marrow-tui: cannot attach to {hub.uri}: the runtime refused this "
                            "console: Invalid operator token.\n")
    missing = await asyncio.to_thread(run_cli, "attach", hub.uri, "--state-dir",
                                      str(tmp_path / "nowhere"))
    assert missing.returncode == 3 and missing.stdout == ""
    assert missing.stderr.startswith(f"marrow-tui: cannot attach to {hub.uri}: the runtime "
                                     "gives its state to operators only")
    assert missing.stderr.count("\n") == 1


async def test_marrow_tui_on_a_folder_whose_runtime_runs_attaches_to_it(
        hub: Hub, tmp_path: Path) -> None:
    import asyncio

    write_address(hub.state_dir, hub.uri, "0.1.0")
    # The address file names this (test) process; as another process sees it, a runtime runs.
    done = await asyncio.to_thread(
        run_cli, "--state-dir", str(hub.state_dir),
        env={"MARROW_OPERATOR_TOKEN": "not-the-token"})
    # It tried to attach (and was refused: a wrong token), rather than open the folder again.
    assert done.returncode == 3
    assert done.stderr == (f"marrow-tui: cannot attach to {hub.uri}: the runtime refused this "
                           "console: Invalid operator token.\n")


async def test_a_refused_reconnect_says_why_and_offers_to_quit(
        hub: Hub, tmp_path: Path) -> None:
    app = await attached(hub, tmp_path)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await filled(pilot, app)
            hub.server._operator_token = "a-new-token"  # the runtime's token was changed
            hub.server.sessions["operator/ann"].transport.abort()
            await until(pilot, lambda: isinstance(app.screen, GoneModal), timeout=15)
            assert "detached: the runtime refused this console: Invalid" in status(app)
            dialog = app.screen
            await until(pilot, lambda: [str(b.label) for b in dialog.query(Button)]
                        == ["Stay (w)", "Quit (q)"])
            await pilot.press("q")
        assert app.return_code == 0
    finally:
        await app.runtime.stop()  # type: ignore[attr-defined]


async def test_the_runtimes_files_are_read_in_place_only_when_it_runs_on_this_machine(
        hub: Hub) -> None:
    from marrow_tui.ui.app import on_this_machine

    mirror = MirroredRuntime(hub.uri, "operator/ann", TOKEN)
    await mirror.start()
    try:
        assert not on_this_machine(mirror)  # no hub.json says this runtime's folder is here
        write_address(hub.state_dir, hub.uri, "0.1.0")
        assert on_this_machine(mirror)
        write_address(hub.state_dir, "ws://127.0.0.1:1", "0.1.0")  # another runtime's folder
        assert not on_this_machine(mirror)
    finally:
        await mirror.stop()


def test_a_console_whose_exit_hangs_after_a_hangup_still_ends(tmp_path: Path) -> None:
    # Textual's exit writes to the terminal; with the terminal gone that write can block for
    # ever (seen with tmux windows closed under attached consoles). Staged here by an app
    # whose exit never finishes: the process must end anyway, a bounded time after SIGHUP,
    # and an embedded console stops its runs (their ends in the log) before it begins to exit.
    script = tmp_path / "hangs.py"
    script.write_text(
        "import asyncio, os, signal, sys\n"
        "from marrow_tui.ui.app import run_until_signalled\n"
        "class Hangs:\n"
        "    def exit(self):\n"
        "        print('exiting', flush=True)\n"
        "        signal.pause()  # the write that never returns\n"
        "    async def run_async(self):\n"
        "        print('running', flush=True)\n"
        "        await asyncio.Event().wait()\n"
        "async def wind_down():\n"
        "    await asyncio.sleep(0)\n"
        "    print('runs stopped', flush=True)\n"
        "asyncio.run(run_until_signalled(Hangs(), give_up_after=0.2, wind_down=wind_down))\n")
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                             env=environment)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "running\n"
        child.send_signal(signal.SIGHUP)
        assert child.wait(timeout=30) == 0
        # the runs were stopped before the exit that hangs began
        assert child.stdout.read() == "runs stopped\nexiting\n"
    finally:
        if child.poll() is None:
            child.kill()
