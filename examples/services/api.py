#!/usr/bin/env python3
"""The API in front of db and cache, which it finds through $DB_URL and $CACHE_URL (set by
marrow-tui from `depends_on`).

GET /health             itself only: a dependency being down is not a reason to restart us
GET /hello/<name>       counts the visit in db, remembers the greeting in cache; 502 with the
                        reason when one of them does not answer (e.g. while it restarts)
"""

import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

PORT = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])
DB_URL = os.environ["DB_URL"]
CACHE_URL = os.environ["CACHE_URL"]


def call(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self.reply(200, {"ok": True})
        elif self.path.startswith("/hello/"):
            name = self.path[len("/hello/"):] or "world"
            try:
                _, visit = call(f"{DB_URL}/count/{quote(name)}")
                status, cached = call(f"{CACHE_URL}/get/{quote(name)}")
                greeting = cached.get("value") if status == 200 else None
                if greeting is None:
                    greeting = f"hello, {name}"
                    call(f"{CACHE_URL}/set/{quote(name)}/{quote(greeting)}")
            except (OSError, ValueError) as exc:
                self.reply(502, {"error": f"a dependency did not answer: {exc}"})
                return
            self.reply(200, {"greeting": greeting, "visits": visit["count"],
                             "cached": status == 200, "db": DB_URL, "cache": CACHE_URL})
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
        print(f"api: {fmt % args}", flush=True)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"api: listening on http://127.0.0.1:{PORT} (db {DB_URL}, cache {CACHE_URL})",
          flush=True)
    server.serve_forever()
    print("api: stopped", flush=True)


if __name__ == "__main__":
    main()
