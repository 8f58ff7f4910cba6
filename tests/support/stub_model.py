"""A scripted model behind an OpenAI-compatible Chat Completions endpoint, for driving a real
coding agent (opencode) offline: a stdlib HTTP server on 127.0.0.1 in a thread of its own.

The script, the choice of its step from the conversation (how many assistant messages it
already holds) and the server are model_script.py's, shared with the other APIs' stubs; the
script's names are importable from here too. Side requests (titles, summaries: no tools) get
a short text. Every request is kept, for tests to look at what the agent offered and what
tool results came back.

Answers stream as OpenAI streams them: `data: {chunk}` lines (a role delta, content or
tool-call deltas, a finish reason, then a chunk with `usage` and no choices) and `data: [DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.support.model_script import (
    SCRIPT_OVER,
    SIDE_ANSWER,
    Call,
    Reply,
    Say,
    ScriptedServer,
    Step,
    Usage,
    resolve_tool,
)

__all__ = ["MODEL", "SCRIPT_OVER", "SIDE_ANSWER", "Call", "Say", "Step", "StubModel", "Usage",
           "chunks", "completion", "offered_tools", "resolve_tool", "tool_results"]

#: the model id the stub answers as (the agent's config names it)
MODEL = "stub"


def offered_tools(request: dict[str, Any]) -> list[str]:
    """The names of the tools a request offers."""
    return [t.get("function", {}).get("name", "") for t in request.get("tools") or []]


def tool_results(request: dict[str, Any]) -> list[str]:
    """The text of each tool result a request's conversation holds, oldest first."""
    return [_text(m.get("content")) for m in request.get("messages") or []
            if m.get("role") == "tool"]


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


class StubModel(ScriptedServer):
    """The server: `with StubModel(script) as model:` and point the agent at `model.url`."""

    @property
    def url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        return f"{self.root}/v1"

    # ---- what tests read -------------------------------------------------------------------

    results_in = staticmethod(tool_results)

    # ---- answering ----------------------------------------------------------------------------

    def answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """The assistant message (content or one tool call) and the usage for a request."""
        self.keep(request)
        if not request.get("tools"):
            return {"content": SIDE_ANSWER}, self.usage.of_step(0)
        answered = sum(1 for m in request.get("messages") or [] if m.get("role") == "assistant")
        answer = self.pick(answered, offered_tools(request))
        usage = self.usage.of_step(answered)
        if answer.tool is None:
            return {"content": answer.text}, usage
        return {"tool_calls": [{"id": answer.call_id, "type": "function", "function": {
            "name": answer.tool, "arguments": json.dumps(answer.arguments)}}]}, usage

    def get(self, path: str) -> Reply:
        if path.rstrip("/").endswith("/models"):
            return Reply.json({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        return super().get(path)

    def post(self, path: str, request: dict[str, Any]) -> Reply:
        if not path.rstrip("/").endswith("/chat/completions"):
            return Reply.json({"error": {"message": "not found"}}, 404)
        message, usage = self.answer(request)
        if not request.get("stream"):
            return Reply.json(completion(message, usage))
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks(message, usage))
        return Reply(200, "text/event-stream", (body + "data: [DONE]\n\n").encode())


def chunks(message: dict[str, Any], usage: dict[str, int]) -> Iterator[dict[str, Any]]:
    """A message as OpenAI streams it: the role, the content in pieces or the tool call (its
    name, then its arguments in two pieces), the finish reason, the usage."""
    yield _chunk({"role": "assistant", "content": ""})
    if "tool_calls" in message:
        call = message["tool_calls"][0]
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        yield _chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                      "function": {"name": call["function"]["name"],
                                                   "arguments": ""}}]})
        for piece in (arguments[:half], arguments[half:]):
            yield _chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        yield _chunk({}, "tool_calls")
    else:
        words = message["content"].split(" ")
        for i, word in enumerate(words):
            yield _chunk({"content": word if i == len(words) - 1 else word + " "})
        yield _chunk({}, "stop")
    yield {**_chunk({}), "choices": [], "usage": usage}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0,
            "model": MODEL, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def completion(message: dict[str, Any], usage: dict[str, int]) -> dict[str, Any]:
    """A whole (not streamed) answer."""
    finish = "tool_calls" if "tool_calls" in message else "stop"
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                 **message}, "finish_reason": finish}],
            "usage": usage}
