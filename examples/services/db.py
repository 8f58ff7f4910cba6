#!/usr/bin/env python3
"""A toy database: counters in memory. GET /health, GET /count/<key> (adds one, returns it).

Started by marrow-tui with its port as the first argument (also in $PORT).
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])
counts: dict[str, int] = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self.reply(200, {"ok": True})
        elif self.path.startswith("/count/"):
            key = self.path[len("/count/"):] or "-"
            with lock:
                counts[key] = counts.get(key, 0) + 1
                self.reply(200, {"key": key, "count": counts[key]})
        else:
            self.reply(404, {"error": f"no route {self.path}"})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:  # to stdout: marrow-tui's log
        print(f"db: {fmt % args}", flush=True)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    # SIGTERM (marrow-tui stopping us): finish the request in hand, then exit 0
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"db: listening on http://127.0.0.1:{PORT}", flush=True)
    server.serve_forever()
    print("db: stopped", flush=True)


if __name__ == "__main__":
    main()
