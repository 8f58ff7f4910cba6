"""The scripted stub model (tests/support/stub_model.py) over real HTTP, as an OpenAI client
sees it: the opencode tests lean on it, and it runs here with or without opencode."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.stub_model import (
    SCRIPT_OVER,
    SIDE_ANSWER,
    Call,
    Say,
    Step,
    StubModel,
    Usage,
)

TOOLS = [{"type": "function", "function": {"name": name, "parameters": {}}}
         for name in ("bash", "marrow_post_progress", "marrow_state")]
USER = {"role": "user", "content": "go"}


def post(model: StubModel, body: dict[str, Any]) -> bytes:
    request = urllib.request.Request(f"{model.url}/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return bytes(answer.read())


def streamed(model: StubModel, messages: list[dict[str, Any]],
             tools: list[dict[str, Any]] | None = None) -> list[Any]:
    """The `data:` payloads of a streamed answer, `[DONE]` as a string."""
    body = {"model": "stub", "stream": True, "messages": messages,
            **({"tools": tools} if tools else {})}
    lines = post(model, body).decode().split("\n\n")
    assert lines[-1] == ""
    return [json.loads(data) if data != "[DONE]" else data
            for data in (line.removeprefix("data: ") for line in lines[:-1])]


def assistant(chunks: list[Any]) -> dict[str, Any]:
    """The message the chunks add up to, with the finish reason and the usage."""
    text, name, arguments, finish, usage = "", "", "", None, None
    for chunk in chunks[:-1]:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                name += call.get("function", {}).get("name", "")
                arguments += call.get("function", {}).get("arguments", "")
            finish = choice["finish_reason"] or finish
    return {"text": text, "name": name, "arguments": arguments, "finish": finish,
            "usage": usage}


@pytest.fixture
def model() -> Iterator[StubModel]:
    script: list[Step] = [Call("post_progress", {"task_id": "T1", "text": "noted"}), Say("All done.")]
    with StubModel(script, Usage(prompt=500, prompt_growth=50, completion=7)) as stub:
        yield stub


def test_a_tool_call_streams_as_openai_does_under_the_offered_name(model: StubModel) -> None:
    chunks = streamed(model, [USER], TOOLS)
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["choices"] == []  # usage comes alone, last
    assert assistant(chunks) == {
        "text": "", "name": "marrow_post_progress",
        "arguments": json.dumps({"task_id": "T1", "text": "noted"}), "finish": "tool_calls",
        "usage": {"prompt_tokens": 500, "completion_tokens": 7, "total_tokens": 507}}


def test_the_step_follows_the_conversation_and_side_requests_do_not_shift_it(
        model: StubModel) -> None:
    title = assistant(streamed(model, [{"role": "user", "content": "a title, please"}]))
    assert (title["text"], title["finish"]) == (SIDE_ANSWER, "stop")
    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0"}]}
    result = {"role": "tool", "tool_call_id": "call_0", "content": "posted a note on T1."}
    assert assistant(streamed(model, [USER], TOOLS))["name"] == "marrow_post_progress"
    second = assistant(streamed(model, [USER, call, result], TOOLS))
    assert (second["text"], second["finish"]) == ("All done.", "stop")
    assert second["usage"]["prompt_tokens"] == 550
    over: list[dict[str, Any]] = [USER, call, result, {"role": "assistant", "content": "All done."}, USER]
    assert assistant(streamed(model, over, TOOLS))["text"] == SCRIPT_OVER
    assert len(model.requests) == 4 and len(model.scripted) == 3
    assert model.tool_results() == ["posted a note on T1."]


def test_a_tool_the_agent_did_not_offer_is_said_in_the_answer_and_kept(
        model: StubModel) -> None:
    answer = assistant(streamed(model, [USER], TOOLS[:1]))
    problem = ("the script calls 'post_progress' but the agent offered no tool of that name: "
               "bash")
    assert answer["text"] == f"stub model: {problem}"
    assert model.problems == [problem]


def test_an_answer_not_streamed_is_one_completion(model: StubModel) -> None:
    whole = json.loads(post(model, {"model": "stub", "messages": [USER], "tools": TOOLS}))
    [choice] = whole["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "marrow_post_progress"
    assert whole["usage"]["total_tokens"] == 507
