"""The scripted stubs of the Anthropic Messages, OpenAI Responses and Gemini APIs over real
HTTP, as each API's client sees them: the Claude Code, Codex and Gemini tests lean on them,
and these run with or without those agents."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.support.anthropic_model import AnthropicModel
from tests.support.gemini_model import GeminiModel
from tests.support.model_script import SIDE_ANSWER, Call, Say, ScriptedServer, Usage
from tests.support.responses_model import ResponsesModel

NOTE = Call("post_progress", {"task_id": "T1", "text": "noted"})
USAGE = Usage(prompt=500, prompt_growth=50, completion=7)


def post(model: ScriptedServer, path: str, body: dict[str, Any]) -> str:
    request = urllib.request.Request(model.root + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.read().decode())


def sse(body: str) -> list[dict[str, Any]]:
    """The JSON of each `data:` line of a server-sent event stream."""
    return [json.loads(line.removeprefix("data: ")) for line in body.splitlines()
            if line.startswith("data: ")]


def test_anthropic_streams_a_tool_use_then_text_by_the_conversation() -> None:
    tools = [{"name": "Bash"}, {"name": "mcp__marrow__post_progress"}]
    user = {"role": "user", "content": "go"}
    with AnthropicModel([NOTE, Say("All done.")], USAGE) as model:
        events = sse(post(model, "/v1/messages?beta=true",
                          {"stream": True, "tools": tools, "messages": [user]}))
        assert [e["type"] for e in events] == [
            "message_start", "content_block_start", "content_block_delta",
            "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
        assert events[0]["message"]["usage"]["input_tokens"] == 500
        assert events[1]["content_block"] == {"type": "tool_use", "id": "call_0",
                                              "name": "mcp__marrow__post_progress", "input": {}}
        assert json.loads("".join(e["delta"]["partial_json"] for e in events[2:4])) == \
            NOTE.arguments
        assert events[5]["delta"]["stop_reason"] == "tool_use"
        assert events[5]["usage"] == {"output_tokens": 7}
        # the model's answer and its result in the conversation: the next step, as a whole
        answer = {"role": "assistant", "content": [{"type": "tool_use", "id": "call_0"}]}
        result = {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_0", "content": "posted"}]}
        whole = json.loads(post(model, "/v1/messages",
                                {"tools": tools, "messages": [user, answer, result]}))
        assert (whole["content"], whole["stop_reason"]) == (
            [{"type": "text", "text": "All done."}], "end_turn")
        assert model.tool_results() == ["posted"]
        side = json.loads(post(model, "/v1/messages", {"messages": [user]}))
        assert side["content"][0]["text"] == SIDE_ANSWER
        assert "input_tokens" in json.loads(post(model, "/v1/messages/count_tokens",
                                                 {"messages": [user]}))


def test_responses_calls_a_namespaced_tool_with_its_namespace() -> None:
    tools = [{"type": "function", "name": "exec_command"},
             {"type": "namespace", "name": "mcp__marrow", "tools": [
                 {"type": "function", "name": "post_progress"}]}]
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}
    with ResponsesModel([NOTE, Say("All done.")], USAGE) as model:
        events = sse(post(model, "/v1/responses", {"stream": True, "tools": tools,
                                                   "input": [user]}))
        assert [e["type"] for e in events] == [
            "response.created", "response.output_item.added",
            "response.function_call_arguments.delta", "response.function_call_arguments.delta",
            "response.output_item.done", "response.completed"]
        call = events[4]["item"]
        assert (call["type"], call["namespace"], call["name"], call["call_id"]) == (
            "function_call", "mcp__marrow", "post_progress", "call_0")
        assert json.loads(call["arguments"]) == NOTE.arguments
        assert events[5]["response"]["usage"]["input_tokens"] == 500
        output = {"type": "function_call_output", "call_id": "call_0", "output": "posted"}
        events = sse(post(model, "/v1/responses", {"stream": True, "tools": tools,
                                                   "input": [user, call, output]}))
        assert "".join(e["delta"] for e in events
                       if e["type"] == "response.output_text.delta") == "All done."
        assert events[-1]["response"]["usage"]["input_tokens"] == 550
        assert model.tool_results() == ["posted"]
        assert model.problems == []


def test_gemini_answers_its_router_in_json_and_the_conversation_by_script() -> None:
    tools = [{"functionDeclarations": [{"name": "run_shell_command"},
                                       {"name": "mcp_marrow_post_progress"}]}]
    user = {"role": "user", "parts": [{"text": "go"}]}
    schema = {"type": "OBJECT", "properties": {
        "reasoning": {"type": "STRING"}, "score": {"type": "INTEGER"},
        "choice": {"type": "STRING", "enum": ["flash", "pro"]}}}
    with GeminiModel([NOTE, Say("All done.")], USAGE) as model:
        routed = json.loads(post(model, "/v1beta/models/m:generateContent", {
            "contents": [user], "generationConfig": {
                "responseMimeType": "application/json", "responseJsonSchema": schema}}))
        assert json.loads(routed["candidates"][0]["content"]["parts"][0]["text"]) == {
            "reasoning": "stub", "score": 1, "choice": "flash"}
        [called] = sse(post(model, "/v1beta/models/m:streamGenerateContent?alt=sse",
                            {"contents": [user], "tools": tools}))
        part = called["candidates"][0]["content"]["parts"][0]
        assert part == {"functionCall": {"name": "mcp_marrow_post_progress",
                                         "args": NOTE.arguments}}
        assert called["usageMetadata"]["promptTokenCount"] == 500
        history = [user, {"role": "model", "parts": [part]}, {"role": "user", "parts": [
            {"functionResponse": {"name": "mcp_marrow_post_progress",
                                  "response": {"output": "posted"}}}]}]
        said = sse(post(model, "/v1beta/models/m:streamGenerateContent?alt=sse",
                        {"contents": history, "tools": tools}))
        assert "".join(r["candidates"][0]["content"]["parts"][0]["text"] for r in said) == \
            "All done."
        assert said[-1]["candidates"][0]["finishReason"] == "STOP"
        assert model.tool_results() == ['{"output": "posted"}']
