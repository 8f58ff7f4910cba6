"""A lean WebSocket client: the real protocol on a plain asyncio transport, with almost no parsing.

Why not the websockets client: every grant, status change and progress note is broadcast to every
socket, so 100 agents at 10 frames/s each receive about 70,000 frames/s between them. Parsing and
queueing each one through websockets costs the load process most of a core on this 2-vCPU VM,
CPU taken from the console under test. This client does the RFC 6455 handshake itself, sends
masked text frames, answers pings and close frames, and otherwise only walks frame headers: a
received frame is counted and dropped after two substring tests (is it a refusal or an error
addressed to us?), never decoded. The hub sees exactly what it would see from any client.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Any

try:
    from websockets.speedups import apply_mask  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - pure-Python fallback

    def apply_mask(data: bytes, mask: bytes) -> bytes:
        return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
MAX_HEADER_BYTES = 65536
MAX_ERROR_SAMPLES = 5


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked frame (clients must mask)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + apply_mask(payload, mask)


class LeanAgent(asyncio.Protocol):
    """One connection: handshake, then count frames; answer pings and closes."""

    def __init__(self, name: str, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.name = name
        self.host = host
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.key = base64.b64encode(os.urandom(16))
        self.buf = bytearray()
        self.upgraded = False
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.welcome: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.close_code: int | None = None
        self.paused = False
        self.max_write_buffer = 0

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        request = (
            f"GET / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\nUser-Agent: marrow-consolebench\r\n\r\n"
        )
        transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    self._fail("handshake response too long")
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            error = self._check_response(head)
            if error:
                self._fail(error)
                return
            self.upgraded = True
            if not self.handshake.done():
                self.handshake.set_result(None)
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        _fail_quietly(self.handshake, ConnectionError(f"closed during handshake: {exc}"))
        _fail_quietly(self.welcome, ConnectionError(f"closed before welcome: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    # ---- frames --------------------------------------------------------------------------

    def _check_response(self, head: str) -> str | None:
        lines = head.split("\r\n")
        if not lines or " 101 " not in lines[0] + " ":
            return f"handshake refused: {lines[0] if lines else head!r}"
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        expected = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            return "bad Sec-WebSocket-Accept"
        if headers.get("sec-websocket-extensions"):
            return f"unexpected extensions {headers['sec-websocket-extensions']!r}"
        return None

    def _fail(self, why: str) -> None:
        _fail_quietly(self.handshake, ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        buf = self.buf
        n = len(buf)
        pos = 0
        find = buf.find
        while n - pos >= 2:
            b0 = buf[pos]
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            start = pos + head
            end = start + length
            if end > n:
                break
            op = b0 & 0x0F
            if op == OP_TEXT or op == 0:
                self.frames_in += 1
                # Refusals and errors only ever go to the requester: any on our socket is ours.
                if find(b'"type":"error"', start, end) >= 0 or find(b'_denied"', start, end) >= 0:
                    self.errors += 1
                    if len(self.error_samples) < MAX_ERROR_SAMPLES:
                        sample = bytes(buf[start:end][:400])
                        self.error_samples.append(sample.decode("utf-8", "replace"))
                if not self.welcome.done() and find(b'"type":"welcome"', start, end) >= 0:
                    self.welcome.set_result(None)
            elif op == OP_PING:
                self._write(client_frame(OP_PONG, bytes(buf[start:end])))
            elif op == OP_CLOSE:
                payload = bytes(buf[start:end])
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._write(client_frame(OP_CLOSE, payload[:2]))
                if self.transport is not None:
                    self.transport.close()
            pos = end
        if pos:
            del buf[:pos]

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        size = transport.get_write_buffer_size()
        if size > self.max_write_buffer:
            self.max_write_buffer = size

    def send_text(self, text: str) -> None:
        self.frames_out += 1
        self._write(client_frame(OP_TEXT, text.encode()))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._write(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()

    def stats(self) -> dict[str, Any]:
        return {
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "frames_out": self.frames_out,
            "errors": self.errors,
            "close_code": self.close_code,
            "max_write_buffer": self.max_write_buffer,
        }


def _fail_quietly(future: asyncio.Future[None], exc: Exception) -> None:
    """Fail a future nobody may be waiting on any more, without a 'never retrieved' warning."""
    if not future.done():
        future.set_exception(exc)
        future.exception()


async def open_agent(host: str, port: int, name: str, timeout: float = 10.0) -> LeanAgent:
    loop = asyncio.get_running_loop()
    _, agent = await asyncio.wait_for(
        loop.create_connection(lambda: LeanAgent(name, host, port), host, port), timeout
    )
    try:
        await asyncio.wait_for(agent.handshake, timeout)
    except BaseException:
        agent.close()
        raise
    return agent
