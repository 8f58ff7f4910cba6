"""WORKFLOW.md: defaults, aliases, diagnostics with lines, strict Liquid prompts, the example."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from marrow_tui.orchestrator.tracker import create_issue, scan
from marrow_tui.orchestrator.workflow import (
    DEFAULT_PROMPT,
    FRONT_MATTER_NOT_A_MAP,
    MISSING_WORKFLOW_FILE,
    TEMPLATE_PARSE_ERROR,
    TEMPLATE_RENDER_ERROR,
    WORKFLOW_PARSE_ERROR,
    LoadedWorkflow,
    PromptError,
    Workflow,
    find_workflow,
    load_workflow,
    render_prompt,
    validate_dispatch,
    workflow_stamp,
)
from marrow_tui.orchestrator.workspaces import ensure_workspace, hook_env, write_mark_done

from tests.support.examples import pristine_example


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The tracker example as the repository holds it (it may have been run in place)."""
    return pristine_example("tracker", tmp_path / "examples")


def load(tmp_path: Path, front: str, body: str = "Do {{ issue.identifier }}") -> LoadedWorkflow:
    path = tmp_path / "WORKFLOW.md"
    path.write_text(f"---\n{front}\n---\n{body}\n", encoding="utf-8")
    return load_workflow(path)


def good(tmp_path: Path, front: str = "", body: str = "Do {{ issue.identifier }}") -> Workflow:
    loaded = load(tmp_path, "tracker:\n  kind: local\n" + front, body)
    assert loaded.errors == [], loaded.diagnostics
    assert loaded.workflow is not None
    return loaded.workflow


def messages(loaded: LoadedWorkflow) -> list[tuple[str, int | None, str, str]]:
    return [(d.key, d.line, d.severity, d.message) for d in loaded.diagnostics]


# ---------------------------------------------------------------------------- defaults


def test_every_default(tmp_path: Path) -> None:
    loaded = load(tmp_path, "tracker:\n  kind: local")
    assert loaded.ok and loaded.diagnostics == [] and loaded.code is None
    wf = loaded.workflow
    assert wf is not None
    assert wf.path == tmp_path / "WORKFLOW.md"
    assert wf.prompt_template == "Do {{ issue.identifier }}" and wf.prompt_line == 5
    t = wf.tracker
    assert t.kind == "local" and t.root == tmp_path / "issues"
    assert t.active_states == ("Todo", "In Progress")
    assert t.terminal_states == ("Closed", "Cancelled", "Canceled", "Duplicate", "Done")
    assert t.required_labels == () and t.provider == {}
    assert (t.endpoint, t.api_key, t.project_slug) == (None, None, None)
    assert wf.polling_interval_ms == 30_000
    assert wf.workspace_root == Path(tempfile.gettempdir()) / "symphony_workspaces"
    h = wf.hooks
    assert (h.after_create, h.before_run, h.after_run, h.before_remove) == (None,) * 4
    assert h.timeout_ms == 60_000
    a = wf.agent
    assert (a.command, a.command_key, a.shell, a.prompt) == (None, None, "bash", "stdin")
    assert a.max_concurrent_agents == 10 and a.max_concurrent_agents_by_state == {}
    assert a.max_turns == 20 and a.max_retry_backoff_ms == 300_000
    assert a.max_idle_continuations == 5
    assert a.stall_timeout_ms == 300_000
    assert a.turn_timeout_ms == 3_600_000 and a.prompt_timeout_ms == 3_600_000
    assert a.read_timeout_ms == 30_000
    assert (wf.server.host, wf.server.port) == ("127.0.0.1", None)
    assert (wf.mcp.enabled, wf.mcp.host, wf.mcp.host_url) == (True, "127.0.0.1", None)
    assert wf.done_state == "Done"
    assert wf.config == {"tracker": {"kind": "local"}}


def test_every_key_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_BASE", str(tmp_path / "base"))
    wf = good(tmp_path, """  root: ./tracker
  active_states: [Ready, " Doing "]
  terminal_states: [Shipped, Dropped]
  required_labels: [" Agent ", agent, ok]
  provider: {anything: [1, 2]}
polling:
  interval_ms: 5000
workspace:
  root: ${WS_BASE}/ws
hooks:
  after_create: echo created
  before_run: echo before
  after_run: echo after
  before_remove: echo remove
  timeout_ms: 1000
agent:
  command: ./run-agent --fast
  shell: sh
  prompt: file
  max_concurrent_agents: 3
  max_concurrent_agents_by_state: {" READY ": 1, doing: 2}
  max_turns: 4
  max_retry_backoff_ms: 120000
  max_idle_continuations: 0
  stall_timeout_ms: 0
  turn_timeout_ms: -1
  prompt_timeout_ms: 600000
  read_timeout_ms: 5000
server:
  host: 0.0.0.0
  port: 0
mcp:
  enabled: false
  host: 10.0.0.1
  host_url: http://h:1/x//""")
    t = wf.tracker
    assert t.root == tmp_path / "tracker"
    assert t.active_states == ("Ready", "Doing") and t.terminal_states == ("Shipped", "Dropped")
    assert t.required_labels == ("agent", "ok") and t.provider == {"anything": [1, 2]}
    assert wf.polling_interval_ms == 5000
    assert wf.workspace_root == tmp_path / "base" / "ws"
    assert wf.hooks.script("before_remove") == "echo remove" and wf.hooks.timeout_ms == 1000
    a = wf.agent
    assert (a.command, a.command_key, a.shell, a.prompt) == (
        "./run-agent --fast", "agent.command", "sh", "file")
    assert a.max_concurrent_agents == 3
    assert a.max_concurrent_agents_by_state == {"ready": 1, "doing": 2}
    assert (a.max_turns, a.max_retry_backoff_ms, a.max_idle_continuations) == (4, 120000, 0)
    assert (a.stall_timeout_ms, a.turn_timeout_ms, a.prompt_timeout_ms) == (0, 0, 600000)
    assert a.read_timeout_ms == 5000
    assert (wf.server.host, wf.server.port) == ("0.0.0.0", 0)
    assert (wf.mcp.enabled, wf.mcp.host, wf.mcp.host_url) == (False, "10.0.0.1", "http://h:1/x")
    assert wf.done_state == "Shipped"
    assert wf.is_active(" doing ") and not wf.is_active("Shipped") and wf.is_terminal("DROPPED")
    assert wf.state_limit("Ready") == 1 and wf.state_limit("Other") == 3


def test_done_state_prefers_done(tmp_path: Path) -> None:
    wf = good(tmp_path, "  terminal_states: [Closed, DONE]")
    assert wf.done_state == "DONE"
    wf = good(tmp_path, "  terminal_states: []")
    assert wf.done_state == "Done"


def test_state_in_both_lists_is_terminal(tmp_path: Path) -> None:
    loaded = load(tmp_path, "tracker:\n  kind: local\n  active_states: [Todo, Done]")
    assert loaded.ok and "also terminal" in loaded.warnings[0].message
    assert loaded.workflow is not None and not loaded.workflow.is_active("Done")


def test_home_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    wf = good(tmp_path, "  root: ~/issues\nworkspace:\n  root: ../ws")
    assert wf.tracker.root == tmp_path / "home" / "issues"
    assert wf.workspace_root == tmp_path.parent / "ws"
    monkeypatch.setenv("ROOT_DIR", "/abs/place")
    assert good(tmp_path, "  root: $ROOT_DIR").tracker.root == Path("/abs/place")


def test_unset_variable_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_VAR_X", raising=False)
    loaded = load(tmp_path, "tracker:\n  kind: local\nworkspace:\n  root: $NO_SUCH_VAR_X/ws")
    assert messages(loaded) == [
        ("workspace.root", 5, "error", "environment variable $NO_SUCH_VAR_X is not set")]
    assert loaded.workflow is None and loaded.code == WORKFLOW_PARSE_ERROR


def test_commands_and_hooks_are_not_expanded(tmp_path: Path) -> None:
    wf = good(tmp_path, "agent:\n  command: echo $HOME ~\nhooks:\n  after_run: echo $HOME")
    assert wf.agent.command == "echo $HOME ~" and wf.hooks.after_run == "echo $HOME"


# ---------------------------------------------------------------------------- aliases


@pytest.mark.parametrize("front, command, key", [
    ("acp:\n  command: claude-agent-acp", "claude-agent-acp", "acp.command"),
    ("codex:\n  command: codex app-server", "codex app-server", "codex.command"),
    ("acp:\n  command: a\ncodex:\n  command: a", "a", "acp.command"),
])
def test_command_aliases(tmp_path: Path, front: str, command: str, key: str) -> None:
    loaded = load(tmp_path, "tracker:\n  kind: local\n" + front)
    assert loaded.ok and loaded.diagnostics == []
    assert loaded.workflow is not None
    assert (loaded.workflow.agent.command, loaded.workflow.agent.command_key) == (command, key)


def test_alias_conflicts_warn_and_agent_wins(tmp_path: Path) -> None:
    loaded = load(tmp_path, """tracker:
  kind: local
agent:
  command: ours
  stall_timeout_ms: 1000
acp:
  command: smols
  shell: zsh
  stall_timeout_ms: 2000
  prompt_timeout_ms: 7
codex:
  command: specs
  stall_timeout_ms: 1000
  turn_timeout_ms: 9
  read_timeout_ms: 11""")
    assert loaded.ok
    wf = loaded.workflow
    assert wf is not None
    assert wf.agent.command == "ours" and wf.agent.shell == "zsh"
    assert wf.agent.stall_timeout_ms == 1000
    assert (wf.agent.prompt_timeout_ms, wf.agent.turn_timeout_ms) == (7, 9)
    assert wf.agent.read_timeout_ms == 11
    assert messages(loaded) == [
        ("acp.command", 8, "warning", "conflicts with agent.command (using agent.command)"),
        ("acp.stall_timeout_ms", 10, "warning",
         "conflicts with agent.stall_timeout_ms (using agent.stall_timeout_ms)"),
        ("codex.command", 13, "warning", "conflicts with agent.command (using agent.command)"),
    ]


def test_an_acp_adapter_is_a_preset_of_an_acp_run(tmp_path: Path) -> None:
    loaded = load(tmp_path, "tracker:\n  kind: local\nacp:\n  adapter: claude")
    assert loaded.ok and not loaded.warnings
    assert loaded.workflow is not None
    agent = loaded.workflow.agent
    assert (agent.protocol, agent.adapter, agent.command) == ("acp", "claude", "claude-code-acp")
    assert [d.key for d in validate_dispatch(loaded.workflow)] == ["tracker.root"]


def test_which_protocol_a_run_speaks(tmp_path: Path) -> None:
    def agent(front: str) -> tuple[str, str | None]:
        loaded = load(tmp_path, "tracker:\n  kind: local\n" + front)
        assert loaded.workflow is not None, loaded.errors
        return loaded.workflow.agent.protocol, loaded.workflow.agent.command

    assert agent("agent:\n  command: ./run.sh") == ("command", "./run.sh")
    assert agent("acp:\n  command: my-agent --acp") == ("acp", "my-agent --acp")
    assert agent("agent:\n  protocol: acp\n  command: opencode acp") == ("acp", "opencode acp")
    assert agent("acp:\n  adapter: gemini\n  command: gemini --acp -m x") == \
        ("acp", "gemini --acp -m x")
    assert agent("agent:\n  protocol: command\nacp:\n  command: ./plain.sh") == \
        ("command", "./plain.sh")


def test_acp_settings_that_are_wrong_say_where(tmp_path: Path) -> None:
    loaded = load(tmp_path, "tracker:\n  kind: local\nagent:\n  protocol: grpc\nacp:\n  adapter: cursor\n"
                            "  env:\n    1BAD: x\n    GOOD: 2\n"
                            "  permissions:\n    mode: maybe\n    allow: [read, typing]\n")
    found = [(d.key, d.line, d.message) for d in (*loaded.errors, *loaded.warnings)]
    assert ("agent.protocol", 5, "must be one of command, acp, got 'grpc'") in found
    assert ("acp.adapter", 7, "unknown agent preset 'cursor' (known: opencode, codex, claude, "
            "gemini; or set acp.command)") in found
    assert ("acp.env.1BAD", 9, "not a variable name (ignored)") in found
    assert ("acp.permissions.mode", 12, "must be one of ask, allow, deny, got 'maybe'") in found
    assert any(key == "acp.permissions.allow" and "'typing'" in message
               for key, _, message in found)
    assert loaded.workflow is None


def test_a_permission_policy_by_tool_kind(tmp_path: Path) -> None:
    loaded = load(tmp_path, "tracker:\n  kind: local\nacp:\n  adapter: opencode\n  env:\n    OPENCODE_CONFIG: /x.json\n"
                            "  permissions:\n    mode: ask\n    allow: [read, search]\n"
                            "    deny: [delete]\n    timeout_ms: 60000\n    default: allow\n")
    assert loaded.ok, loaded.errors
    assert loaded.workflow is not None
    agent = loaded.workflow.agent
    assert agent.env == {"OPENCODE_CONFIG": "/x.json"}
    policy = agent.permissions
    assert [policy.verdict(k) for k in ("read", "search", "delete", "execute")] == \
        ["allow", "allow", "deny", "ask"]
    assert (policy.timeout, policy.default) == (60.0, "allow")
    assert load(tmp_path, "tracker:\n  kind: local\nacp:\n  adapter: codex\n  permissions: allow").workflow \
        .agent.permissions.verdict("execute") == "allow"  # type: ignore[union-attr]


def test_a_conflict_policy_and_the_paths_a_runs_lease_holds(tmp_path: Path) -> None:
    loaded = load(tmp_path, "tracker:\n  kind: local\nacp:\n  adapter: opencode\n"
                            "  lease_paths: [src/auth, docs]\n  permissions:\n    conflict: wait\n"
                            "    conflict_timeout_ms: 90000\n")
    assert loaded.ok, loaded.errors
    assert loaded.workflow is not None
    agent = loaded.workflow.agent
    assert agent.lease_paths == ("src/auth", "docs")
    assert (agent.permissions.conflict, agent.permissions.conflict_deadline) == ("wait", 90.0)
    wrong = load(tmp_path, "tracker:\n  kind: local\nacp:\n  adapter: opencode\n"
                           "  lease_paths: src\n  permissions:\n    conflict: later\n")
    found = [(d.key, d.message) for d in wrong.errors]
    assert ("acp.lease_paths", "expected a list of paths, got a string") in found
    assert ("acp.permissions.conflict", "must be one of ask, wait, got 'later'") in found


# ---------------------------------------------------------------------------- diagnostics


def test_bad_values_have_lines(tmp_path: Path) -> None:
    loaded = load(tmp_path, """tracker:
  kind: local
  active_states: Todo
polling:
  interval_ms: 0
hooks:
  timeout_ms: -5
  after_run: [not, a, script]
agent:
  command: ""
  max_turns: abc
  max_concurrent_agents: -1
  max_retry_backoff_ms: 1.5
  read_timeout_ms: 0
  prompt: pipe
  max_concurrent_agents_by_state:
    Todo: 0
    "  ": 2
    Review: two
    review: 1
    REVIEW: 3
server:
  port: 70000
mcp:
  enabled: "yes\"""")
    assert loaded.workflow is None and loaded.code == WORKFLOW_PARSE_ERROR
    assert messages(loaded) == [
        ("tracker.active_states", 4, "error", "expected a list of state names, got a string"),
        ("polling.interval_ms", 6, "error", "must be greater than 0, got 0"),
        ("hooks.timeout_ms", 8, "error", "must be greater than 0, got -5"),
        ("hooks.after_run", 9, "error", "expected a string, got a list"),
        ("agent.command", 11, "error", "must not be empty"),
        ("agent.max_turns", 12, "error", "expected an integer, got a string 'abc'"),
        ("agent.max_concurrent_agents", 13, "error", "must be at least 0, got -1"),
        ("agent.max_retry_backoff_ms", 14, "error", "expected an integer, got a number 1.5"),
        ("agent.read_timeout_ms", 15, "error", "must be greater than 0, got 0"),
        ("agent.prompt", 16, "error", "must be one of stdin, argv, file, got 'pipe'"),
        ("agent.max_concurrent_agents_by_state.Todo", 18, "warning",
         "limit must be a positive integer, got 0 (entry ignored)"),
        ("agent.max_concurrent_agents_by_state.  ", 19, "warning",
         "not a state name: '  ' (entry ignored)"),
        ("agent.max_concurrent_agents_by_state.Review", 20, "warning",
         "limit must be a positive integer, got 'two' (entry ignored)"),
        ("agent.max_concurrent_agents_by_state.REVIEW", 22, "warning",
         "'review' is listed twice (the last wins)"),
        ("server.port", 24, "error", "must be a port number (0-65535), got 70000"),
        ("mcp.enabled", 26, "error", "expected true or false, got a string"),
    ]
    assert str(loaded.diagnostics[0]) == (
        f"{tmp_path / 'WORKFLOW.md'}:4: tracker.active_states: error: "
        "expected a list of state names, got a string")


def test_integers_like_smol(tmp_path: Path) -> None:
    wf = good(tmp_path, "polling:\n  interval_ms: '5000'\nagent:\n  max_turns: 3.0")
    assert wf.polling_interval_ms == 5000 and wf.agent.max_turns == 3
    loaded = load(tmp_path, "tracker:\n  kind: local\nagent:\n  max_turns: true")
    assert "expected an integer, got a boolean" in loaded.errors[0].message


def test_unknown_and_unused_keys_warn(tmp_path: Path) -> None:
    loaded = load(tmp_path, """tracker:
  kind: local
  actve_states: [Todo]
agnet:
  command: x
agent:
  max_turn: 3
smolvm:
  cpus: 2
codex:
  approval_policy: never
my_extension:
  anything: true""")
    assert loaded.ok
    assert messages(loaded) == [
        ("tracker.actve_states", 4, "warning",
         "unknown key (ignored) (did you mean 'active_states'?)"),
        ("agnet", 5, "warning", "unknown key (ignored) (did you mean 'agent'?)"),
        ("agent.max_turn", 8, "warning", "unknown key (ignored) (did you mean 'max_turns'?)"),
        ("smolvm", 9, "warning",
         ("not used: agents run directly on this host, not in a smolvm microVM "
          "(no VM isolation)")),
        ("codex.approval_policy", 12, "warning",
         "not used: Codex app-server policy; marrow-tui does not speak that protocol"),
        ("my_extension", 13, "warning", "unknown key (ignored)"),
    ]
    assert loaded.workflow is not None
    assert loaded.workflow.config["my_extension"] == {"anything": True}


@pytest.mark.parametrize("front, line, words", [
    ("tracker: {kind: [local]}", 2, "unsupported tracker kind"),
    ("tracker:\n  kind: linear", 3, "unsupported tracker kind 'linear'"),
    ("polling: {interval_ms: 5}", None, "tracker.kind is required"),
    ("tracker: 5", 2, "expected a map, got an integer"),
])
def test_tracker_kind(tmp_path: Path, front: str, line: int | None, words: str) -> None:
    loaded = load(tmp_path, front)
    assert loaded.workflow is None
    assert words in loaded.errors[0].message and loaded.errors[0].line == line


def test_file_level_errors(tmp_path: Path) -> None:
    missing = load_workflow(tmp_path / "nope.md")
    assert missing.code == MISSING_WORKFLOW_FILE and missing.workflow is None
    assert "cannot read" in missing.errors[0].message

    bad = load(tmp_path, "tracker:\n  kind: local\n  root: [unclosed")
    assert bad.code == WORKFLOW_PARSE_ERROR and bad.errors[0].line == 4
    assert "invalid YAML front matter" in bad.errors[0].message

    listed = load(tmp_path, "- a\n- b")
    assert listed.code == FRONT_MATTER_NOT_A_MAP and listed.errors[0].line == 2

    path = tmp_path / "WORKFLOW.md"
    path.write_text("---\ntracker:\n  kind: local\n")
    assert load_workflow(path).code == WORKFLOW_PARSE_ERROR
    assert "unterminated" in load_workflow(path).errors[0].message

    path.write_bytes(b"---\n\xff\xfe\n---\n")
    assert "not UTF-8" in load_workflow(path).errors[0].message

    path.write_text("---\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 10) + "]\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True)) + "---\n")
    assert "aliases expand" in load_workflow(path).errors[0].message

    path.write_text("---\nx: !!python/object/apply:os.system ['true']\n---\n")
    assert load_workflow(path).code == WORKFLOW_PARSE_ERROR


def test_no_front_matter_is_all_prompt(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text("\n\nJust a prompt for {{ issue.title }}\n")
    loaded = load_workflow(path)
    # config {} is valid YAML-wise, but this build needs tracker.kind
    assert loaded.workflow is None and "tracker.kind is required" in loaded.errors[0].message


def test_empty_front_matter(tmp_path: Path) -> None:
    loaded = load(tmp_path, "")
    assert "tracker.kind is required" in loaded.errors[0].message


# ---------------------------------------------------------------------------- validate, find


def test_validate_dispatch(tmp_path: Path) -> None:
    wf = good(tmp_path, "agent:\n  command: run")
    assert [d.key for d in validate_dispatch(wf)] == ["tracker.root"]
    (tmp_path / "issues").mkdir()
    assert validate_dispatch(wf) == []


def test_find_workflow_and_stamp(tmp_path: Path) -> None:
    assert find_workflow(None, tmp_path) == tmp_path / "WORKFLOW.md"
    assert find_workflow(tmp_path / "x" / ".." / "W.md") == tmp_path / "W.md"
    assert workflow_stamp(tmp_path / "none") is None
    path = tmp_path / "W.md"
    path.write_text("a")
    first = workflow_stamp(path)
    path.write_text("b")
    assert workflow_stamp(path) != first


# ---------------------------------------------------------------------------- prompts


def issue_in(tmp_path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    return create_issue(tmp_path / "issues", "Todo", **kwargs)  # type: ignore[arg-type]


def test_render_exact_text(tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    wf = good(tmp_path, body=(
        "{{ issue.identifier }}: {{ issue.title }}\n"
        "attempt={{ attempt }} labels={{ issue.labels | join: ',' }} p={{ issue.priority }}\n"
        "{% for b in issue.blocked_by %}[{{ b.identifier }}:{{ b.state }}]{% endfor %}"
        "{% if issue.description %}\n{{ issue.description }}{% endif %}"
        "{% if retry_kind %} ({{ retry_kind }}){% endif %}"))
    issue = issue_in(tmp_path, title="Fix it", body="Body text", priority=2,
                     labels=["B", "a"], blocked_by=["X-1"])
    assert render_prompt(wf, issue, None, {"retry_kind": None}) == (
        "ISSUE-1: Fix it\nattempt= labels=b,a p=2\n[X-1:]\nBody text")
    assert render_prompt(wf, issue, 3, {"retry_kind": "failure"}) == (
        "ISSUE-1: Fix it\nattempt=3 labels=b,a p=2\n[X-1:]\nBody text (failure)")


def test_unknown_variable_fails_with_its_file_line(tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    wf = good(tmp_path, body="\n\nline one\n{{ issue.nope }}")
    assert wf.prompt_line == 8
    issue = issue_in(tmp_path, title="t")
    with pytest.raises(PromptError) as caught:
        render_prompt(wf, issue)
    assert caught.value.code == TEMPLATE_RENDER_ERROR
    assert "issue.nope is undefined" in caught.value.message
    assert "WORKFLOW.md line 9, column 4" in caught.value.message
    for body in ("{{ nope }}", "{% if issue.nope %}x{% endif %}", "{{ issue.title.nope }}",
                 "{{ issue.blocked_by.first.identifier }}", "{{ issue.__class__ }}"):
        with pytest.raises(PromptError):
            render_prompt(good(tmp_path, body=body), issue)


def test_unknown_filter_fails(tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    wf = good(tmp_path, body="{{ issue.title | shout }}")
    with pytest.raises(PromptError) as caught:
        render_prompt(wf, issue_in(tmp_path, title="t"))
    assert "unknown filter 'shout'" in caught.value.message


def test_template_syntax_error_warns_at_load_and_fails_the_attempt(tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    loaded = load(tmp_path, "tracker:\n  kind: local", "ok\n{% if %}")
    assert loaded.ok
    [warning] = loaded.warnings
    assert warning.key == "prompt" and warning.line == 6
    assert warning.message.startswith(TEMPLATE_PARSE_ERROR)
    assert loaded.workflow is not None
    with pytest.raises(PromptError) as caught:
        render_prompt(loaded.workflow, issue_in(tmp_path, title="t"))
    assert caught.value.code == TEMPLATE_PARSE_ERROR


def test_default_prompt_when_body_is_empty(tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    wf = good(tmp_path, body="   \n")
    assert wf.prompt_template == ""
    with_body = issue_in(tmp_path, title="T1", body="Details")
    without = issue_in(tmp_path, title="T2")
    assert render_prompt(wf, with_body) == (
        "You are working on an issue from the configured tracker.\n\n"
        "Identifier: ISSUE-1\nTitle: T1\n\nBody: Details")
    assert render_prompt(wf, without).endswith("Body: No description provided.")
    assert DEFAULT_PROMPT.startswith("You are working on an issue from the configured tracker.")


def test_extra_may_not_redefine_issue_or_attempt(tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    wf = good(tmp_path)
    with pytest.raises(ValueError):
        render_prompt(wf, issue_in(tmp_path, title="t"), None, {"attempt": 1})


def test_a_runaway_loop_is_a_prompt_error(tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    wf = good(tmp_path, body="{% for i in (1..100000000) %}x{% endfor %}")
    with pytest.raises(PromptError):
        render_prompt(wf, issue_in(tmp_path, title="t"))


def test_render_accepts_a_plain_mapping(tmp_path: Path) -> None:
    wf = good(tmp_path, body="{{ issue.identifier }}")
    assert render_prompt(wf, {"identifier": "X-1"}) == "X-1"


# ---------------------------------------------------------------------------- the example


def test_example_workflow_parses_clean(example: Path) -> None:
    loaded = load_workflow(example / "WORKFLOW.md")
    assert loaded.ok and loaded.diagnostics == [], loaded.diagnostics
    wf = loaded.workflow
    assert wf is not None
    assert validate_dispatch(wf) == []
    assert wf.tracker.root == example / "issues"
    assert wf.workspace_root == example / ".symphony" / "workspaces"
    assert "agent.py" in (wf.agent.command or "")
    assert all(wf.hooks.script(n) for n in ("after_create", "before_run", "after_run"))
    result = scan(wf.tracker.root)
    assert result.problems == []
    index = result.by_id()
    assert set(index) >= {"DEMO-1", "DEMO-2"}
    from marrow_tui.orchestrator.tracker import is_blocked
    assert not is_blocked(index["DEMO-1"], index, wf.tracker.terminal_states)
    assert is_blocked(index["DEMO-2"], index, wf.tracker.terminal_states)
    prompt = render_prompt(wf, index["DEMO-1"])
    assert prompt.startswith("You are working on DEMO-1: Add a greeting file\n")
    assert "Labels: demo, docs" in prompt and "attempt" not in prompt
    assert "This is attempt 2." in render_prompt(wf, index["DEMO-2"], 2)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_example_tests_read_the_example_as_the_repository_holds_it(tmp_path: Path) -> None:
    """Someone ran the example in place: DEMO-1 moved to Done, state and workspaces beside
    it, an edit to the agent not yet committed. The tests read it with the issue back in
    Todo, nothing the run left, and the edit."""
    checkout = tmp_path / "checkout"
    shutil.copytree(pristine_example("tracker", tmp_path / "first"), checkout / "examples" /
                    "tracker")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", str(checkout)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=checkout, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "example"], cwd=checkout, check=True)
    ran = checkout / "examples" / "tracker"
    (ran / "issues" / "Todo" / "DEMO-1.md").rename(ran / "issues" / "Done" / "DEMO-1.md")
    (ran / ".marrow").mkdir()
    (ran / ".marrow" / "events.db").write_bytes(b"state")
    (ran / "agent.py").write_text((ran / "agent.py").read_text() + "# an edit\n")
    copy = pristine_example("tracker", tmp_path / "read", repo=checkout)
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()) == [
        ".gitignore", "README.md", "WORKFLOW.md", "agent.py", "issues/Done/.keep",
        "issues/Todo/DEMO-1.md", "issues/Todo/DEMO-2.md"]
    assert (copy / "agent.py").read_text().endswith("# an edit\n")
    assert (copy / "issues" / "Todo" / "DEMO-1.md").read_bytes() == \
        (ran / "issues" / "Done" / "DEMO-1.md").read_bytes()


def run_hook(script: str | None, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    assert script
    return subprocess.run(["sh", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_example_hooks_make_a_patch_bundle(tmp_path: Path, example: Path) -> None:
    wf = load_workflow(example / "WORKFLOW.md").workflow
    assert wf is not None
    # the workspace root sits inside another git repository, as it does in the example
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    issue = scan(wf.tracker.root).by_id()["DEMO-1"]
    ws = ensure_workspace(tmp_path / "workspaces", issue.identifier)
    assert ws.created_now
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1",
               SYMPHONY_PATCHES_DIR=str(tmp_path / "patches"))
    env.pop("SYMPHONY_SOURCE_REPO", None)
    env.update(hook_env(issue=issue, attempt=None, workflow_path=wf.path, workspace=ws.path,
                        tracker_root=wf.tracker.root, done_state=wf.done_state))
    for name in ("after_create", "before_run", "before_run"):  # before_run is idempotent
        done = run_hook(wf.hooks.script(name), ws.path, env)
        assert done.returncode == 0, done.stderr
    assert (ws.path / ".git").is_dir()
    # no mark_done yet: after_run does nothing
    assert run_hook(wf.hooks.after_run, ws.path, env).returncode == 0
    assert not (tmp_path / "patches").exists()
    # the "agent" works, leaves it uncommitted, and marks the issue done
    (ws.path / "hello.txt").write_text("Hello from DEMO-1\n")
    write_mark_done(ws.path, "Add a greeting file", "Created hello.txt.")
    done = run_hook(wf.hooks.after_run, ws.path, env)
    assert done.returncode == 0, done.stderr
    patch = tmp_path / "patches" / "agent_DEMO-1.patch"
    text = patch.read_text()
    assert "Subject: [PATCH] Add a greeting file" in text and "+Hello from DEMO-1" in text
    assert "mark_done" not in text  # the staging file lives inside .git
