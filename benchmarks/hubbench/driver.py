"""Hub-agnostic client scenarios. Everything goes through ``--uri``; nothing imports a hub.

Run one scenario per process (the orchestrator does), so the driver's own CPU is measurable
and no state leaks between runs::

    python -m hubbench.driver --uri ws://127.0.0.1:PORT --hub-pid PID --scenario claim \
        --agents 10 --duration 6 --json out.json

Scenarios:

* ``claim``       N agents, closed loop: claim (unique task, worktree "bench", one unique path)
                  -> claim_granted -> release -> release_granted.
* ``echo``        the same closed-loop machinery against an echo server: one ~200-byte JSON
                  frame -> the same frame back. The transport ceiling for ``claim``.
* ``chat``        1 sender -> L listeners, at most ``window`` in flight (sent minus the slowest
                  listener's count), 64-byte payloads; deliveries counted at the listeners.
* ``connections`` RSS idle, then with C registered idle agents (opened P at a time).
* ``seed``        writes a hub's state over the wire: 50 long-lived claims, 50 board tasks,
                  then N chats (for the restart test).
* ``verify``      checks that what ``seed`` wrote is still there (claims, board, msg_id).
* ``ready``       connect + welcome + who_request/who_snapshot, retried until the hub answers.

Every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .procinfo import CpuSample, proc_rss_kib, window_load
from .stats import latency_summary_ms
from .wire import Agent, JSONDict, WireError, open_registered

MAX_ERROR_SAMPLES = 5
ECHO_FRAME_BYTES = 200
CHAT_PAYLOAD_BYTES = 64


# --------------------------------------------------------------------------- helpers


@dataclass
class Errors:
    """Counts errors and keeps the first few frames verbatim, for the report."""

    count: int = 0
    samples: list[Any] = field(default_factory=list)

    def add(self, what: str, detail: Any = None) -> None:
        self.count += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append({"what": what, "detail": detail})

    def add_exc(self, exc: BaseException) -> None:
        if isinstance(exc, WireError):
            self.add(str(exc), exc.frame)
        elif isinstance(exc, ConnectionClosed):
            rcvd = exc.rcvd
            self.add("connection closed", None if rcvd is None else [rcvd.code, rcvd.reason])
        else:
            self.add(type(exc).__name__, str(exc))

    def as_dict(self) -> dict[str, Any]:
        return {"errors": self.count, "error_samples": self.samples}


def cpu_pids(hub_pid: int | None) -> dict[str, int | str]:
    pids: dict[str, int | str] = {"driver": "self"}
    if hub_pid:
        pids["hub"] = hub_pid
    return pids


async def open_many(
    uri: str, names: list[str], parallel: int, errors: Errors, open_timeout: float = 15.0
) -> list[Agent]:
    """Open and register agents, ``parallel`` at a time (a connect storm is not the test)."""
    sem = asyncio.Semaphore(parallel)
    out: list[Agent | None] = [None] * len(names)

    async def one(i: int, name: str) -> None:
        async with sem:
            try:
                out[i] = await open_registered(uri, name, open_timeout=open_timeout)
            except (OSError, InvalidHandshake, ConnectionClosed, WireError, TimeoutError) as exc:
                errors.add_exc(exc)

    await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
    return [a for a in out if a is not None]


async def close_all(agents: list[Agent]) -> None:
    await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)


def hub_rss(hub_pid: int | None) -> int | None:
    return proc_rss_kib(hub_pid) if hub_pid else None


# --------------------------------------------------------------------------- closed loop


@dataclass
class LoopState:
    """Shared between the agents of one closed-loop run."""

    stop: bool = False
    measuring: bool = False
    t_start: float = 0.0
    done: int = 0
    first_rtt: list[float] = field(default_factory=list)
    second_rtt: list[float] = field(default_factory=list)
    op_rtt: list[float] = field(default_factory=list)
    errors: Errors = field(default_factory=Errors)


async def claim_agent(agent: Agent, idx: int, st: LoopState, tag: str, max_ops: int) -> None:
    """claim -> claim_granted -> release -> release_granted, until told to stop."""
    for seq in range(max_ops):
        if st.stop:
            return
        tid = f"{tag}-{idx:03d}-{seq:07d}"
        key = f'"{tid}"'
        t0 = perf_counter()
        try:
            await agent.request(
                "claim",
                key,
                ("claim_granted",),
                ("claim_denied",),
                task_id=tid,
                worktree="bench",
                paths=[f"src/{tag}/{idx:03d}/{seq:07d}.py"],
            )
            t1 = perf_counter()
            await agent.request(
                "release", key, ("release_granted",), ("release_denied",), task_id=tid
            )
        except WireError as exc:
            st.errors.add_exc(exc)
            continue
        except ConnectionClosed as exc:
            st.errors.add_exc(exc)
            return
        t2 = perf_counter()
        st.done += 1
        if st.measuring and t0 >= st.t_start:
            st.first_rtt.append(t1 - t0)
            st.second_rtt.append(t2 - t1)
            st.op_rtt.append(t2 - t0)


def _echo_padding(name: str) -> str:
    """Payload that makes the echo frame about ECHO_FRAME_BYTES long, like a claim frame."""
    sample = json.dumps(
        {
            "sender": name,
            "target": "all",
            "type": "echo",
            "payload": "",
            "timestamp": time.time(),
            "task_id": "e00000-000-0000000",
        },
        separators=(",", ":"),
    )
    return "x" * max(0, ECHO_FRAME_BYTES - len(sample))


async def echo_agent(agent: Agent, idx: int, st: LoopState, tag: str, max_ops: int) -> None:
    """One ~200-byte JSON frame out, the same frame back, matched the same way as a grant."""
    pad = _echo_padding(agent.name)
    for seq in range(max_ops):
        if st.stop:
            return
        tid = f"{tag}-{idx:03d}-{seq:07d}"
        t0 = perf_counter()
        try:
            await agent.request("echo", f'"{tid}"', ("echo",), task_id=tid, payload=pad)
        except ConnectionClosed as exc:
            st.errors.add_exc(exc)
            return
        t1 = perf_counter()
        st.done += 1
        if st.measuring and t0 >= st.t_start:
            st.first_rtt.append(t1 - t0)
            st.op_rtt.append(t1 - t0)


async def run_closed_loop(args: argparse.Namespace) -> dict[str, Any]:
    """N agents in a closed loop; counts completed operations inside the measured window."""
    kind: str = args.scenario
    n: int = args.agents
    tag = f"{kind[0]}{n}r{args.tag}"
    st = LoopState()
    agents = await open_many(
        args.uri, [f"bench/{tag}-{i:03d}" for i in range(n)], args.parallel, st.errors
    )
    result: dict[str, Any] = {"connected": len(agents)}
    if len(agents) < n:
        await close_all(agents)
        result.update(ok=False, **st.errors.as_dict())
        return result

    body = claim_agent if kind == "claim" else echo_agent
    tasks = [asyncio.create_task(body(a, i, st, tag, args.max_ops)) for i, a in enumerate(agents)]
    await asyncio.sleep(args.warmup)
    pids = cpu_pids(args.hub_pid)
    s0 = CpuSample.take(pids)
    done0, frames0 = st.done, sum(a.frames for a in agents)
    st.t_start = perf_counter()
    st.measuring = True
    await asyncio.sleep(args.duration)
    st.measuring = False
    t_end = perf_counter()
    s1 = CpuSample.take(pids)
    done1, frames1 = st.done, sum(a.frames for a in agents)
    st.stop = True
    _, pending = await asyncio.wait(tasks, timeout=args.drain_timeout)
    for t in pending:
        t.cancel()
    await close_all(agents)

    ops = done1 - done0
    elapsed = t_end - st.t_start
    load = window_load(s0, s1)
    per_op_rt = 2 if kind == "claim" else 1
    result.update(
        ok=ops > 0 and st.errors.count == 0,
        ops=ops,
        elapsed_s=round(elapsed, 3),
        ops_per_s=ops / elapsed,
        round_trips_per_op=per_op_rt,
        round_trips_per_s=ops * per_op_rt / elapsed,
        frames_received_per_op=(frames1 - frames0) / ops if ops else None,
        hub_cpu_ms_per_op=(load["hub_cpu_s"] * 1000 / ops) if ops and "hub_cpu_s" in load else None,
        hub_cpu_us_per_round_trip=(load["hub_cpu_s"] * 1e6 / (ops * per_op_rt))
        if ops and "hub_cpu_s" in load
        else None,
        load=load,
        hub_rss_kib_end=hub_rss(args.hub_pid),
        **st.errors.as_dict(),
    )
    if kind == "claim":
        result["claim_rtt_ms"] = latency_summary_ms(st.first_rtt)
        result["release_rtt_ms"] = latency_summary_ms(st.second_rtt)
        result["pair_ms"] = latency_summary_ms(st.op_rtt)
    else:
        result["rtt_ms"] = latency_summary_ms(st.first_rtt)
    return result


# --------------------------------------------------------------------------- chat


class ChatCounter:
    """Per-listener receipt counts plus the sender's wake-up when the window opens."""

    def __init__(self, listeners: int, window: int) -> None:
        self.counts = [0] * listeners
        self.window = window
        self.sent = 0
        self.wake = asyncio.Event()

    def in_flight(self) -> int:
        """Sent minus the slowest listener's count: what the window limits."""
        return self.sent - min(self.counts)


async def chat_listener(
    agent: Agent,
    i: int,
    ctr: ChatCounter,
    marker: str,
    send_times: dict[int, float],
    lat: list[float],
    st: LoopState,
) -> None:
    """Counts frames that carry the run's marker; listener 0 also samples latency."""
    mlen = len(marker)
    try:
        async for raw in agent.ws:
            agent.frames += 1
            if not isinstance(raw, str):
                continue
            pos = raw.find(marker)
            if pos < 0:
                continue
            ctr.counts[i] += 1
            if i == 0:
                t_sent = send_times.pop(int(raw[pos + mlen : pos + mlen + 10]), None)
                if t_sent is not None and st.measuring and t_sent >= st.t_start:
                    lat.append(perf_counter() - t_sent)
            if ctr.in_flight() < ctr.window:
                ctr.wake.set()
    except ConnectionClosed:
        return


async def chat_sender_drain(agent: Agent, errors: Errors) -> None:
    """The sender gets its own chats back (broadcast); read them and watch for refusals."""
    me = f'"{agent.name}"'
    try:
        async for raw in agent.ws:
            agent.frames += 1
            if isinstance(raw, str) and '"error"' in raw and me in raw:
                obj = json.loads(raw)
                if obj.get("type") == "error":
                    errors.add("error frame", obj)
    except ConnectionClosed:
        return


def chat_payload(marker: str, seq: int) -> str:
    body = f"{marker}{seq:010d} "
    return body + "x" * max(0, CHAT_PAYLOAD_BYTES - len(body))


async def run_chat(args: argparse.Namespace) -> dict[str, Any]:
    """1 sender -> L listeners with a credit window; deliveries/s at the listeners."""
    tag = f"ch{args.tag}"
    st = LoopState()
    names = [f"bench/{tag}-send"] + [f"bench/{tag}-l{i:02d}" for i in range(args.listeners)]
    agents = await open_many(args.uri, names, args.parallel, st.errors)
    result: dict[str, Any] = {"connected": len(agents)}
    if len(agents) < len(names):
        await close_all(agents)
        result.update(ok=False, **st.errors.as_dict())
        return result
    sender, listeners = agents[0], agents[1:]
    marker = f"BENCH{tag}#"
    ctr = ChatCounter(len(listeners), args.window)
    send_times: dict[int, float] = {}
    lat: list[float] = []
    readers = [
        asyncio.create_task(chat_listener(a, i, ctr, marker, send_times, lat, st))
        for i, a in enumerate(listeners)
    ]
    readers.append(asyncio.create_task(chat_sender_drain(sender, st.errors)))
    await asyncio.sleep(0.3)  # let the presence broadcasts of the joins pass

    stalled = False

    async def send_loop() -> None:
        nonlocal stalled
        for seq in range(args.max_ops):
            if st.stop:
                return
            while ctr.in_flight() >= ctr.window:
                ctr.wake.clear()
                try:
                    # asyncio.timeout, not wait_for: no task per wait on this hot path.
                    async with asyncio.timeout(args.stall_timeout):
                        await ctr.wake.wait()
                except TimeoutError:
                    stalled = True
                    st.errors.add("stalled", {"sent": ctr.sent, "counts": list(ctr.counts)})
                    return
                if st.stop:
                    return
            if seq % 4 == 0:
                send_times[seq] = perf_counter()
            await sender.ws.send(frame_chat(sender.name, chat_payload(marker, seq)))
            ctr.sent += 1

    sender_task = asyncio.create_task(send_loop())
    await asyncio.sleep(args.warmup)
    pids = cpu_pids(args.hub_pid)
    s0 = CpuSample.take(pids)
    d0, sent0 = sum(ctr.counts), ctr.sent
    st.t_start = perf_counter()
    st.measuring = True
    await asyncio.sleep(args.duration)
    st.measuring = False
    t_end = perf_counter()
    s1 = CpuSample.take(pids)
    d1, sent1 = sum(ctr.counts), ctr.sent
    st.stop = True
    ctr.wake.set()
    await asyncio.wait([sender_task], timeout=args.drain_timeout)
    # Let every accepted message reach every listener (bounded), then check for loss.
    deadline = time.monotonic() + args.drain_timeout
    while min(ctr.counts) < ctr.sent and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    lost = ctr.sent * len(listeners) - sum(ctr.counts)
    await close_all(agents)
    for t in readers:
        t.cancel()

    elapsed = t_end - st.t_start
    deliveries = d1 - d0
    load = window_load(s0, s1)
    msgs = deliveries / len(listeners)
    result.update(
        ok=deliveries > 0 and not stalled and lost == 0 and st.errors.count == 0,
        elapsed_s=round(elapsed, 3),
        deliveries=deliveries,
        deliveries_per_s=deliveries / elapsed,
        messages_per_s=msgs / elapsed,
        sender_sent_per_s=(sent1 - sent0) / elapsed,
        total_sent=ctr.sent,
        lost_after_drain=lost,
        latency_ms=latency_summary_ms(lat),
        hub_cpu_ms_per_message=(load["hub_cpu_s"] * 1000 / msgs)
        if msgs and "hub_cpu_s" in load
        else None,
        hub_cpu_us_per_delivery=(load["hub_cpu_s"] * 1e6 / deliveries)
        if deliveries and "hub_cpu_s" in load
        else None,
        load=load,
        hub_rss_kib_end=hub_rss(args.hub_pid),
        **st.errors.as_dict(),
    )
    return result


def frame_chat(sender: str, payload: str) -> str:
    return json.dumps(
        {
            "sender": sender,
            "target": "all",
            "type": "chat",
            "payload": payload,
            "timestamp": time.time(),
        },
        separators=(",", ":"),
    )


# --------------------------------------------------------------------------- connections


async def who_round_trip(uri: str, name: str) -> dict[str, Any]:
    """Register one more agent and time a who_request -> who_snapshot round trip."""
    t0 = perf_counter()
    agent = await open_registered(uri, name)
    t1 = perf_counter()
    try:
        snap = await agent.request(
            "who_request", '"who_snapshot"', ("who_snapshot",), target="SynapseHub"
        )
    finally:
        t2 = perf_counter()
        await agent.close()
    online = snap.get("online_agents")
    return {
        "register_ms": round((t1 - t0) * 1000, 2),
        "who_ms": round((t2 - t1) * 1000, 2),
        "online_agents": len(online) if isinstance(online, list) else None,
        "connected_clients": snap.get("connected_clients"),
    }


async def run_connections(args: argparse.Namespace) -> dict[str, Any]:
    """Hub RSS idle and with C connected, registered, idle agents that keep draining."""
    errors = Errors()
    rss_idle = hub_rss(args.hub_pid)
    t0 = perf_counter()
    agents = await open_many(
        args.uri,
        [f"bench/idle{args.tag}-{i:03d}" for i in range(args.connections)],
        args.parallel,
        errors,
    )
    t_connect = perf_counter() - t0
    drains = [asyncio.create_task(a.drain_forever()) for a in agents]
    await asyncio.sleep(args.settle)
    rss_loaded = hub_rss(args.hub_pid)
    who: dict[str, Any] = {}
    try:
        who = await who_round_trip(args.uri, f"bench/idle{args.tag}-probe")
    except (OSError, InvalidHandshake, ConnectionClosed, WireError, TimeoutError) as exc:
        errors.add_exc(exc)
    rss_after_who = hub_rss(args.hub_pid)
    frames = sum(a.frames for a in agents)
    await close_all(agents)
    for t in drains:
        t.cancel()
    await asyncio.sleep(1.0)
    rss_after_close = hub_rss(args.hub_pid)
    per_conn = None
    if rss_idle and rss_loaded and agents:
        per_conn = (rss_loaded - rss_idle) / len(agents)
    online = who.get("online_agents")
    if isinstance(online, int) and online < len(agents) + 1:
        errors.add("who_snapshot lists fewer agents than are connected", who)
    return {
        "ok": len(agents) == args.connections and errors.count == 0,
        "connections": len(agents),
        "connect_s": round(t_connect, 3),
        "rss_idle_kib": rss_idle,
        "rss_loaded_kib": rss_loaded,
        "rss_after_who_kib": rss_after_who,
        "rss_after_close_kib": rss_after_close,
        "kib_per_connection": per_conn,
        "frames_received_per_agent": frames / len(agents) if agents else None,
        "who": who,
        **errors.as_dict(),
    }


# --------------------------------------------------------------------------- seed / verify


async def run_seed(args: argparse.Namespace) -> dict[str, Any]:
    """Write 50 live claims, 50 board tasks and N chats; remember what to verify later."""
    errors = Errors()
    tag = f"seed{args.tag}"
    agent = await open_registered(args.uri, f"bench/{tag}")
    t_start = perf_counter()
    claim_ids = [f"{tag}-claim-{i:03d}" for i in range(args.seed_live)]
    board_ids = [f"{tag}-board-{i:03d}" for i in range(args.seed_live)]
    try:
        for tid in claim_ids:
            await agent.request(
                "claim",
                f'"{tid}"',
                ("claim_granted",),
                ("claim_denied",),
                task_id=tid,
                worktree="seed",
                paths=[f"seed/{tid}.py"],
                ttl_seconds=30 * 24 * 3600,
                note="restart benchmark",
            )
        for tid in board_ids:
            await agent.request(
                "ledger_task",
                f'"{tid}"',
                ("ledger_task_posted",),
                task_id=tid,
                title=f"board task {tid}",
                description="restart benchmark",
            )
    except (WireError, ConnectionClosed) as exc:
        errors.add_exc(exc)
        await agent.close()
        return {"ok": False, **errors.as_dict()}
    t_state = perf_counter()

    marker = f"BENCH{tag}#"
    total = args.seed_chats
    echoes = 0
    last_raw: str | None = None
    wake = asyncio.Event()
    sent = 0

    async def reader() -> None:
        nonlocal echoes, last_raw
        async for raw in agent.ws:
            if isinstance(raw, str):
                if marker in raw:
                    echoes += 1
                    last_raw = raw
                    if sent - echoes < args.window or echoes >= total:
                        wake.set()
                elif '"error"' in raw:
                    errors.add("error frame", json.loads(raw))

    rtask = asyncio.create_task(reader())
    try:
        for seq in range(total):
            while sent - echoes >= args.window:
                wake.clear()
                async with asyncio.timeout(args.stall_timeout):
                    await wake.wait()
            await agent.ws.send(frame_chat(agent.name, chat_payload(marker, seq)))
            sent += 1
        while echoes < total:
            wake.clear()
            async with asyncio.timeout(args.stall_timeout):
                await wake.wait()
    except (TimeoutError, ConnectionClosed) as exc:
        errors.add_exc(exc)
    rtask.cancel()
    t_end = perf_counter()
    await agent.close()
    last_msg_id = json.loads(last_raw).get("msg_id") if last_raw else None
    return {
        "ok": errors.count == 0 and echoes == total,
        "tag": tag,
        "claims": claim_ids,
        "board_tasks": board_ids,
        "chats": total,
        "chats_echoed": echoes,
        "events": len(claim_ids) + len(board_ids) + echoes,
        "last_msg_id": last_msg_id,
        "state_s": round(t_state - t_start, 3),
        "chat_s": round(t_end - t_state, 3),
        "chats_per_s": echoes / max(t_end - t_state, 1e-9),
        "hub_rss_kib_end": hub_rss(args.hub_pid),
        **errors.as_dict(),
    }


async def verify_seed(
    uri: str, name: str, claims: list[str], board: list[str], expect_msg_id: int | None
) -> dict[str, Any]:
    """state_request / board_request / one chat: did the seeded state come back?"""
    agent = await open_registered(uri, name)
    out: dict[str, Any] = {}
    state: JSONDict = {}
    try:
        state = await agent.request(
            "state_request",
            '"state_snapshot"',
            ("state_snapshot",),
            target="SynapseHub",
            request_id=f"{name}-state",
        )
        snap = state.get("snapshot") or {}
        active = {c.get("task_id") for c in snap.get("active_claims", []) if isinstance(c, dict)}
        out["claims_found"] = sum(1 for c in claims if c in active)
        out["claims_expected"] = len(claims)
        b = await agent.request(
            "board_request", '"board_snapshot"', ("board_snapshot",), target="SynapseHub"
        )
        tasks = (b.get("board") or {}).get("tasks", [])
        present = {t.get("task_id") for t in tasks if isinstance(t, dict)}
        out["board_found"] = sum(1 for t in board if t in present)
        out["board_expected"] = len(board)
        marker = f"BENCHverify-{name}#"
        chat = await agent.request(
            "chat", f'"{chat_payload(marker, 0)}"', ("chat",), payload=chat_payload(marker, 0)
        )
        out["msg_id"] = chat.get("msg_id")
        out["msg_id_expected"] = expect_msg_id
    finally:
        await agent.close()
    out["ok"] = (
        out.get("claims_found") == len(claims)
        and out.get("board_found") == len(board)
        and (expect_msg_id is None or out.get("msg_id") == expect_msg_id)
    )
    if not out["ok"]:
        out["state_frame_head"] = json.dumps(state)[:2000]
    return out


async def wait_ready(
    get_uri: Callable[[], str | None],
    timeout: float,
    name: str,
    who: bool = True,
    alive: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Retry connect + register (+ who round trip) until it succeeds or ``timeout`` passes.

    ``get_uri`` is polled because some hubs only say where they listen once they are up.
    ``alive`` lets the caller stop waiting for a hub process that already exited.
    """
    t0 = perf_counter()
    attempts = 0
    last_error = ""
    uri: str | None = None
    while perf_counter() - t0 < timeout:
        if not alive():
            return {"ok": False, "error": "hub exited", "attempts": attempts}
        uri = uri or get_uri()
        if uri is None:
            await asyncio.sleep(0.002)
            continue
        attempts += 1
        try:
            agent = await open_registered(uri, f"{name}-{attempts}", open_timeout=5.0)
        except (OSError, InvalidHandshake, ConnectionClosed, WireError, TimeoutError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.01)
            continue
        try:
            if who:
                await agent.request(
                    "who_request", '"who_snapshot"', ("who_snapshot",), target="SynapseHub"
                )
        except (ConnectionClosed, WireError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            await agent.close()
            await asyncio.sleep(0.01)
            continue
        t_ready = perf_counter()
        await agent.close()
        return {
            "ok": True,
            "uri": uri,
            "ready_s": t_ready - t0,
            "t_ready": t_ready,
            "attempts": attempts,
        }
    return {"ok": False, "error": f"timeout; last: {last_error}", "attempts": attempts, "uri": uri}


# --------------------------------------------------------------------------- CLI


SCENARIOS: dict[str, Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    "claim": run_closed_loop,
    "echo": run_closed_loop,
    "chat": run_chat,
    "connections": run_connections,
    "seed": run_seed,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--uri", required=True, help="ws://HOST:PORT of the hub (or echo server)")
    p.add_argument("--hub-pid", type=int, default=None, help="hub PID, for CPU and RSS from /proc")
    p.add_argument("--scenario", required=True, choices=[*SCENARIOS, "verify", "ready"])
    p.add_argument("--tag", default="0", help="makes names and task ids unique per run")
    p.add_argument("--json", type=Path, default=None, help="write the result here (else stdout)")
    p.add_argument("--agents", type=int, default=10)
    p.add_argument("--duration", type=float, default=6.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--drain-timeout", type=float, default=10.0)
    p.add_argument("--max-ops", type=int, default=1_000_000, help="per agent (bounds every loop)")
    p.add_argument("--parallel", type=int, default=16, help="connections opened at a time")
    p.add_argument("--listeners", type=int, default=10)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--stall-timeout", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--seed-chats", type=int, default=100_000)
    p.add_argument("--seed-live", type=int, default=50)
    p.add_argument("--seed-result", type=Path, default=None, help="verify: the seed JSON")
    p.add_argument("--expect-msg-id", type=int, default=None)
    p.add_argument("--timeout", type=float, default=900.0, help="hard limit for the whole scenario")
    return p.parse_args(argv)


async def _main_async(args: argparse.Namespace) -> dict[str, Any]:
    async with asyncio.timeout(args.timeout):
        if args.scenario == "verify":
            if args.seed_result is None:
                raise SystemExit("verify needs --seed-result")
            seed = json.loads(args.seed_result.read_text())
            return await verify_seed(
                args.uri,
                f"bench/verify{args.tag}",
                seed["claims"],
                seed["board_tasks"],
                args.expect_msg_id,
            )
        if args.scenario == "ready":
            return await wait_ready(lambda: args.uri, args.timeout, f"bench/ready{args.tag}")
        return await SCENARIOS[args.scenario](args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    try:
        result = asyncio.run(_main_async(args))
    except TimeoutError:
        result = {"ok": False, "errors": 1, "error_samples": [{"what": "scenario timeout"}]}
    result = {
        "scenario": args.scenario,
        "uri": args.uri,
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "started_at": started,
        **result,
    }
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
