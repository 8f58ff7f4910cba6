"""Load run: 200 agents for 60 s on a real hub; every acked operation checked, live and after a restart.

    .venv/bin/python benchmarks/reliability/load.py             # 200 agents x 60 s, about 2 minutes
    .venv/bin/python benchmarks/reliability/load.py --agents 20 --seconds 5 --no-report   # smoke

``marrow-tui --no-ui`` with its default settings on 127.0.0.1 and a fresh temp state directory.
``--agents`` connections (opened 16 at a time) each loop for ``--seconds``: think for a random
time (exponential, mean ``--think`` s), then one operation from a realistic mix (claim a new task
on its own path, release one of its own claims, post a broadcast chat, declare a board task,
read the board) and wait for its ack. Every grant, broadcast chat and board post is broadcast
to every agent, so the agents also drain the others' traffic, as real ones do.

Afterwards every acked operation is checked against ``state_request``, ``board_request`` and
``history_request``; then the hub gets SIGTERM, starts again on the same directory, and the
check runs again. Figures: operations tried / acked / lost per kind, ack latency p50/p99 (from
the send to the ack, measured in the agents' process: when that process is saturated it adds
its own delay, so its CPU and event-loop lag are recorded too), and the hub's RSS and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relcommon import (
    add_run_options, check_chats, count_tracebacks, execute, Hub, hub_kind, latency_summary_ms,
    log, Peer, PeerClosed, proc_rss_kib, read_board, read_history, read_state, ReplyTimeout,
    write_result,
)

from hubbench.procinfo import CpuSample, window_load  # noqa: E402 (relcommon set the path)

MIX = {"claim": 35, "release": 20, "chat": 20, "ledger_task": 15, "board_request": 10}
KINDS = tuple(MIX)


@dataclass
class Book:
    tried: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    doubt: Counter[str] = field(default_factory=Counter)
    lat: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    claims: dict[str, tuple[str, int]] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)
    release_doubt: set[str] = field(default_factory=set)
    chats: dict[str, int] = field(default_factory=dict)
    board: dict[str, str] = field(default_factory=dict)   # task id -> creator
    errors: list[str] = field(default_factory=list)


async def agent_loop(peer: Peer, idx: int, rng: random.Random, book: Book, think: float,
                     until: float) -> None:
    me = peer.name
    mine: list[str] = []
    kinds, weights = list(MIX), list(MIX.values())
    n = 0
    await asyncio.sleep(rng.uniform(0, think))
    while time.monotonic() < until:
        n += 1
        op = rng.choices(kinds, weights)[0]
        if op == "release" and not mine:
            op = "claim"
        book.tried[op] += 1
        t0 = time.perf_counter()
        try:
            if op == "claim":
                tid = f"L-{idx}-{n}"
                got = await peer.request("claim", f'"{tid}"', ("claim_granted",), ("claim_denied",),
                                         timeout=30, task_id=tid, worktree="load",
                                         paths=[f"src/a{idx}/f{n}.py"], note="load run")
                ok = got.get("type") == "claim_granted"
                if ok:
                    book.claims[tid] = (me, got["epoch"])
                    mine.append(tid)
            elif op == "release":
                tid = mine.pop(rng.randrange(len(mine)))
                book.release_doubt.add(tid)
                got = await peer.request("release", f'"{tid}"', ("release_granted",),
                                         ("release_denied",), timeout=30, task_id=tid,
                                         epoch=book.claims[tid][1], evidence=["load run"])
                book.release_doubt.discard(tid)
                ok = got.get("type") == "release_granted"
                if ok:
                    book.released.add(tid)
            elif op == "chat":
                cid = f"lc-{idx}-{n}"
                got = await peer.request("chat", f'"{cid}"', ("chat",), timeout=30,
                                         payload=f"agent {idx} says {n}", client_msg_id=cid)
                ok = got.get("type") == "chat"
                if ok:
                    book.chats[cid] = got["msg_id"]
            elif op == "ledger_task":
                tid = f"B-{idx}-{n}"
                got = await peer.request("ledger_task", f'"{tid}"', ("ledger_task_posted",),
                                         timeout=30, task_id=tid, title=f"board task {n}",
                                         project="load")
                ok = got.get("type") == "ledger_task_posted"
                if ok:
                    book.board[tid] = me
            else:
                got = await peer.request("board_request", '"board_snapshot"', ("board_snapshot",),
                                         timeout=30, target="SynapseHub")
                ok = got.get("type") == "board_snapshot"
        except (PeerClosed, ReplyTimeout, OSError) as exc:
            book.doubt[op] += 1
            if len(book.errors) < 10:
                book.errors.append(f"{me} {op}: {type(exc).__name__} {exc}")
            return
        if ok:
            book.acked[op] += 1
            book.lat[op].append(time.perf_counter() - t0)
        else:
            book.refused[op] += 1
            if len(book.errors) < 10:
                book.errors.append(f"{me} {op}: {got.get('type')} {str(got.get('payload'))[:100]}")
        await asyncio.sleep(min(rng.expovariate(1.0 / think), max(0.0, until - time.monotonic())))


async def verify(uri: str, book: Book, who: str) -> dict[str, Any]:
    peer = await Peer.open(uri, who)
    try:
        live = await read_state(peer)
        board = await read_board(peer)
        history = await read_history(peer)
    finally:
        await peer.close()
    lost: Counter[str] = Counter()
    samples: list[str] = []
    for tid, (owner, epoch) in book.claims.items():
        if tid in book.released or tid in book.release_doubt:
            continue
        c = live.get(tid)
        if c is None or c.get("epoch") != epoch or c.get("owner") != owner:
            lost["claim"] += 1
            samples.append(f"claim {tid}")
    for tid in book.released:
        if tid in live:
            lost["release"] += 1
            samples.append(f"release {tid} live again")
    for tid, creator in book.board.items():
        t = board.get(tid)
        if t is None or t.get("created_by") != creator:
            lost["ledger_task"] += 1
            samples.append(f"board {tid}")
    chats = check_chats(book.chats, history)
    lost["chat"] = chats["lost"]
    return {"lost": dict(lost), "lost_total": sum(lost.values()), "live_claims": len(live),
            "board_tasks": len(board), "history": len(history),
            "chat_beyond_retention": chats["beyond_retention"], "samples": samples[:10]}


async def loop_lag(stop: asyncio.Event, out: list[float]) -> None:
    """How late a 50 ms sleep wakes up in the agents' process (its own saturation)."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.05)
        out.append(time.perf_counter() - t - 0.05)


async def run(args: argparse.Namespace, result: dict[str, Any], tmp: Path) -> None:
    kind = hub_kind(args.python, [], cwd=tmp)
    result["hub_argv"] = kind.build_argv(0, Path("STATE_DIR"))
    hub = Hub(kind, tmp / "state", tmp / "hub1.out", tmp / "hub1.err").start()
    book = Book()
    rss: dict[str, Any] = {}
    try:
        uri = await hub.ready(30)
        rss["idle_kib"] = proc_rss_kib(hub.pid)
        sem = asyncio.Semaphore(16)

        async def open_one(i: int) -> Peer:
            async with sem:
                return await Peer.open(uri, f"rel/load{i:03d}", timeout=30)

        t_open = time.perf_counter()
        peers = await asyncio.gather(*(open_one(i) for i in range(args.agents)))
        open_s = time.perf_counter() - t_open
        await asyncio.sleep(1.0)
        rss["connected_kib"] = proc_rss_kib(hub.pid)
        log(f"hub pid {hub.pid}: {len(peers)} agents connected in {open_s:.1f}s; "
            f"running {args.seconds:.0f}s, think {args.think}s")
        rng = random.Random(args.seed)
        stop = asyncio.Event()
        lags: list[float] = []
        rss_samples: list[int] = []

        async def sample() -> None:
            while not stop.is_set():
                rss_samples.append(proc_rss_kib(hub.pid) or 0)
                await asyncio.sleep(1.0)

        side = [asyncio.ensure_future(loop_lag(stop, lags)), asyncio.ensure_future(sample())]
        cpu0 = CpuSample.take({"hub": hub.pid, "agents": "self"})
        until = time.monotonic() + args.seconds
        t0 = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(agent_loop(p, i, random.Random(rng.random()), book, args.think, until)
                             for i, p in enumerate(peers))), args.seconds + 120)
        wall = time.perf_counter() - t0
        cpu = window_load(cpu0, CpuSample.take({"hub": hub.pid, "agents": "self"}))
        stop.set()
        await asyncio.gather(*side)
        rss["peak_kib"] = max(rss_samples, default=None)
        rss["end_kib"] = proc_rss_kib(hub.pid)
        frames_in = sum(p.frames for p in peers)
        for p in peers:
            await p.close()
        check_live = await verify(uri, book, "rel/check-live")
        log(f"live check: lost {check_live['lost_total']}")
        stop1 = hub.stop(60)
        err = hub.stderr_text()
        hub2 = Hub(kind, tmp / "state", tmp / "hub2.out", tmp / "hub2.err").start()
        try:
            t1 = time.perf_counter()
            uri2 = await hub2.ready(60)
            restart_s = time.perf_counter() - t1
            check_restart = await verify(uri2, book, "rel/check-restart")
            log(f"restart check: lost {check_restart['lost_total']}")
        finally:
            stop2 = hub2.stop(60)
        err += hub2.stderr_text()
        lost = Counter()
        for c in (check_live, check_restart):
            for k, v in c["lost"].items():
                lost[k] = max(lost[k], v)
        all_lat = [x for v in book.lat.values() for x in v]
        per_kind = {k: {"tried": book.tried[k], "acked": book.acked[k], "refused": book.refused[k],
                        "in_doubt": book.doubt[k], "lost": lost[k] if k != "board_request" else 0,
                        "latency_ms": latency_summary_ms(book.lat[k])} for k in KINDS}
        lag_sorted = sorted(lags)
        result.update({
            "tried": sum(book.tried.values()),
            "acked": sum(book.acked.values()),
            "lost": sum(lost.values()),
            "survived": hub2.proc is not None and stop1.get("exit_code") == 0
            and count_tracebacks(err) == 0,
            "per_kind": per_kind,
            "summary": {
                "agents": len(peers), "seconds": round(wall, 1), "connect_s": round(open_s, 2),
                "ops_per_s": round(sum(book.acked.values()) / wall, 1),
                "latency_ms": latency_summary_ms(all_lat),
                "hub_rss_kib": rss,
                "hub_cores": round(cpu.get("hub_cores", 0), 3),
                "agents_process_cores": round(cpu.get("agents_cores", 0), 3),
                "other_load_cores": round(cpu.get("other_cores", 0), 3),
                "agents_loop_lag_ms": latency_summary_ms(lag_sorted),
                "frames_received_by_agents": frames_in,
                "restart_ready_s": round(restart_s, 2),
                "tracebacks": count_tracebacks(err),
                "exit_codes": [stop1.get("exit_code"), stop2.get("exit_code")],
            },
            "check_live": check_live,
            "check_after_restart": check_restart,
            "errors": book.errors,
        })
    finally:
        hub.stop(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=200, help="agents (default 200)")
    p.add_argument("--seconds", type=float, default=60, help="seconds of load (default 60)")
    p.add_argument("--think", type=float, default=1.0,
                   help="mean think time between an agent's operations, s (default 1.0)")
    p.add_argument("--seed", type=int, default=1)
    add_run_options(p)
    args = p.parse_args(argv)
    result = execute("load", args, run, args.seconds + 600)
    log(f"tried {result.get('tried')} acked {result.get('acked')} lost {result.get('lost')} | "
        f"{json.dumps(result.get('summary'))}")
    write_result("load", result, args.results_dir, args.tag, report=not args.no_report)
    return 0 if result.get("lost") == 0 and "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
