"""A scripted model behind the OpenAI Responses API, for driving the real Codex (`codex-acp`)
offline: model_script.py's script and server, spoken as the Responses API does.

`POST /v1/responses`: a request that offers tools is the main conversation, its step picked
from how many of the model's answers its `input` holds (assistant messages and function
calls); one without tools gets a short text. A streamed answer is the Responses API's
server-sent events: `response.created`, `response.output_item.added`, the text as
`response.output_text.delta`s or the call's arguments as `response.function_call_arguments.
delta`s, `response.output_item.done` (the whole item), and `response.completed` with the
usage.

Codex offers an MCP server's tools in a namespace (`{"type": "namespace", "name":
"mcp__marrow", "tools": [...]}`) and wants a call to one to name the namespace too: a tool is
offered here as `<namespace>__<name>`, so `post_progress` finds `mcp__marrow__post_progress`,
and called as `{"namespace": "mcp__marrow", "name": "post_progress"}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.support.model_script import SIDE_ANSWER, Answer, Reply, ScriptedServer

#: the model id the stub answers as (the agent's config names it)
MODEL = "stub"
#: the `input` items that are the model's own answers
ANSWER_ITEMS = ("function_call", "custom_tool_call", "local_shell_call")
#: between a namespace's name and its tool's, in the names the script resolves
SEPARATOR = "__"


def offered_tools(request: dict[str, Any]) -> list[str]:
    """The names of the tools a Responses request offers, a namespace's as `<ns>__<name>`."""
    names: list[str] = []
    for tool in request.get("tools") or []:
        if tool.get("type") == "namespace":
            names += [f"{tool.get('name')}{SEPARATOR}{t.get('name')}" for t in tool.get("tools") or []]
        elif tool.get("name"):
            names.append(tool["name"])
    return names


def answered(request: dict[str, Any]) -> int:
    """How many answers of the model a request's `input` holds."""
    return sum(1 for item in request.get("input") or [] if isinstance(item, dict) and (
        item.get("type") in ANSWER_ITEMS
        or (item.get("type", "message") == "message" and item.get("role") == "assistant")))


def tool_results(request: dict[str, Any]) -> list[str]:
    """The output of each function call a request's `input` holds, oldest first."""
    return [_text(item.get("output")) for item in request.get("input") or []
            if isinstance(item, dict) and item.get("type", "").endswith("_call_output")]


def _text(output: Any) -> str:
    if isinstance(output, list):  # content items
        return "".join(p.get("text", "") for p in output if isinstance(p, dict))
    return "" if output is None else str(output)


def output_item(answer: Answer, offered_namespaces: list[str]) -> dict[str, Any]:
    """The answer as a Responses output item: a message, or a function call (with its
    namespace when the tool is in one)."""
    if answer.tool is None:
        return {"type": "message", "id": f"msg_{answer.index}", "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": answer.text or "",
                             "annotations": []}]}
    call: dict[str, Any] = {"type": "function_call", "id": f"fc_{answer.index}",
                            "call_id": answer.call_id, "name": answer.tool,
                            "arguments": json.dumps(answer.arguments), "status": "completed"}
    for namespace in offered_namespaces:
        if answer.tool.startswith(namespace + SEPARATOR):
            call.update(namespace=namespace,
                        name=answer.tool.removeprefix(namespace + SEPARATOR))
    return call


def events(item: dict[str, Any], index: int, usage: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """An output item as the Responses API streams it, event by event."""
    response = {"id": f"resp_{index}", "object": "response", "model": MODEL,
                "status": "in_progress", "output": []}
    yield {"type": "response.created", "response": response}
    started = {**item, "status": "in_progress"}
    if item["type"] == "message":
        started["content"] = []
    else:
        started["arguments"] = ""
    yield {"type": "response.output_item.added", "output_index": 0, "item": started}
    if item["type"] == "message":
        words = item["content"][0]["text"].split(" ")
        for i, word in enumerate(words):
            yield {"type": "response.output_text.delta", "item_id": item["id"],
                   "output_index": 0, "content_index": 0,
                   "delta": word if i == len(words) - 1 else word + " "}
    else:
        arguments = item["arguments"]
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            yield {"type": "response.function_call_arguments.delta", "item_id": item["id"],
                   "output_index": 0, "delta": piece}
    yield {"type": "response.output_item.done", "output_index": 0, "item": item}
    yield {"type": "response.completed", "response": {
        **response, "status": "completed", "output": [item], "usage": usage}}


class ResponsesModel(ScriptedServer):
    """The server: `with ResponsesModel(script) as model:` and give Codex's model provider
    `model.url` as its base URL."""

    @property
    def url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        return f"{self.root}/v1"

    results_in = staticmethod(tool_results)

    def answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any]]:
        """The output item, the step's index and the Responses usage for a request."""
        self.keep(request)
        if not request.get("tools"):
            return output_item(Answer(0, text=SIDE_ANSWER), []), 0, self._usage(0)
        index = answered(request)
        namespaces = [t.get("name", "") for t in request["tools"] if t.get("type") == "namespace"]
        answer = self.pick(index, offered_tools(request))
        return output_item(answer, namespaces), index, self._usage(index)

    def _usage(self, index: int) -> dict[str, Any]:
        prompt = self.usage.input_at(index)
        return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.usage.completion,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + self.usage.completion}

    def get(self, path: str) -> Reply:
        if path.split("?")[0].rstrip("/").endswith("/models"):
            return Reply.json({"object": "list", "data": [{"id": MODEL, "object": "model"}],
                               "models": []})
        return super().get(path)

    def post(self, path: str, request: dict[str, Any]) -> Reply:
        if not path.split("?")[0].rstrip("/").endswith("/responses"):
            return Reply.json({"error": {"message": f"no {path} here"}}, 404)
        item, index, usage = self.answer(request)
        body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n"
                       for e in events(item, index, usage))
        return Reply(200, "text/event-stream", body.encode())
