"""A scripted model behind an OpenAI-compatible Chat Completions endpoint, for driving a real
coding agent (opencode) offline: a stdlib HTTP server on 127.0.0.1 in a thread of its own.

A script is a list of steps, each a text answer (`Say`) or one tool call (`Call`). A request
that offers tools is the agent's main conversation: the step it gets is picked from the
conversation itself (how many assistant messages it already holds), not from a counter, so
the agent's side requests (titles, summaries: no tools) never shift the script, and a request
the agent repeats gets the same answer. Side requests get a short text. Every request is kept,
for tests to look at what the agent offered and what tool results came back.

Answers stream as OpenAI streams them: `data: {chunk}` lines (a role delta, content or
tool-call deltas, a finish reason, then a chunk with `usage` and no choices) and `data: [DONE]`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

HOST = "127.0.0.1"
#: the model id the stub answers as (the agent's config names it)
MODEL = "stub"
#: the answer to a request without tools
SIDE_ANSWER = "Scripted session"
#: the text once the script is over
SCRIPT_OVER = "The script is over."


@dataclass(frozen=True, slots=True)
class Say:
    """The model answers with text and ends its turn."""

    text: str


@dataclass(frozen=True, slots=True)
class Call:
    """The model calls one tool. `tool` is the tool's name as offered, or its last part:
    opencode names an MCP tool `<server>_<tool>`, so `post_progress` finds
    `marrow_post_progress`."""

    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)


Step = Say | Call


@dataclass(frozen=True, slots=True)
class Usage:
    """What the stub reports for each scripted answer: `prompt` tokens for the first step,
    `prompt_growth` more for each step after it (the conversation grows), `completion` each."""

    prompt: int = 1000
    prompt_growth: int = 100
    completion: int = 20

    def of_step(self, index: int) -> dict[str, int]:
        prompt = self.prompt + index * self.prompt_growth
        return {"prompt_tokens": prompt, "completion_tokens": self.completion,
                "total_tokens": prompt + self.completion}


def offered_tools(request: dict[str, Any]) -> list[str]:
    """The names of the tools a request offers."""
    return [t.get("function", {}).get("name", "") for t in request.get("tools") or []]


def resolve_tool(wanted: str, offered: Sequence[str]) -> str:
    """The offered name meant by `wanted`: itself, else the one name ending in `_<wanted>`.
    Raises LookupError with a sentence naming what was offered."""
    if wanted in offered:
        return wanted
    matches = [name for name in offered if name.endswith("_" + wanted)]
    if len(matches) == 1:
        return matches[0]
    what = "more than one tool" if matches else "no tool"
    raise LookupError(f"the script calls {wanted!r} but the agent offered {what} of that "
                      f"name: {', '.join(offered) or 'none'}")


def tool_results(request: dict[str, Any]) -> list[str]:
    """The text of each tool result a request's conversation holds, oldest first."""
    return [_text(m.get("content")) for m in request.get("messages") or []
            if m.get("role") == "tool"]


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


class StubModel:
    """The server: `with StubModel(script) as model:` and point the agent at `model.url`."""

    def __init__(self, script: Sequence[Step], usage: Usage = Usage()) -> None:
        self.script = list(script)
        self.usage = usage
        #: every request body received, in order
        self.requests: list[dict[str, Any]] = []
        #: what went wrong answering (a script that names a tool the agent did not offer)
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="stub-model", daemon=True)

    @property
    def url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        return f"http://{HOST}:{self._server.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    # ---- what tests read -------------------------------------------------------------------

    @property
    def scripted(self) -> list[dict[str, Any]]:
        """The requests that offered tools (the agent's main conversation)."""
        with self._lock:
            return [r for r in self.requests if r.get("tools")]

    def tool_results(self) -> list[str]:
        """The tool results in the latest scripted request's conversation."""
        scripted = self.scripted
        return tool_results(scripted[-1]) if scripted else []

    # ---- answering ----------------------------------------------------------------------------

    def answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """The assistant message (content or one tool call) and the usage for a request."""
        with self._lock:
            self.requests.append(request)
        if not request.get("tools"):
            return {"content": SIDE_ANSWER}, self.usage.of_step(0)
        index = sum(1 for m in request.get("messages") or [] if m.get("role") == "assistant")
        usage = self.usage.of_step(index)
        step = self.script[index] if index < len(self.script) else Say(SCRIPT_OVER)
        if isinstance(step, Say):
            return {"content": step.text}, usage
        try:
            name = resolve_tool(step.tool, offered_tools(request))
        except LookupError as exc:
            with self._lock:
                self.problems.append(str(exc))
            return {"content": f"stub model: {exc}"}, usage
        return {"tool_calls": [{"id": f"call_{index}", "type": "function", "function": {
            "name": name, "arguments": json.dumps(step.arguments)}}]}, usage


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


def _handler(model: StubModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, "application/json", json.dumps(
                    {"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode())
            else:
                self._send(404, "application/json", b'{"error": {"message": "not found"}}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, "application/json", b'{"error": {"message": "not JSON"}}')
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, "application/json", b'{"error": {"message": "not found"}}')
                return
            message, usage = model.answer(request)
            if request.get("stream"):
                body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks(message, usage))
                self._send(200, "text/event-stream", (body + "data: [DONE]\n\n").encode())
            else:
                self._send(200, "application/json",
                           json.dumps(completion(message, usage)).encode())

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the requests are kept in `model.requests`

    return Handler
