"""Files a config names (marrow.toml itself, the rules, role files, WORKFLOW.md) can be
anything: a FIFO, a device, a huge file, TOML nested thousands deep. None of them may stall
the event loop, eat the memory, or end in a traceback: each is refused in one sentence that
says which file and why, and nothing changes.

The FIFOs are real (os.mkfifo). Code that opened one the old way would wait forever for a
writer, so every FIFO test runs under a `FifoGuard`: after WAIT seconds it plays the writer
(the blocked open returns, the read sees end of file) and the test fails on `guard.fired`
instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from marrow_tui.config.edit import edit_agent
from marrow_tui.config.load import Loaded, load_config, load_config_text
from marrow_tui.orchestrator.workflow import load_workflow, workflow_stamp
from marrow_tui.scheduler import tasks
from marrow_tui.scheduler.prompt import PromptError, assemble

from tests.support.hub import WAIT
from tests.support.hubproc import clean_env
from tests.support.scheduler import make_agent
from tests.support.scheduler import loaded, make, write_config  # noqa: F401 (make is a fixture)

MIB = 1024 * 1024
CMD = "sh -c 'cat >/dev/null'"


class FifoGuard:
    """Unblocks whoever waits to open `path` for reading, but only after `after` seconds:
    the code under test should never have waited that long."""

    def __init__(self, path: Path, after: float = WAIT) -> None:
        self.path, self.after = path, after
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FifoGuard:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(WAIT)

    def _run(self) -> None:
        if self._stop.wait(self.after):
            return
        self.fired = True
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # nobody is reading (yet)
                pass
            else:
                os.close(fd)
            self._stop.wait(0.01)


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def agent_toml(extra: str = "") -> str:
    return f'[[agents]]\nname = "a"\nagent_command = "{CMD}"\nworkspace = "ws"\n{extra}'


def write(folder: Path, text: str, name: str = "marrow.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def errors(loaded: Loaded) -> list[tuple[str, int | None, str]]:
    return [(d.key, d.line, d.message) for d in loaded.errors]


# ---- files the config names: load_config / validate ----------------------------------------


def test_a_fifo_role_file_is_an_error_and_the_load_does_not_wait(tmp_path: Path) -> None:
    role = fifo(tmp_path / "role.md")
    path = write(tmp_path, agent_toml('role_file = "role.md"\n'))
    with FifoGuard(role) as guard:
        result = load_config(path)
    assert not guard.fired, "load_config waited on the FIFO"
    assert result.config is None
    assert errors(result) == [("agents[0].role_file", 5,
                               f"role file {role} is a named pipe (FIFO), not a regular file")]


def test_a_device_as_rules_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[profile]\nrules_path = "/dev/zero"\n' + agent_toml())
    result = load_config(path)
    assert errors(result) == [("profile.rules_path", 2,
                               "rules file /dev/zero is a device, not a regular file")]


def test_a_huge_role_file_is_an_error(tmp_path: Path) -> None:
    with open(tmp_path / "role.md", "wb") as f:
        f.truncate(50 * MIB)  # sparse: 50 MiB that take no disk
    path = write(tmp_path, agent_toml('role_file = "role.md"\n'))
    [(key, line, message)] = errors(load_config(path))
    assert (key, line) == ("agents[0].role_file", 5)
    assert message == f"role file {tmp_path / 'role.md'} is 50 MiB, more than the 1 MiB allowed"


def test_a_role_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "role.md").write_bytes(b"fine\nbad \xff here\n")
    path = write(tmp_path, agent_toml('role_file = "role.md"\n'))
    assert errors(load_config(path)) == [
        ("agents[0].role_file", 5, f"role file {tmp_path / 'role.md'} is not UTF-8 text "
                                   f"(line 2)")]


def test_a_role_file_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "role.md").mkdir()
    path = write(tmp_path, agent_toml('role_file = "role.md"\n'))
    assert errors(load_config(path)) == [
        ("agents[0].role_file", 5, f"role file {tmp_path / 'role.md'} is a folder, not a file")]


def test_a_symlink_to_a_regular_role_file_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real.md").write_text("the role\n")
    (tmp_path / "role.md").symlink_to(tmp_path / "real.md")
    path = write(tmp_path, agent_toml('role_file = "role.md"\n'))
    assert load_config(path).ok


def test_a_context_dir_that_is_a_file_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "ctx").write_text("not a folder\n")
    result = load_config(write(tmp_path, agent_toml('context_dirs = ["ctx"]\n')))
    assert result.ok
    assert [(d.key, d.line, d.message) for d in result.warnings] == [
        ("agents[0].context_dirs", 5, f"context dir {tmp_path / 'ctx'} is not a folder "
                                      f"(no context scripts from it)")]


# ---- the config file itself -----------------------------------------------------------------


def test_a_fifo_config_is_refused_without_waiting(tmp_path: Path) -> None:
    path = fifo(tmp_path / "marrow.toml")
    with FifoGuard(path) as guard:
        result = load_config(path)
    assert not guard.fired, "load_config waited on the FIFO"
    assert errors(result) == [("", None, "is a named pipe (FIFO), not a regular file")]


def test_dev_zero_as_the_config_is_refused(tmp_path: Path) -> None:
    assert errors(load_config(Path("/dev/zero"))) == [
        ("", None, "is a device, not a regular file")]


def test_a_50_mib_config_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "marrow.toml"
    with open(path, "w", encoding="utf-8") as f:
        f.write('core_dir = "')
        chunk = "x" * MIB
        for _ in range(50):
            f.write(chunk)
        f.write('"\n')
    assert errors(load_config(path)) == [
        ("", None, "is 50 MiB, more than the 1 MiB allowed for a config file")]
    assert os.path.getsize(path) > 50 * MIB


def test_config_text_over_the_cap_is_refused(tmp_path: Path) -> None:
    text = 'core_dir = "' + "x" * (2 * MIB) + '"\n'
    assert errors(load_config_text(text, tmp_path / "m.toml")) == [
        ("", None, "is 2 MiB, more than the 1 MiB allowed for a config file")]


def test_a_long_string_under_the_cap_keeps_every_line(tmp_path: Path) -> None:
    """The line locator walks strings with a search, not a character at a time (a 50 MB
    string took it 20 s); the lines after a long string are still right."""
    text = ('core_dir = "' + "x" * (MIB // 2) + '"\n'
            + "[[agents]]\nname = \"a\"\nagent_command = 'true'\nworkspace = 'ws'\n"
            + 'notes = """\n' + ('a \\"quoted\\" line\n' * 1000) + '"""\n'
            + "colour = 'red'\n")
    result = load_config_text(text, tmp_path / "m.toml")
    assert errors(result) == [("agents[0].notes", 6, "unknown key 'notes'"),
                              ("agents[0].colour", 1008, "unknown key 'colour'")]


@pytest.mark.parametrize(("name", "text", "line"), [
    ("arrays", "a = 1\n\nb = " + "[" * 5000 + "]" * 5000 + "\n", 3),
    ("inline tables", "a = 1\nb = " + "{x = " * 3000 + "1" + "}" * 3000 + "\n", 2),
    ("over lines", "a = [\n" + "[\n" * 4000 + "]\n" * 4000 + "]\n", 101),
], ids=["arrays", "inline tables", "over lines"])
def test_deeply_nested_toml_is_one_error_with_its_line(tmp_path: Path, name: str, text: str,
                                                       line: int) -> None:
    path = write(tmp_path, text)
    [error] = load_config(path).errors
    assert (error.key, error.line) == ("", line), name
    assert error.message == ("invalid TOML: arrays or inline tables nested more than 100 "
                             "levels deep")
    assert str(error).startswith(f"{path}:{line}: error: invalid TOML: ")


@pytest.mark.parametrize("key", [
    "a" + ".a" * 5000,
    '"a"' + '."a"' * 5000,
    "[a" + " . 'b'" * 5000 + "]",
], ids=["bare", "quoted", "table header"])
def test_a_key_of_thousands_of_parts_is_one_error_with_its_line(tmp_path: Path,
                                                                key: str) -> None:
    """tomllib's time and memory grow with the square of a dotted key's parts (50,000 parts
    ran it out of memory): such a key is refused before parsing."""
    text = "core_dir = 'x'\n" + key + (" = 1\n" if not key.startswith("[") else "\n")
    [error] = load_config_text(text, tmp_path / "m.toml").errors
    assert (error.line, error.message) == (
        2, "invalid TOML: a dotted key with more than 100 parts")


def test_floats_are_not_dotted_keys(tmp_path: Path) -> None:
    text = ("[[agents]]\nname = 'a'\nagent_command = 'true'\nworkspace = 'ws'\n"
            "context_timeout = 1.5\nstop_grace = 2.5\n"
            "[sync]\ninterval_seconds = 60\n") + "".join(
                f"[[plugins]]\nname = 'p{n}'\ncommand = 'c'\nenv = {{ A = 1.5, B = 2.5, "
                f"C = 3.25 }}\n" for n in range(60))
    assert load_config_text(text, tmp_path / "m.toml").errors == []


def test_nesting_under_the_limit_still_loads(tmp_path: Path) -> None:
    text = agent_toml() + "\n[ipc]\n" + "enabled = false\n"
    text = "core_dir = 'x'\n" + text  # a plain config
    deep = "x = " + "[" * 100 + "]" * 100 + "\n"
    result = load_config_text(deep + text, tmp_path / "m.toml", check_commands=False)
    assert errors(result) == [("x", 1, "unknown key 'x'")]


def test_brackets_inside_strings_and_comments_are_not_nesting(tmp_path: Path) -> None:
    text = ("core_dir = \"" + "[" * 500 + "\"  # " + "{" * 500 + "\n"
            + "[ipc]\nsocket_path = '''" + "[" * 500 + "'''\n")
    assert load_config_text(text, tmp_path / "m.toml").errors == []


# ---- editing (tomlkit) ----------------------------------------------------------------------


def test_edit_refuses_a_deeply_nested_file_and_changes_nothing(tmp_path: Path) -> None:
    text = agent_toml() + "x = " + "[" * 5000 + "]" * 5000 + "\n"
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=r":5: .*nested more than 100 levels deep"):
        edit_agent(path, "a", "enabled", False)
    assert path.read_text() == text


def test_edit_refuses_a_file_over_the_cap(tmp_path: Path) -> None:
    text = agent_toml() + "# " + "x" * (2 * MIB) + "\n"
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="more than the 1 MiB allowed"):
        edit_agent(path, "a", "enabled", False)
    assert path.read_text() == text


def test_edit_refuses_a_fifo_without_waiting(tmp_path: Path) -> None:
    path = fifo(tmp_path / "marrow.toml")
    with FifoGuard(path) as guard, pytest.raises(ValueError, match="named pipe"):
        edit_agent(path, "a", "enabled", False)
    assert not guard.fired


# ---- the prompt: read off the loop, refused in one sentence ---------------------------------


async def test_a_fifo_role_file_fails_the_assembly_and_the_loop_runs_on(tmp_path: Path) -> None:
    role = fifo(tmp_path / "role.md")
    agent = make_agent(tmp_path, role_file=role)
    ticks = 0

    async def other() -> None:  # another coroutine, which must get its turns meanwhile
        nonlocal ticks
        for _ in range(3):
            ticks += 1
            await asyncio.sleep(0)

    with FifoGuard(role) as guard:
        async with asyncio.timeout(WAIT * 2):
            results = await asyncio.gather(assemble(agent, None), other(),
                                           return_exceptions=True)
    assert not guard.fired, "the assembly waited on the FIFO"
    assert ticks == 3
    error = results[0]
    assert isinstance(error, PromptError)
    assert str(error) == f"the role file {role} is a named pipe (FIFO), not a regular file"


async def test_dev_zero_as_rules_fails_the_assembly(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    async with asyncio.timeout(WAIT):
        with pytest.raises(PromptError) as caught:
            await assemble(agent, Path("/dev/zero"))
    assert str(caught.value) == "the rules file /dev/zero is a device, not a regular file"


async def test_a_role_file_that_grew_past_the_cap_fails_the_assembly(tmp_path: Path) -> None:
    role = tmp_path / "role.md"
    role.write_bytes(b"x" * (MIB + 1))
    with pytest.raises(PromptError, match=r"role.md is more than the 1 MiB allowed$"):
        await assemble(make_agent(tmp_path, role_file=role), None)


async def test_a_role_file_that_is_not_utf8_fails_the_assembly(tmp_path: Path) -> None:
    role = tmp_path / "role.md"
    role.write_bytes(b"ok\n\xfe\n")
    with pytest.raises(PromptError) as caught:
        await assemble(make_agent(tmp_path, role_file=role), None)
    assert str(caught.value) == f"the role file {role} is not UTF-8 text (line 2)"


async def test_the_run_fails_with_the_sentence_and_the_hub_runs_on(tmp_path: Path,
                                                                   make: Any) -> None:
    config = loaded(write_config(tmp_path, {"a": "cat > prompt.txt\n",
                                            "b": "cat > prompt.txt\n"}))
    role = fifo(tmp_path / "role.md")  # given to a after the config was checked
    a, b = config.agents
    config = replace(config, agents=(replace(a, role_file=role), b))
    with FifoGuard(role) as guard:
        run = await make(config)
        ends = {end["agent"]: end for end in await run.ended(2)}
    assert not guard.fired, "the hub waited on the FIFO"
    assert ends["a"]["state"] == "error"
    assert ends["a"]["reason"] == (f"could not run: the role file {role} is a named pipe "
                                   f"(FIFO), not a regular file")
    assert ends["b"]["state"] == "ok"  # the other agent ran meanwhile
    assert (tmp_path / "ws" / "b" / "prompt.txt").read_text().startswith("Operate from")


# ---- task files -----------------------------------------------------------------------------


def test_a_task_path_that_became_a_fifo_or_a_symlink_is_skipped(tmp_path: Path) -> None:
    """The queue is listed first and read after: what is there by then may be a FIFO."""
    queue = tmp_path / "tasks" / "queue"
    queue.mkdir(parents=True)
    pipe = fifo(queue / "20260101-000000-000-a.md")
    (tmp_path / "secret.md").write_text("# not a task\n")
    (queue / "20260101-000000-000-b.md").symlink_to(tmp_path / "secret.md")
    with FifoGuard(pipe) as guard:
        assert tasks._read_task(pipe, "queue") is None
        assert tasks._read_task(queue / "20260101-000000-000-b.md", "queue") is None
    assert not guard.fired, "reading the task waited on the FIFO"


# ---- WORKFLOW.md ----------------------------------------------------------------------------


def test_a_fifo_workflow_is_refused_without_waiting(tmp_path: Path) -> None:
    path = fifo(tmp_path / "WORKFLOW.md")
    with FifoGuard(path) as guard:
        result = load_workflow(path)
        stamp = workflow_stamp(path)
    assert not guard.fired, "the workflow loader waited on the FIFO"
    assert result.workflow is None
    assert [d.message for d in result.errors] == [
        "cannot read the workflow file: it is a named pipe (FIFO), not a regular file"]
    assert stamp is None


# ---- the command line -----------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "marrow_tui", *args], check=False, cwd=cwd,
                          env=clean_env(), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.mark.parametrize(("argv", "closing"), [
    (["--config", "deep.toml", "validate"], "the config is not valid"),
    (["--config", "deep.toml", "--no-ui", "--port", "0"], "nothing was started"),
])
def test_a_deeply_nested_config_is_its_line_and_exit_2(tmp_path: Path, argv: list[str],
                                                       closing: str) -> None:
    write(tmp_path, agent_toml() + "x = " + "[" * 50_000 + "]" * 50_000 + "\n", "deep.toml")
    done = cli(*argv, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "deep.toml:5: error: invalid TOML: arrays or inline tables nested more than 100 "
        "levels deep",
        f"marrow-tui: deep.toml: 1 error; {closing}"]
    assert done.stdout == ""
    assert not (tmp_path / ".marrow").exists()


def test_validate_names_each_bad_file_key_and_reason(tmp_path: Path) -> None:
    role = fifo(tmp_path / "role.md")
    (tmp_path / "ws").mkdir()
    write(tmp_path, '[profile]\nrules_path = "/dev/zero"\n' + agent_toml(
        'role_file = "role.md"\n'))
    with FifoGuard(role) as guard:
        done = cli("--config", "marrow.toml", "validate", cwd=tmp_path)
    assert not guard.fired
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "marrow.toml:2: profile.rules_path: error: rules file /dev/zero is a device, not a "
        "regular file",
        f"marrow.toml:7: agents[0].role_file: error: role file {role} is a named pipe (FIFO), "
        f"not a regular file",
        "marrow-tui: marrow.toml: 2 errors; the config is not valid"]


def test_validate_refuses_a_huge_config_by_its_size(tmp_path: Path) -> None:
    with open(tmp_path / "marrow.toml", "wb") as f:
        f.truncate(50 * MIB)
    done = cli("--config", "marrow.toml", "validate", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "marrow-tui: cannot use the config marrow.toml: is 50 MiB, more than the 1 MiB "
        "allowed for a config file"]
