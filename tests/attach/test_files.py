"""The runtime's files over the wire: `file_read` on a real hub on 127.0.0.1 over a real state
folder, the local copies an attached console reads (`RemoteFiles`, through a real
`MirroredRuntime`), and the agent view of a console that reads its transcript from a copy."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Log

from marrow_tui.attach.files import RemoteFiles, RuntimeFile
from marrow_tui.attach.mirror import MirroredRuntime
from marrow_tui.core.events import Event
from marrow_tui.core.sessions import Session
from marrow_tui.hub.client import HubClient, Refused
from marrow_tui.hub.defaults import MAX_FILE_READ
from marrow_tui.ui.screens.agent import AgentScreen
from marrow_tui.ui.screens.log import LogScreen
from marrow_tui.ui.transcript.widget import TranscriptLog
from tests.support.console_app import ConsoleApp, filled
from tests.support.console_app import until as pilot_until
from tests.attach.conftest import TOKEN
from tests.support.hub import Hub
from tests.support.transcripts import acp_run_events, append, seed_acp_run, text, write_transcript
from tests.support.waiting import until

RUN = "builder-20270115-075800-000"


@pytest.fixture
async def operator(hub: Hub) -> AsyncIterator[HubClient]:
    async with HubClient(hub.uri, "console-a", operator_token=TOKEN) as client:
        yield client


@pytest.fixture
async def mirror(hub: Hub) -> AsyncIterator[MirroredRuntime]:
    mirror = MirroredRuntime(hub.uri, "console-a", TOKEN)
    await mirror.start()
    try:
        yield mirror
    finally:
        await mirror.stop()


def logs(hub: Hub) -> Path:
    """Where a scheduled agent's runs write: its workspace, not the state folder."""
    folder = hub.state_dir.parent / "workspace" / "runtime" / "logs" / "exec"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def record_run(hub: Hub, run: str = RUN, **files: Path) -> None:
    """A run's start as the scheduler records it, with the files it writes."""
    seed_acp_run(hub.runtime, [Event("session_start", {
        "id": run, "agent": "builder", "started": hub.clock(), "tasks": [],
        **{stream: str(path) for stream, path in files.items()}})])


def record_service(hub: Hub, name: str, log: Path) -> None:
    seed_acp_run(hub.runtime, [Event("service_state", {
        "name": name, "state": "healthy", "since": hub.clock(), "log": str(log)})])


def data(frame: dict[str, Any]) -> bytes:
    return base64.b64decode(frame["data"])


def add(path: Path, more: bytes) -> None:
    """Bytes appended, as a run's writer appends them."""
    with open(path, "ab") as handle:
        handle.write(more)


def rotate(path: Path, fresh: bytes) -> None:
    """What the runtime's writers do (rotating.py): `.1` to `.2`, the file to `.1`, a new one."""
    older = path.with_name(path.name + ".1")
    if older.exists():
        os.replace(older, path.with_name(path.name + ".2"))
    os.replace(path, older)
    path.write_bytes(fresh)


# ---- file_read --------------------------------------------------------------------------------


async def test_file_read_gives_the_bytes_from_an_offset_of_each_part_and_shows_a_rotation(
        hub: Hub, operator: HubClient) -> None:
    transcript = logs(hub) / f"{RUN}.transcript.jsonl"
    transcript.with_name(transcript.name + ".2").write_bytes(b"oldest\n")
    transcript.with_name(transcript.name + ".1").write_bytes(b"older\n")
    transcript.write_bytes(b"line one\nline two\n")
    stderr = logs(hub) / f"{RUN}.stderr.log"
    stderr.write_bytes(b"warning: x\n")
    record_run(hub, transcript=transcript, stderr=stderr)

    live = await operator.file_read(run=RUN, stream="transcript", offset=5, length=8)
    assert live["type"] == "file_data" and live["target"] == "console-a"
    assert data(live) == b"one\nline"
    assert (live["offset"], live["size"], live["part"]) == (5, 18, 0)
    assert data(await operator.file_read(run=RUN, stream="transcript", part=1)) == b"older\n"
    assert data(await operator.file_read(run=RUN, stream="transcript", part=2)) == b"oldest\n"
    assert data(await operator.file_read(run=RUN, stream="stderr")) == b"warning: x\n"
    past = await operator.file_read(run=RUN, stream="transcript", offset=100)
    assert data(past) == b"" and past["size"] == 18  # past the end: nothing, and the size

    rotate(transcript, b"new\n")
    after = await operator.file_read(run=RUN, stream="transcript")
    assert data(after) == b"new\n" and after["size"] == 4
    assert after["identity"] != live["identity"]  # another file: the reader starts afresh
    moved = await operator.file_read(run=RUN, stream="transcript", part=1, length=0)
    assert moved["identity"] == live["identity"] and moved["size"] == 18
    assert data(moved) == b""  # length 0: only the size and the identity

    os.truncate(stderr, 3)  # cut in place: the same file, smaller
    cut = await operator.file_read(run=RUN, stream="stderr", length=0)
    assert cut["size"] == 3


async def test_a_service_log_is_read_by_the_service_name(hub: Hub, operator: HubClient) -> None:
    log = hub.state_dir / "services" / "db.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"ready to accept connections\n")
    record_service(hub, "db", log)
    frame = await operator.file_read(service="db")
    assert data(frame) == b"ready to accept connections\n"
    assert frame["service"] == "db" and frame["size"] == 28


async def test_a_reply_is_capped_and_bigger_files_come_in_pieces(
        hub: Hub, operator: HubClient) -> None:
    out = logs(hub) / f"{RUN}.stdout.log"
    body = bytes(range(256)) * (MAX_FILE_READ // 256 * 2 + 3)
    out.write_bytes(body)
    record_run(hub, stdout=out)
    first = await operator.file_read(run=RUN, stream="stdout")
    assert len(data(first)) == MAX_FILE_READ and first["size"] == len(body)
    got = data(first)
    while len(got) < len(body):
        got += data(await operator.file_read(run=RUN, stream="stdout", offset=len(got)))
    assert got == body


async def test_a_connection_that_is_not_an_operator_s_reads_nothing(hub: Hub) -> None:
    out = logs(hub) / f"{RUN}.stdout.log"
    out.write_bytes(b"secret output\n")
    record_run(hub, stdout=out)
    async with HubClient(hub.uri, "alice") as agent:
        with pytest.raises(Refused) as refused:
            await agent.file_read(run=RUN, stream="stdout")
    frame = refused.value.frame
    assert frame["type"] == "error" and frame["error_code"] == "forbidden"
    assert frame["payload"] == ("Only an operator reads the runtime's files (file_read): "
                                "connect with the operator token.")
    assert "data" not in frame


BAD_REQUESTS = [
    ({"run": "made-up-run", "stream": "stdout"},
     "No run 'made-up-run' is known to this runtime.", "not_found"),
    ({"service": "nowhere"}, "No service 'nowhere' is known to this runtime.", "not_found"),
    ({"run": RUN, "stream": "stdout", "part": -1},
     ("Malformed frame: 'part' must be an integer from 0 (the live file) to 99 (its oldest "
      "rotation)."), "MALFORMED"),
    ({"run": RUN, "stream": "stdout", "length": 1 << 40},
     "Malformed frame: 'length' must be an integer from 0 to 262144 (256 KiB a reply).",
     "MALFORMED"),
    ({"run": RUN, "stream": "stdout", "offset": -1},
     "Malformed frame: 'offset' must be an integer, 0 or more (a byte of the file).",
     "MALFORMED"),
    ({"run": RUN, "stream": "../../etc/passwd"},
     ("Malformed frame: a run's 'stream' is stdout, stderr or transcript, not "
      "'../../etc/passwd'."), "MALFORMED"),
    ({"run": RUN, "service": "db", "stream": "stdout"},
     ("Malformed frame: file_read names a run ('run': its session id) or a service "
      "('service': its name), one of the two."), "MALFORMED"),
    ({"run": RUN, "stream": "transcript"},
     f"Run '{RUN}' has no transcript file.", "not_found"),
    ({"run": RUN, "stream": "stdout", "part": 1},
     "The run '{RUN}' stdout has no rotation 1 ({out}.1 does not exist).", "not_found"),
]


@pytest.mark.parametrize(("fields", "sentence", "code"), BAD_REQUESTS)
async def test_a_bad_request_gets_one_sentence_and_reads_nothing(
        hub: Hub, operator: HubClient, fields: dict[str, Any], sentence: str,
        code: str) -> None:
    out = logs(hub) / f"{RUN}.stdout.log"
    out.write_bytes(b"output\n")
    record_run(hub, stdout=out)
    with pytest.raises(Refused) as refused:
        await operator.file_read(**fields)
    frame = refused.value.frame
    assert frame["type"] == "file_refused" and frame["error_code"] == code
    assert frame["payload"] == sentence.format(RUN=RUN, out=out)
    assert "data" not in frame and "size" not in frame
    # the connection goes on: the next request is answered
    assert data(await operator.file_read(run=RUN, stream="stdout")) == b"output\n"


async def test_a_recorded_path_that_is_not_the_run_s_own_file_is_refused(
        hub: Hub, operator: HubClient) -> None:
    secret = hub.state_dir.parent / "secret.txt"
    secret.write_bytes(b"the operator token\n")
    own = logs(hub) / f"{RUN}.stdout.log"
    own.write_bytes(b"output\n")
    record_run(hub, stdout=own)
    session = hub.runtime.state.sessions.by_id[RUN]

    session.stdout = str(secret)  # the state edited to point outside the run's files
    with pytest.raises(Refused) as refused:
        await operator.file_read(run=RUN, stream="stdout")
    assert refused.value.code == "refused"
    assert refused.value.text == (
        f"Run '{RUN}' records its stdout as {secret}, which is not the file the runtime "
        f"writes for it ({RUN}.stdout.log): refused.")

    # named as the run's file, but a link to another one
    own.unlink()
    own.symlink_to(secret)
    session.stdout = str(own)
    with pytest.raises(Refused) as refused:
        await operator.file_read(run=RUN, stream="stdout")
    assert refused.value.code == "refused"
    assert refused.value.text == f"The run '{RUN}' stdout file {own} is a symbolic link: refused."

    record_service(hub, "db", secret)  # a service's log outside the state folder
    with pytest.raises(Refused) as refused:
        await operator.file_read(service="db")
    assert refused.value.text == (
        f"Service 'db' records its log as {secret}, outside the runtime's services folder "
        f"{hub.state_dir / 'services'}: refused.")


# ---- RemoteFiles ------------------------------------------------------------------------------


def copied(files: RemoteFiles, file: RuntimeFile, *expected: bytes) -> bool:
    """The copy of `file` holds `expected` (the live file, then each rotation)."""
    copy = files.copy(file)
    if copy is None:
        return False
    paths = [copy.path] + [copy.part(n) for n in range(1, len(expected))]
    try:
        return [p.read_bytes() for p in paths] == list(expected)
    except FileNotFoundError:
        return False


async def test_a_copy_follows_the_runtime_s_file_through_appends_and_a_rotation(
        hub: Hub, mirror: MirroredRuntime, tmp_path: Path) -> None:
    transcript = logs(hub) / f"{RUN}.transcript.jsonl"
    transcript.with_name(transcript.name + ".1").write_bytes(b'{"n": 0}\n')
    transcript.write_bytes(b'{"n": 1}\n')
    record_run(hub, transcript=transcript)
    files = RemoteFiles(mirror, tmp_path / "cache", poll_every=0.02)
    file = RuntimeFile(str(transcript), run=RUN, stream="transcript")
    path = await files.local_path(file)
    try:
        assert path.is_relative_to(tmp_path / "cache") and path != transcript
        assert path.read_bytes() == b'{"n": 1}\n'  # there when the path is handed over
        assert await until(lambda: copied(files, file, b'{"n": 1}\n', b'{"n": 0}\n'))

        add(transcript, b'{"n": 2}\n{"n": 3, "half": ')  # a line still being written
        assert await until(lambda: path.read_bytes() == transcript.read_bytes())
        first = path.stat().st_ino

        rotate(transcript, b'{"n": 4}\n')
        assert await until(lambda: copied(files, file, b'{"n": 4}\n',
                                          b'{"n": 1}\n{"n": 2}\n{"n": 3, "half": ',
                                          b'{"n": 0}\n'))
        assert path.stat().st_ino != first  # a new file: the readers take it for a rotation

        os.truncate(transcript, 0)  # cut in place, then written again
        add(transcript, b'{"n": 5}\n')
        assert await until(lambda: path.read_bytes() == b'{"n": 5}\n')
    finally:
        files.close(file)
    assert await until(lambda: not path.parent.exists())  # closed: the copy is gone
    await files.aclose()
    assert not files.folder.exists()


async def test_a_big_file_is_copied_from_its_tail_at_a_line_start(
        hub: Hub, mirror: MirroredRuntime, tmp_path: Path) -> None:
    out = logs(hub) / f"{RUN}.stdout.log"
    lines = b"".join(b"line %05d\n" % n for n in range(1000))  # 11 bytes a line
    out.write_bytes(lines)
    out.with_name(out.name + ".1").write_bytes(b"never copied\n")
    record_run(hub, stdout=out)
    files = RemoteFiles(mirror, tmp_path / "cache", poll_every=0.02, tail_bytes=1000)
    file = RuntimeFile(str(out), run=RUN, stream="stdout")
    path = await files.local_path(file)
    try:
        tail = path.read_bytes()
        assert tail == lines[-990:]  # whole lines only: the first one cut is left out
        add(out, b"line 01000\n")
        assert await until(lambda: path.read_bytes() == lines[-990:] + b"line 01000\n")
        copy = files.copy(file)
        assert copy is not None and not copy.part(1).exists()  # a gap would come before it

        add(out, lines * 2)  # more than the tail since the last look: afresh
        assert await until(lambda: path.read_bytes() == (lines * 2)[-990:])
    finally:
        await files.aclose()


async def test_a_copy_goes_on_after_the_connection_drops(
        hub: Hub, mirror: MirroredRuntime, tmp_path: Path) -> None:
    log = hub.state_dir / "services" / "db.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"starting\n")
    record_service(hub, "db", log)
    files = RemoteFiles(mirror, tmp_path / "cache", poll_every=0.02)
    file = RuntimeFile(str(log), service="db")
    path = await files.local_path(file)
    statuses: list[str] = []
    mirror.subscribe_status(statuses.append)
    try:
        assert path.read_bytes() == b"starting\n"
        hub.server.sessions["console-a"].transport.abort()  # the socket drops, hub side
        add(log, b"ready\n")
        assert await until(lambda: path.read_bytes() == b"starting\nready\n", timeout=10)
        assert "reconnecting" in statuses and mirror.connected
        copy = files.copy(file)
        assert copy is not None and copy.fresh == 1  # the same file, followed on
    finally:
        await files.aclose()


# ---- the console ------------------------------------------------------------------------------


async def test_an_attached_console_shows_a_transcript_it_cannot_read_from_a_copy(
        hub: Hub, mirror: MirroredRuntime, tmp_path: Path) -> None:
    transcript = write_transcript(logs(hub) / f"{RUN}.transcript.jsonl", extra=[
        text("user_message_chunk", "Fix the login bug"),
        text("agent_message_chunk", "Reading the session code."),
    ])
    seed_acp_run(hub.runtime, acp_run_events(RUN, "builder", transcript))
    # The console's own state names the runtime's path, which does not exist on its machine.
    elsewhere = Path("/nonexistent/runtime-machine") / transcript.name
    app = ConsoleApp(seeded=False, seed_with=lambda runtime: seed_acp_run(
        runtime, acp_run_events(RUN, "builder", elsewhere)))
    files = RemoteFiles(mirror, tmp_path / "cache", poll_every=0.02)
    app.files = files
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await filled(pilot, app)
            await pilot_until(pilot, lambda: app.main.check_action("open_log", ()))
            await pilot.press("enter")
            screen = await pilot_until(pilot, lambda: isinstance(app.screen, AgentScreen)
                                       and app.screen)
            view = screen.query_one(TranscriptLog)
            assert view.reader.path.is_relative_to(tmp_path / "cache")
            await pilot_until(pilot, lambda: "Reading the session code." in view.lines_text())
            assert "▌ Fix the login bug" in view.lines_text()

            append(transcript, text("agent_message_chunk", "Found it in session.py."))
            await pilot_until(pilot, lambda: any("Found it in session.py." in line
                                                 for line in view.lines_text()))
            await pilot.press("escape")
            await pilot_until(pilot, lambda: not isinstance(app.screen, AgentScreen))
            assert await until(lambda: not view.reader.path.parent.exists())  # closed
    finally:
        await files.aclose()


async def test_an_attached_console_s_output_view_reads_a_copy_of_each_stream(
        hub: Hub, mirror: MirroredRuntime, tmp_path: Path) -> None:
    out, err = logs(hub) / f"{RUN}.stdout.log", logs(hub) / f"{RUN}.stderr.log"
    out.write_bytes(b"compiling\n")
    err.write_bytes(b"warning: unused import\n")
    record_run(hub, stdout=out, stderr=err)
    elsewhere = Path("/nonexistent/runtime-machine")
    run = Session(id=RUN, agent="builder", started=hub.clock(),
                  stdout=str(elsewhere / out.name), stderr=str(elsewhere / err.name))
    app = ConsoleApp(seeded=False)
    files = RemoteFiles(mirror, tmp_path / "cache", poll_every=0.02)
    app.files = files
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await filled(pilot, app)
            screen = LogScreen(run)
            await app.push_screen(screen)
            lines = screen.query_one(Log)
            await pilot_until(pilot, lambda: "compiling" in lines.lines)
            assert screen.path.is_relative_to(tmp_path / "cache")
            add(out, b"linking\n")
            await pilot_until(pilot, lambda: "linking" in lines.lines)
            await pilot.press("e")  # stderr
            await pilot_until(pilot, lambda: "warning: unused import" in lines.lines)
            await pilot.press("escape")
            await pilot_until(pilot, lambda: not isinstance(app.screen, LogScreen))
            assert await until(lambda: files.copy(screen.file) is None
                               and not screen.path.parent.exists())
    finally:
        await files.aclose()


async def test_an_attached_output_view_says_why_a_file_cannot_be_read(
        hub: Hub, mirror: MirroredRuntime, tmp_path: Path) -> None:
    secret = hub.state_dir.parent / "secret.txt"
    secret.write_bytes(b"the operator token\n")
    record_run(hub, stdout=secret)  # the runtime's record names a file that is not the run's
    run = Session(id=RUN, agent="builder", started=hub.clock(),
                  stdout="/nonexistent/runtime-machine/out.log", stderr="")
    app = ConsoleApp(seeded=False)
    files = RemoteFiles(mirror, tmp_path / "cache", poll_every=0.02)
    app.files = files
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await filled(pilot, app)
            screen = LogScreen(run)
            await app.push_screen(screen)
            lines = screen.query_one(Log)
            said = await pilot_until(pilot, lambda: [line for line in lines.lines
                                                     if "cannot be read" in line])
            assert said == [f"(/nonexistent/runtime-machine/out.log cannot be read from the "
                            f"runtime: Run '{RUN}' records its stdout as {secret}, which is not "
                            f"the file the runtime writes for it ({RUN}.stdout.log): refused.)"]
    finally:
        await files.aclose()
