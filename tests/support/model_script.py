"""What every scripted stub model shares, whichever API it speaks (Chat Completions in
stub_model.py, Anthropic Messages in anthropic_model.py, ...): the script, the choice of the
step from the conversation, the usage it reports, and a stdlib HTTP server on 127.0.0.1 in a
thread of its own that keeps every request.

A script is a list of steps, each a text answer (`Say`) or one tool call (`Call`). A request
that offers tools is the agent's main conversation: the step it gets is picked from the
conversation itself (how many answers of the model it already holds), not from a counter, so
the agent's side requests (titles, summaries, classifiers: no tools) never shift the script,
and a request the agent repeats gets the same answer. Each API's server says how its requests
hold the tools offered and the model's earlier answers, and how an answer is written.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

HOST = "127.0.0.1"
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
    agents prefix an MCP tool's name with its server's (opencode `marrow_post_progress`,
    Claude Code `mcp__marrow__post_progress`), and `post_progress` finds either."""

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

    def input_at(self, index: int) -> int:
        """The prompt tokens reported for the step at `index`."""
        return self.prompt + index * self.prompt_growth

    def of_step(self, index: int) -> dict[str, int]:
        """The step's usage as Chat Completions reports it."""
        prompt = self.input_at(index)
        return {"prompt_tokens": prompt, "completion_tokens": self.completion,
                "total_tokens": prompt + self.completion}


@dataclass(frozen=True, slots=True)
class Answer:
    """The step a main-conversation request gets, ready for an API to write: `text`, or the
    tool `tool` (its name as offered) with `arguments`, called as `call_<index>`."""

    index: int
    text: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def call_id(self) -> str:
        return f"call_{self.index}"


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: its status, content type and body."""

    status: int
    kind: str
    body: bytes

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        return cls(status, "application/json", json.dumps(value).encode())


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


class ScriptedServer:
    """The server and the script: `with Subclass(script) as model:` and point the agent at it.
    A subclass answers `post` (and `get`) for its API."""

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
                                        name=type(self).__name__, daemon=True)

    @property
    def root(self) -> str:
        """`http://127.0.0.1:<port>`, no path."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    # ---- what tests read (a subclass says how its API carries tools and their results) ---------

    @staticmethod
    def offers_tools(request: dict[str, Any]) -> bool:
        return bool(request.get("tools"))

    @staticmethod
    def results_in(request: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    @property
    def scripted(self) -> list[dict[str, Any]]:
        """The requests that offered tools (the agent's main conversation)."""
        return [r for r in self.kept() if self.offers_tools(r)]

    def tool_results(self) -> list[str]:
        """The tool results in the latest scripted request."""
        scripted = self.scripted
        return self.results_in(scripted[-1]) if scripted else []

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

    def keep(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def kept(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.requests)

    def pick(self, answered: int, offered: Sequence[str]) -> Answer:
        """The answer to a main-conversation request that already holds `answered` answers of
        the model and offers the tools `offered`. A step naming a tool that was not offered is
        answered with a sentence saying so, kept in `problems`."""
        step = self.script[answered] if answered < len(self.script) else Say(SCRIPT_OVER)
        if isinstance(step, Say):
            return Answer(answered, text=step.text)
        try:
            name = resolve_tool(step.tool, offered)
        except LookupError as exc:
            with self._lock:
                self.problems.append(str(exc))
            return Answer(answered, text=f"stub model: {exc}")
        return Answer(answered, tool=name, arguments=step.arguments)

    def get(self, path: str) -> Reply:
        return Reply.json({"error": {"message": "not found"}}, 404)

    def post(self, path: str, request: dict[str, Any]) -> Reply:
        raise NotImplementedError


def _handler(model: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._send(model.get(self.path))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(Reply.json({"error": {"message": "not JSON"}}, 400))
                return
            self._send(model.post(self.path, request))

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.kind)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the requests are kept in `model.requests`

    return Handler
