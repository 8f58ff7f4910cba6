"""The orchestrator inside a real runtime: real tracker files, real agent processes (which call
`marrow-tui done` and `marrow-tui ask` over the real hub), a fake clock for the retries."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marrow_tui.orchestrator.dispatcher import Orchestrator

from tests.support.hub import WAIT, FakeClock, start_hub
from tests.support.hubproc import clean_env
from tests.support.login_shell import DECOY, profile_resets_path
from tests.support.orchestrator import MARROW, Running, issue, make, workflow  # noqa: F401 (make: a fixture)

async def test_an_issue_runs_is_marked_done_and_unblocks_the_next(tmp_path: Path,
                                                                  make: Any) -> None:
    issue(tmp_path, "Todo", "A-1", "first")
    issue(tmp_path, "Todo", "A-2", "second", extra="blocked_by: [A-1]\n")
    path = workflow(tmp_path, f'{MARROW} done --title "did $SYMPHONY_ISSUE_IDENTIFIER" '
                              '--summary "all good"\n')
    run = await make(path)
    await run.tick()
    views = run.hub.runtime.state.issues.issues
    assert views["A-2"].status == "blocked" and "A-1" in views["A-2"].reason
    [done] = await run.until(lambda: run.ended("A-1"))
    assert done.state == "ok" and done.reason == "marked done: did A-1"
    assert (tmp_path / "issues" / "Done" / "A-1.md").exists()
    assert not (tmp_path / "issues" / "Todo" / "A-1.md").exists()
    await run.until(lambda: not (tmp_path / "ws" / "A-1").exists())  # gone once done
    await run.tick()  # A-1 is terminal now: A-2 may go
    [second] = await run.until(lambda: run.ended("A-2"))
    assert second.state == "ok"
    assert run.hub.runtime.state.issues.done[-1]["identifier"] == "A-2"


async def test_a_normal_exit_continues_until_the_breaker_parks_it(tmp_path: Path,
                                                                  make: Any) -> None:
    issue(tmp_path, "Todo", "B-1", "never finishes")
    path = workflow(tmp_path, "echo thinking\n")
    clock = FakeClock()
    run = await make(path, clock)
    await run.tick()
    await run.until(lambda: len(run.ended("B-1")) == 1)
    orch = run.orchestrator
    assert orch.retries["B-1"].kind == "continuation"
    clock.advance(1.0)
    await run.tick()
    await run.until(lambda: len(run.ended("B-1")) == 2)
    assert "B-1" in orch.parked  # two runs, no progress: parked, not looping forever
    clock.advance(3600)
    await run.tick()
    assert len(run.sessions) == 2
    assert run.hub.runtime.state.issues.issues["B-1"].status == "parked"


async def test_a_failure_retries_with_the_backoff(tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "C-1", "fails")
    path = workflow(tmp_path, "exit 3\n")
    clock = FakeClock()
    run = await make(path, clock)
    await run.tick()
    [first] = await run.until(lambda: run.ended("C-1"))
    assert first.state == "failed"
    retry = run.orchestrator.retries["C-1"]
    assert (retry.attempt, retry.due - clock.now) == (1, 10.0)
    clock.advance(9.9)
    await run.tick()
    assert len(run.sessions) == 1
    clock.advance(0.1)
    await run.tick()
    await run.until(lambda: len(run.ended("C-1")) == 2)
    retry = run.orchestrator.retries["C-1"]
    assert (retry.attempt, retry.due - clock.now) == (2, 20.0)


async def test_moving_the_file_out_of_the_active_states_stops_the_run(tmp_path: Path,
                                                                      make: Any) -> None:
    file = issue(tmp_path, "Todo", "D-1", "long")
    path = workflow(tmp_path, "echo started; exec sleep 600\n")
    run = await make(path)
    await run.tick()
    await run.until(lambda: run.orchestrator.running.get("D-1"))
    (tmp_path / "issues" / "Cancelled").mkdir()
    file.rename(tmp_path / "issues" / "Cancelled" / "D-1.md")
    await run.tick()
    [stopped] = await run.until(lambda: run.ended("D-1"))
    assert "terminal state" in stopped.reason
    assert "D-1" not in run.orchestrator.retries  # no retry for an issue someone closed
    await run.until(lambda: not (tmp_path / "ws" / "D-1").exists())  # terminal: it goes


async def test_a_bad_template_fails_the_attempt_not_the_process(tmp_path: Path,
                                                                make: Any) -> None:
    issue(tmp_path, "Todo", "E-1", "x")
    path = workflow(tmp_path, "echo never\n", prompt="Hi {{ issue.nope }}")
    run = await make(path)
    await run.tick()
    [ended] = await run.until(lambda: run.ended("E-1"))
    assert ended.state == "error" and "template" in ended.reason
    assert run.orchestrator.retries["E-1"].kind == "failure"


async def test_an_invalid_workflow_stops_dispatch_and_says_so(tmp_path: Path,
                                                              make: Any) -> None:
    issue(tmp_path, "Todo", "F-1", "x")
    path = workflow(tmp_path, "echo hi\n")
    run = await make(path)
    text = path.read_text()
    path.write_text(text.replace("interval_ms: 60000", "interval_ms: -5"))
    run.orchestrator.reload()
    await run.tick()
    status = run.hub.runtime.state.issues.workflow
    assert status["ok"] is False and status["dispatching"] is False
    assert any("interval_ms" in e for e in status["errors"])
    assert run.sessions == []
    path.write_text(text)
    run.orchestrator.reload()
    await run.tick()
    await run.until(lambda: run.ended("F-1"))


async def test_the_agent_asks_the_operator_and_uses_the_answer(tmp_path: Path,
                                                               make: Any) -> None:
    issue(tmp_path, "Todo", "G-1", "needs a human")
    path = workflow(tmp_path, f'answer=$({MARROW} ask "Which colour?" --choices red,blue)\n'
                              f'echo "got $answer"\n'
                              f'{MARROW} done --title "painted $answer" --summary done\n')
    run = await make(path)
    await run.tick()
    book = run.hub.runtime.state.steering
    [request] = await run.until(lambda: list(book.open.values()))
    assert (request.asker, request.task_id) == ("G-1", "G-1")
    run.hub.runtime.handle("ops", {"type": "steer_answer", "id": request.id,
                                   "answer": "blue"}, None, operator=True)
    [ended] = await run.until(lambda: run.ended("G-1"))
    assert ended.reason == "marked done: painted blue"
    assert run.hub.runtime.state.issues.done[-1]["title"] == "painted blue"


async def test_the_watcher_applies_a_workflow_change_and_sees_new_issues(tmp_path: Path,
                                                                         make: Any) -> None:
    """With the file watch on (as in real use): an edit to WORKFLOW.md is taken up, and a new
    issue file is dispatched without waiting for the poll (60 s here)."""
    path = workflow(tmp_path, "echo hi\n")
    (tmp_path / "issues" / "Todo").mkdir(parents=True)
    hub = await start_hub(tmp_path / "state")
    orchestrator = Orchestrator(hub.runtime, path, hub_uri=hub.uri, watch=True)
    await orchestrator.start()
    run = Running(hub, orchestrator)
    try:
        good = path.read_text()
        bad = good.replace("interval_ms: 60000", "interval_ms: 0")

        def ok() -> Any:
            return hub.runtime.state.issues.workflow.get("ok")

        async def write_until(text: str, test: Callable[[], Any]) -> None:
            # The watch starts in the background: write again (bounded) until it is seen.
            async with asyncio.timeout(WAIT * 2):
                while not test():
                    path.write_text(text + f"\n<!-- {asyncio.get_running_loop().time()} -->")
                    with contextlib.suppress(TimeoutError):
                        await run.until(test, timeout=0.5)

        await run.until(lambda: ok() is True)
        await write_until(bad, lambda: ok() is False)
        await write_until(good, lambda: ok() is True)
        issue(tmp_path, "Todo", "H-1", "appears later")
        await run.until(lambda: run.ended("H-1"))
    finally:
        await orchestrator.stop()
        await hub.stop()


async def test_a_broken_or_duplicated_file_never_kills_a_run(tmp_path: Path,
                                                             make: Any) -> None:
    """A save with a YAML typo, or a copy of the file into Done/, while the agent works:
    the run goes on, and the copy is not dispatched or reconciled against."""
    file = issue(tmp_path, "Todo", "J-1", "keeps working")
    path = workflow(tmp_path, "echo working; exec sleep 600\n")
    run = await make(path)
    await run.tick()
    entry = await run.until(lambda: run.orchestrator.running.get("J-1"))
    good = file.read_text()
    file.write_text("---\ntitle: [unclosed\n---\n")
    await run.tick()
    (tmp_path / "issues" / "Done").mkdir()
    (tmp_path / "issues" / "Done" / "J-1.md").write_text(good)
    file.write_text(good)
    await run.tick()
    assert run.orchestrator.running.get("J-1") is entry and not entry.stop.is_set()
    status = run.hub.runtime.state.issues.issues["J-1"]
    assert status.status in ("running", "waiting")


async def test_an_operator_cancel_outlives_a_restart(tmp_path: Path, make: Any) -> None:
    issue(tmp_path, "Todo", "K-1", "cancelled")
    path = workflow(tmp_path, "echo hi\n")
    run = await make(path)
    ops = run.hub.runtime.join("operator/test", lambda frame: None)
    await run.tick()
    ops.send(type="issue_cancel", identifier="K-1")
    await run.until(lambda: "K-1" in run.hub.runtime.state.issues.parked)
    await run.orchestrator.stop()
    await run.hub.stop()
    again = await make(path)
    await again.tick()
    assert "K-1" in again.orchestrator.parked
    assert all(s.agent != "K-1" or not s.running for s in again.sessions)
    assert again.hub.runtime.state.issues.issues["K-1"].status == "parked"


async def test_a_parked_issue_resumes_when_its_file_changes(tmp_path: Path,
                                                            make: Any) -> None:
    file = issue(tmp_path, "Todo", "L-1", "idle")
    path = workflow(tmp_path, "echo thinking\n")
    clock = FakeClock()
    run = await make(path, clock)
    await run.tick()
    await run.until(lambda: len(run.ended("L-1")) == 1)
    clock.advance(1.0)
    await run.tick()
    await run.until(lambda: "L-1" in run.orchestrator.parked)
    file.write_text(file.read_text() + "\nMore detail: try harder.\n")
    import os
    os.utime(file, (clock.now + 5, clock.now + 5))
    await run.tick()
    await run.until(lambda: len(run.ended("L-1")) == 3)


ASKS = (f'answer=$({MARROW} ask "Which colour?" --choices red,blue) || exit 1\n'
        f'{MARROW} done --title "painted $answer" --summary done\n')


async def test_a_retry_after_a_cancel_asks_afresh(tmp_path: Path, make: Any) -> None:
    """The operator cancels an issue whose run waits on a question, then retries it: the
    question the cancel ended (never received: its run was gone) is not handed to the retry,
    which asks again and waits instead of failing at once and costing an attempt."""
    issue(tmp_path, "Todo", "M-1", "asks, is cancelled, is retried")
    run = await make(workflow(tmp_path, ASKS))
    ops = run.hub.runtime.join("operator/test", lambda frame: None)
    await run.tick()
    book = run.hub.runtime.state.steering
    [first] = await run.until(lambda: list(book.open.values()))
    ops.send(type="issue_cancel", identifier="M-1")
    [stopped] = await run.until(lambda: run.ended("M-1"))
    assert stopped.reason == "cancelled by the operator"
    assert book.get(first.id).state == "cancelled"  # type: ignore[union-attr]
    ops.send(type="issue_retry", identifier="M-1")
    await run.tick()
    [again] = await run.until(lambda: list(book.open.values()))
    assert again.id != first.id and again.key == first.key
    assert run.ended("M-1") == [stopped] and "M-1" not in run.orchestrator.retries
    ops.send(type="steer_answer", id=again.id, answer="blue")
    await run.until(lambda: len(run.ended("M-1")) == 2)
    assert run.ended("M-1")[-1].reason == "marked done: painted blue"


async def test_cancelling_a_question_can_park_its_issue(tmp_path: Path, make: Any) -> None:
    """`issue_cancel` naming a question: the question ends cancelled and its issue is parked,
    so the agent is not run again 10 s later only to ask again. A question no issue asked,
    or one already over, is refused and changes nothing."""
    issue(tmp_path, "Todo", "N-1", "asks, then the operator stops it")
    run = await make(workflow(tmp_path, ASKS))
    replies: list[dict[str, Any]] = []
    ops = run.hub.runtime.join("operator/test", replies.append)
    await run.tick()
    book = run.hub.runtime.state.steering
    [request] = await run.until(lambda: list(book.open.values()))
    run.hub.runtime.handle("cli/someone", {"type": "steer_ask", "question": "Lunch?"}, None)
    [mine] = [r for r in book.open.values() if r.asker == "cli/someone"]
    async def cancel(request_id: str) -> dict[str, Any]:
        heard = len(replies)
        ops.send(type="issue_cancel", request=request_id)
        await run.until(lambda: len(replies) > heard)
        return replies[-1]

    for wrong, code in ((mine.id, "not_an_issue"), ("S99", "unknown_request")):
        refused = await cancel(wrong)
        assert (refused["type"], refused["error_code"]) == ("error", code), refused
    assert mine.open and request.open and not run.hub.runtime.state.issues.parked

    cancelling = await cancel(request.id)
    assert (cancelling["type"], cancelling["identifier"]) == ("issue_cancelling", "N-1")
    assert book.get(request.id).state == "cancelled"  # type: ignore[union-attr]
    [stopped] = await run.until(lambda: run.ended("N-1"))
    assert stopped.reason == "cancelled by the operator"
    assert "N-1" in run.hub.runtime.state.issues.parked
    assert "N-1" not in run.orchestrator.retries
    assert run.hub.runtime.state.issues.issues["N-1"].status == "parked"
    assert (await cancel(request.id))["error_code"] == "not_open"


async def test_steering_cancel_park_from_the_command_line(tmp_path: Path, make: Any) -> None:
    """`marrow-tui steering cancel ID --park`, a real process with the operator token from
    the state dir: the question is cancelled and the issue that asked it parked."""
    issue(tmp_path, "Todo", "P-1", "asks, then is parked from a shell")
    run = await make(workflow(tmp_path, ASKS))
    await run.tick()
    book = run.hub.runtime.state.steering
    [request] = await run.until(lambda: list(book.open.values()))

    async def cli(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "marrow_tui", "steering", *args, "--uri", run.hub.uri,
            "--state-dir", str(run.hub.state_dir), "--name", "cli/ann",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env())
        out, err = await asyncio.wait_for(process.communicate(), WAIT * 2)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, _, err = await cli("--park")
    assert (code, err) == (2, "marrow-tui: --park goes with `steering cancel ID`\n")
    code, out, err = await cli("cancel", request.id, "--park")
    assert code == 0, err
    assert out == f"cancelled {request.id}; P-1 is parked until it is retried\n"
    [stopped] = await run.until(lambda: run.ended("P-1"))
    assert stopped.reason == "cancelled by the operator"
    assert run.hub.runtime.state.issues.issues["P-1"].status == "parked"
    code, _, err = await cli("cancel", request.id, "--park")
    assert code == 1 and f"Request {request.id} is already cancelled" in err


async def test_a_run_calls_this_marrow_tui_whatever_its_login_shell_does(
        tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """agent.command runs under `bash -lc`, whose profile here sets PATH afresh with another
    marrow-tui first: the run still finds this one by name, and $MARROW_TUI is it."""
    profile_resets_path(tmp_path / "home")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    issue(tmp_path, "Todo", "Q-1", "calls marrow-tui by name")
    run = await make(workflow(
        tmp_path, 'test "$(command -v marrow-tui)" = "$MARROW_TUI" || exit 4\n'
                  'marrow-tui done --title "found it" --summary "by its name"\n'))
    await run.tick()
    [ended] = await run.until(lambda: run.ended("Q-1"))
    assert (ended.state, ended.reason) == ("ok", "marked done: found it")
    [stderr] = (tmp_path / "ws" / ".logs").glob("Q-1-*.stderr.log")
    assert DECOY not in stderr.read_text()
