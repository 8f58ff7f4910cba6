"""A scripted model behind the Anthropic Messages API, for driving the real Claude Code
(`claude-code-acp`) offline: model_script.py's script and server, spoken as Anthropic does.

`POST /v1/messages`: a request that offers tools is the main conversation, its step picked
from how many assistant messages it holds; one without tools (Claude Code's titles, topic and
quota checks) gets a short text. A streamed answer is Anthropic's server-sent events:
`message_start` (the input tokens), for the text or the tool call a `content_block_start`,
`content_block_delta`s (`text_delta` words, or the call's input as `input_json_delta`
pieces) and `content_block_stop`, then `message_delta` (the stop reason and output tokens)
and `message_stop`. `POST /v1/messages/count_tokens` answers a rough count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.support.model_script import SIDE_ANSWER, Answer, Reply, ScriptedServer

#: the model id the stub answers as, when the request names none
MODEL = "claude-stub"


def offered_tools(request: dict[str, Any]) -> list[str]:
    """The names of the tools a Messages request offers."""
    return [t.get("name", "") for t in request.get("tools") or []]


def tool_results(request: dict[str, Any]) -> list[str]:
    """The text of each `tool_result` block a request's conversation holds, oldest first."""
    return [_text(block.get("content")) for m in request.get("messages") or []
            if isinstance(m.get("content"), list) for block in m["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"]


def _text(content: Any) -> str:
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


def content_blocks(answer: Answer) -> list[dict[str, Any]]:
    """The answer as the content of an assistant message."""
    if answer.tool is None:
        return [{"type": "text", "text": answer.text or ""}]
    return [{"type": "tool_use", "id": answer.call_id, "name": answer.tool,
             "input": answer.arguments}]


def stop_reason(answer: Answer) -> str:
    return "end_turn" if answer.tool is None else "tool_use"


def message(answer: Answer, model: str, usage: dict[str, int]) -> dict[str, Any]:
    """A whole (not streamed) answer."""
    return {"id": f"msg_{answer.index}", "type": "message", "role": "assistant", "model": model,
            "content": content_blocks(answer), "stop_reason": stop_reason(answer),
            "stop_sequence": None, "usage": usage}


def events(answer: Answer, model: str, usage: dict[str, int]) -> Iterator[dict[str, Any]]:
    """A message as Anthropic streams it, event by event."""
    start = {**message(answer, model, usage), "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}
    yield {"type": "message_start", "message": start}
    [block] = content_blocks(answer)
    if block["type"] == "text":
        yield {"type": "content_block_start", "index": 0,
               "content_block": {"type": "text", "text": ""}}
        words = block["text"].split(" ")
        for i, word in enumerate(words):
            yield {"type": "content_block_delta", "index": 0, "delta": {
                "type": "text_delta", "text": word if i == len(words) - 1 else word + " "}}
    else:
        yield {"type": "content_block_start", "index": 0,
               "content_block": {**block, "input": {}}}
        arguments = json.dumps(block["input"])
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            yield {"type": "content_block_delta", "index": 0,
                   "delta": {"type": "input_json_delta", "partial_json": piece}}
    yield {"type": "content_block_stop", "index": 0}
    yield {"type": "message_delta",
           "delta": {"stop_reason": stop_reason(answer), "stop_sequence": None},
           "usage": {"output_tokens": usage["output_tokens"]}}
    yield {"type": "message_stop"}


class AnthropicModel(ScriptedServer):
    """The server: `with AnthropicModel(script) as model:` and set ANTHROPIC_BASE_URL to
    `model.url`."""

    @property
    def url(self) -> str:
        """The base URL (the SDK adds /v1/messages)."""
        return self.root

    results_in = staticmethod(tool_results)

    def answer(self, request: dict[str, Any]) -> tuple[Answer, dict[str, int]]:
        """The answer and Anthropic's usage for a Messages request."""
        self.keep(request)
        if not request.get("tools"):
            return Answer(0, text=SIDE_ANSWER), self._usage(0)
        answered = sum(1 for m in request.get("messages") or [] if m.get("role") == "assistant")
        return self.pick(answered, offered_tools(request)), self._usage(answered)

    def _usage(self, index: int) -> dict[str, int]:
        return {"input_tokens": self.usage.input_at(index),
                "output_tokens": self.usage.completion,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}

    def post(self, path: str, request: dict[str, Any]) -> Reply:
        route = path.split("?")[0].rstrip("/")
        if route.endswith("/messages/count_tokens"):
            return Reply.json({"input_tokens": len(json.dumps(request)) // 4})
        if not route.endswith("/messages"):
            return Reply.json({"type": "error", "error": {
                "type": "not_found_error", "message": f"no {route} here"}}, 404)
        answer, usage = self.answer(request)
        model = str(request.get("model") or MODEL)
        if not request.get("stream"):
            return Reply.json(message(answer, model, usage))
        body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n"
                       for e in events(answer, model, usage))
        return Reply(200, "text/event-stream", body.encode())
