#!/usr/bin/env python3
"""A toy cache: strings in memory. GET /health, GET /get/<key> (404 when absent),
GET /set/<key>/<value>.

Started by marrow-tui with its port as the first argument (also in $PORT).
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

PORT = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])
values: dict[str, str] = {}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = [unquote(p) for p in self.path.split("/")[1:]]
        if parts == ["health"]:
            self.reply(200, {"ok": True, "keys": len(values)})
        elif len(parts) == 2 and parts[0] == "get":
            if parts[1] in values:
                self.reply(200, {"key": parts[1], "value": values[parts[1]]})
            else:
                self.reply(404, {"key": parts[1], "error": "not cached"})
        elif len(parts) == 3 and parts[0] == "set":
            values[parts[1]] = parts[2]
            self.reply(200, {"key": parts[1], "value": parts[2]})
        else:
            self.reply(404, {"error": f"no route {self.path}"})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"cache: {fmt % args}", flush=True)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"cache: listening on http://127.0.0.1:{PORT}", flush=True)
    server.serve_forever()
    print("cache: stopped", flush=True)


if __name__ == "__main__":
    main()
