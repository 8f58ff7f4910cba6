"""A scripted model behind the Gemini API, for driving the real Gemini CLI (`gemini --acp`)
offline: model_script.py's script and server, spoken as the Gemini API does.

`POST /v1beta/models/<model>:streamGenerateContent?alt=sse` (and `:generateContent`): a
request that offers tools (`tools[].functionDeclarations`) is the main conversation, its step
picked from how many `model` turns its `contents` hold. One without tools is a side request:
when it wants JSON (`generationConfig.responseMimeType`; Gemini CLI first asks which model
should answer) it gets a small value its schema allows (every property, an enum's first
value, a number's minimum or 1), else a short text. A streamed answer is `data:
{GenerateContentResponse}` events: the text in word pieces, or the whole function call, the
last with the finish reason and the usage. `:countTokens` answers a rough count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.support.model_script import SIDE_ANSWER, Answer, Reply, ScriptedServer

#: the model version the stub answers as
MODEL = "gemini-stub"


def offered_tools(request: dict[str, Any]) -> list[str]:
    """The names of the functions a generateContent request offers."""
    return [d.get("name", "") for tool in request.get("tools") or []
            for d in tool.get("functionDeclarations") or []]


def answered(request: dict[str, Any]) -> int:
    """How many of the model's turns a request's `contents` hold."""
    return sum(1 for c in request.get("contents") or [] if c.get("role") == "model")


def tool_results(request: dict[str, Any]) -> list[str]:
    """Each function response a request's `contents` hold (its `response`, as JSON), oldest
    first."""
    return [json.dumps(part["functionResponse"].get("response"))
            for c in request.get("contents") or [] for part in c.get("parts") or []
            if "functionResponse" in part]


def small_value(schema: dict[str, Any]) -> Any:
    """A small value a JSON schema (OpenAPI's or JSON Schema's spelling) allows."""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        return {name: small_value(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)  # Gemini CLI's router wants a score from 1
    return {"array": [], "string": "stub", "boolean": False}.get(kind)


def side_text(request: dict[str, Any]) -> str:
    """The answer to a request without tools: JSON when it wants JSON, else a short text."""
    config = request.get("generationConfig") or {}
    if config.get("responseMimeType") != "application/json":
        return SIDE_ANSWER
    schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
    return json.dumps(small_value(schema))


def pieces(answer: Answer) -> list[dict[str, Any]]:
    """The answer's parts, as the stream sends them: the text word by word, or the call."""
    if answer.tool is not None:
        return [{"functionCall": {"name": answer.tool, "args": answer.arguments}}]
    words = (answer.text or "").split(" ")
    return [{"text": word if i == len(words) - 1 else word + " "} for i, word in enumerate(words)]


def responses(answer: Answer, usage: dict[str, int]) -> Iterator[dict[str, Any]]:
    """The answer as GenerateContentResponse events, the last with finish reason and usage."""
    parts = pieces(answer)
    for i, part in enumerate(parts):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [part]}, "index": 0}
        last = i == len(parts) - 1
        if last:
            candidate["finishReason"] = "STOP"
        yield {"candidates": [candidate], "modelVersion": MODEL,
               **({"usageMetadata": usage} if last else {})}


def whole(answer: Answer, usage: dict[str, int]) -> dict[str, Any]:
    """The answer not streamed: one response with every part."""
    parts = [{"text": answer.text or ""}] if answer.tool is None else pieces(answer)
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0,
                            "finishReason": "STOP"}],
            "usageMetadata": usage, "modelVersion": MODEL}


class GeminiModel(ScriptedServer):
    """The server: `with GeminiModel(script) as model:` and set GOOGLE_GEMINI_BASE_URL to
    `model.url`."""

    @property
    def url(self) -> str:
        """The base URL (the SDK adds /v1beta/models/...)."""
        return self.root

    results_in = staticmethod(tool_results)
    offers_tools = staticmethod(offered_tools)

    def answer(self, request: dict[str, Any]) -> tuple[Answer, dict[str, int]]:
        """The answer and the Gemini usage for a generateContent request."""
        self.keep(request)
        offered = offered_tools(request)
        if not offered:
            return Answer(0, text=side_text(request)), self._usage(0)
        index = answered(request)
        return self.pick(index, offered), self._usage(index)

    def _usage(self, index: int) -> dict[str, int]:
        prompt = self.usage.input_at(index)
        return {"promptTokenCount": prompt, "candidatesTokenCount": self.usage.completion,
                "totalTokenCount": prompt + self.usage.completion}

    def post(self, path: str, request: dict[str, Any]) -> Reply:
        route = path.split("?")[0]
        if route.endswith(":countTokens"):
            return Reply.json({"totalTokens": len(json.dumps(request)) // 4})
        if route.endswith(":generateContent"):
            return Reply.json(whole(*self.answer(request)))
        if route.endswith(":streamGenerateContent"):
            body = "".join(f"data: {json.dumps(r)}\r\n\r\n"
                           for r in responses(*self.answer(request)))
            return Reply(200, "text/event-stream", body.encode())
        return Reply.json({"error": {"code": 404, "message": f"no {route} here",
                                     "status": "NOT_FOUND"}}, 404)
