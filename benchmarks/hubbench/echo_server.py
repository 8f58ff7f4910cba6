"""A bare websockets echo server: the transport ceiling a Python hub on this machine works under.

It does what every hub must do at least (accept, read a text frame, write a text frame) and
nothing else: no JSON decoding, no state, no logging per frame. Same library, same event loop
(asyncio) and ``compression=None``, so a hub's throughput divided by this one's says how much
of the machine's transport capacity the hub's own logic leaves.

It sends one ``welcome`` frame on connect so the driver's registration step (wait for a
``welcome``) is the same code path for every target. Like the hub, it prints
``listening on ws://HOST:PORT`` as its first stdout line and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from websockets.asyncio.server import ServerConnection, serve

WELCOME = json.dumps(
    {"sender": "EchoServer", "target": "self", "type": "welcome", "payload": "echo"},
    separators=(",", ":"),
)


async def echo(ws: ServerConnection) -> None:
    await ws.send(WELCOME)
    try:
        async for message in ws:
            await ws.send(message)
    except Exception:  # noqa: BLE001 - a client vanishing mid-frame is normal at the end of a run
        return


async def run(host: str, port: int, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)
    async with serve(
        echo, host, port, compression=None, max_size=None, ping_interval=None
    ) as server:
        bound = server.sockets[0].getsockname()
        print(f"listening on ws://{bound[0]}:{bound[1]}", flush=True)
        # Bounded: the server ends itself even if nobody stops it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop, max_seconds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--max-seconds", type=float, default=3600.0)
    args = p.parse_args(argv)
    asyncio.run(run(args.host, args.port, args.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
