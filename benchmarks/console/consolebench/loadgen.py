"""The agents: N WebSocket connections from one separate process, each paced at R frames/s.

Run by the console process (which measures this process's CPU through /proc)::

    python -m consolebench.loadgen --uri ws://127.0.0.1:PORT --agents 100 --rate 10

Line protocol on stdin/stdout, so the console process decides when the load runs:

* after connecting, registering and sending the setup frames it prints ``READY {json}``;
* ``GO`` on stdin starts the paced load; ``STOP`` ends it and it prints ``RESULT {json}``;
* it then waits (bounded) for the hub to close the sockets, and exits. ``--max-seconds`` bounds
  the whole process whatever happens.

The mix, per agent and per second (10 slots of 100 ms, each agent at its own phase and slot
offset): 3 ``task_update`` status changes (claimed -> working <-> input_required) on the claims it
holds, 2 ``checkpoint``, 2 ``ledger_progress`` notes on its own board task, 1 ``claim`` of a new
task on its own path, 1 ``release`` of its oldest claim (so every agent holds 3-4 live claims and
rows come and go in the claims table), and 1 ``chat`` (to the next agent; every 4th to all).
Every frame but chat carries ``bench_t`` (this process's ``time.monotonic()`` at send, the same
clock as the console process's on Linux), which the console process uses for event -> row latency;
the hub ignores unknown fields.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import random
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import urlparse

from .leanws import LeanAgent, open_agent

SLOTS = ("task_update", "checkpoint", "progress", "claim", "task_update", "chat", "checkpoint",
         "release", "progress", "task_update")
NEXT_STATUS = {"claimed": "working", "working": "input_required", "input_required": "working"}
HELD = 3
MAX_LATE = 0.5  # a slot more than this late is skipped, not sent in a burst


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Script:
    """What one agent sends next. Frames from one connection are handled in order, so a
    task_update right after a claim always finds the claim; nothing waits for replies."""

    def __init__(self, index: int, n_agents: int, rng: random.Random, hold: int = HELD) -> None:
        self.index = index
        #: claims taken at setup (the attach benchmark holds 100 each: 10,000 in all)
        self.hold = hold
        self.short = f"a{index:03d}"
        self.name = f"bench/{self.short}"
        self.neighbour = f"bench/a{(index + 1) % n_agents:03d}"
        self.board_task = f"B-{self.short}"
        self.held: deque[str] = deque()
        self.status: dict[str, str] = {}
        self.tasks = 0
        self.k = rng.randrange(len(SLOTS))
        self.rot = 0
        self.notes = 0
        self.chats = 0

    def _frame(self, type_: str, **fields: Any) -> dict[str, Any]:
        return {"sender": self.name, "target": "all", "type": type_, "payload": "",
                "timestamp": time.time(), **fields}

    def register(self) -> str:
        return dumps(self._frame("heartbeat", target="System", payload="online",
                                 protocol_version=7, roles=["bench/worker"]))

    def setup(self) -> list[str]:
        # After an undeclared task, so the setup does not raise 100 "task is ready" toasts just
        # before the measurement (each newly ready task is one toast).
        out = [dumps(self._frame("ledger_task", task_id=self.board_task,
                                 title=f"work stream of {self.name}", depends_on=["B-plan"],
                                 suggested_owner=self.name))]
        for _ in range(self.hold):
            out.append(dumps(self._claim()))
        return out

    def _claim(self) -> dict[str, Any]:
        self.tasks += 1
        task_id = f"{self.short}-t{self.tasks:05d}"
        self.held.append(task_id)
        self.status[task_id] = "claimed"
        return self._frame("claim", task_id=task_id, worktree="bench",
                           paths=[f"agents/{self.short}/task{self.tasks}.py"],
                           ttl_seconds=900, note=f"task {self.tasks} of {self.name}")

    def _pick(self) -> str:
        self.rot += 1
        return self.held[self.rot % len(self.held)]

    def next(self) -> tuple[str, dict[str, Any]]:
        kind = SLOTS[self.k % len(SLOTS)]
        self.k += 1
        if kind == "claim":
            return kind, self._claim()
        if kind == "release":
            if len(self.held) <= 1:
                return self.next()
            task_id = self.held.popleft()
            self.status.pop(task_id, None)
            return kind, self._frame("release", task_id=task_id)
        if kind == "task_update":
            task_id = self._pick()
            status = NEXT_STATUS[self.status[task_id]]
            self.status[task_id] = status
            return kind, self._frame("task_update", task_id=task_id, status=status,
                                     note=f"{status} on step {self.k}")
        if kind == "checkpoint":
            task_id = self._pick()
            return kind, self._frame(
                "checkpoint", task_id=task_id,
                checkpoint=f"step={self.k} files=agents/{self.short}/task{self.tasks}.py "
                           f"tests=passing notes=refactor in progress")
        if kind == "progress":
            self.notes += 1
            return kind, self._frame("ledger_progress", task_id=self.board_task, kind="note",
                                     text=f"note {self.notes}: built step {self.k}, "
                                          f"{self.k % 17} tests left")
        self.chats += 1
        target = "all" if self.chats % 4 == 0 else self.neighbour
        return "chat", self._frame("chat", target=target,
                                   payload=f"{self.name} -> {target}: step {self.k} done, "
                                           f"looking at the next one")


class Pacer:
    """Sends every agent's next frame on its schedule: agent i at t_go + phase_i + k/rate."""

    def __init__(self, agents: list[LeanAgent], scripts: list[Script], rate: float,
                 rng: random.Random) -> None:
        self.agents = agents
        self.scripts = scripts
        self.period = 1.0 / rate
        self.rng = rng
        self.stop = False
        self.sent: dict[str, int] = {}
        self.lateness: list[float] = []
        self.skipped = 0
        self.per_second: dict[int, int] = {}
        self.t_go = 0.0
        self.t_end = 0.0

    async def run(self, max_seconds: float) -> None:
        now = time.monotonic
        self.t_go = t_go = now()
        deadline = t_go + max_seconds
        heap = [(t_go + self.rng.uniform(0, self.period), i) for i in range(len(self.agents))]
        heapq.heapify(heap)
        sent, lateness, per_second = self.sent, self.lateness, self.per_second
        period = self.period
        while not self.stop:
            t = now()
            if t >= deadline:
                break
            while heap[0][0] <= t:
                due, i = heap[0]
                late = t - due
                heapq.heapreplace(heap, (due + period, i))
                if late > MAX_LATE:
                    self.skipped += 1
                    continue
                kind, frame = self.scripts[i].next()
                if kind != "chat":
                    frame["bench_t"] = t = now()
                self.agents[i].send_text(dumps(frame))
                sent[kind] = sent.get(kind, 0) + 1
                lateness.append(late)
                second = int(t - t_go)
                per_second[second] = per_second.get(second, 0) + 1
            delay = heap[0][0] - now()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
        self.t_end = now()

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.lateness)

        def pct(q: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(q / 100 * len(lat)))] * 1000, 3)

        total = sum(self.sent.values())
        wall = max(self.t_end - self.t_go, 1e-9)
        return {
            "t_go": self.t_go,
            "t_end": self.t_end,
            "sent_by_kind": self.sent,
            "sent": total,
            "sent_per_s": round(total / wall, 1),
            "skipped_slots": self.skipped,
            "send_lateness_ms": {"p50": pct(50), "p99": pct(99),
                                 "max": round(lat[-1] * 1000, 3) if lat else None},
            "per_second": [self.per_second.get(s, 0) for s in range(int(wall) + 1)],
        }


async def read_line(reader: asyncio.StreamReader, timeout: float) -> str:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return ""
    return line.decode().strip()


async def main_async(args: argparse.Namespace) -> int:
    t_start = time.monotonic()
    cpu0 = time.process_time()
    url = urlparse(args.uri)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    rng = random.Random(args.seed)
    scripts = [Script(i, args.agents, rng, args.hold) for i in range(args.agents)]
    agents: list[LeanAgent | None] = [None] * args.agents
    failures: list[str] = []
    sem = asyncio.Semaphore(args.parallel)

    async def connect(i: int) -> None:
        async with sem:
            try:
                agent = await open_agent(host, port, scripts[i].name)
                agent.send_text(scripts[i].register())
                await asyncio.wait_for(agent.welcome, 10)
                agents[i] = agent
            except (OSError, ConnectionError, TimeoutError) as exc:
                failures.append(f"{scripts[i].name}: {exc!r}")

    await asyncio.wait_for(asyncio.gather(*(connect(i) for i in range(args.agents))),
                           args.max_seconds)
    live = [a for a in agents if a is not None]
    live_scripts = [s for s, a in zip(scripts, agents, strict=True) if a is not None]
    for agent, script in zip(live, live_scripts, strict=True):
        for text in script.setup():
            agent.send_text(text)
    print("READY " + json.dumps({"connected": len(live), "failures": failures[:5],
                                 "connect_s": round(time.monotonic() - t_start, 3)}), flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    remaining = args.max_seconds - (time.monotonic() - t_start)
    command = await read_line(reader, remaining)
    pacer = Pacer(live, live_scripts, args.rate, rng)
    if command == "GO" and live:
        run = asyncio.ensure_future(pacer.run(args.max_seconds - (time.monotonic() - t_start)))
        remaining = args.max_seconds - (time.monotonic() - t_start)
        stop = asyncio.ensure_future(read_line(reader, remaining))
        await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
        pacer.stop = True
        await run
        stop.cancel()
    result = {
        "agents": args.agents,
        "connected": len(live),
        "rate_per_agent": args.rate,
        "pacer": pacer.summary() if pacer.t_go else None,
        "frames_in": sum(a.frames_in for a in live),
        "bytes_in": sum(a.bytes_in for a in live),
        "frames_out": sum(a.frames_out for a in live),
        "errors": sum(a.errors for a in live),
        "error_samples": [s for a in live for s in a.error_samples][:5],
        "max_write_buffer": max((a.max_write_buffer for a in live), default=0),
        "closed_early": sum(1 for a in live if a.closed.done()),
        "process_cpu_s": round(time.process_time() - cpu0, 3),
    }
    print("RESULT " + json.dumps(result), flush=True)
    # The console process stops the hub, which closes every socket; bounded either way.
    pending = [a.closed for a in live if not a.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=max(1.0, min(15.0, args.max_seconds
                                                          - (time.monotonic() - t_start))))
    for agent in live:
        agent.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--uri", required=True)
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--rate", type=float, default=10.0, help="frames per second per agent")
    p.add_argument("--hold", type=int, default=HELD, help="claims each agent takes at setup")
    p.add_argument("--parallel", type=int, default=20, help="connections opened at a time")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=300.0, help="hard bound on the process")
    args = p.parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except TimeoutError:
        print("RESULT " + json.dumps({"error": "timeout"}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
