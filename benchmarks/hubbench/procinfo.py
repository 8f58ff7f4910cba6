"""Readers for ``/proc``: per-process CPU and RSS, machine-wide busy time, machine description.

Why ``/proc`` and not psutil: the driver must run from the project's own venv with no extra
dependency, and hub CPU per operation (``utime + stime`` of the hub PID) is the number that is
least sensitive to the noise of this shared VM.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK: int = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of one process (children not included)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def proc_rss_kib(pid: int | str) -> int | None:
    """VmRSS of a process in KiB, or None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass(frozen=True)
class SystemTimes:
    """Machine-wide CPU seconds from the first line of ``/proc/stat``."""

    wall: float
    busy: float
    steal: float

    @staticmethod
    def read() -> SystemTimes:
        with open("/proc/stat") as fh:
            parts = fh.readline().split()
        vals = [int(x) for x in parts[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = vals
        busy = user + nice + system + irq + softirq
        return SystemTimes(time.monotonic(), busy / CLK_TCK, steal / CLK_TCK)


@dataclass(frozen=True)
class CpuSample:
    """A snapshot that lets a window's other load be computed afterwards."""

    system: SystemTimes
    own: dict[str, float]

    @staticmethod
    def take(pids: dict[str, int | str]) -> CpuSample:
        own: dict[str, float] = {}
        for label, pid in pids.items():
            try:
                own[label] = proc_cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                own[label] = float("nan")
        return CpuSample(SystemTimes.read(), own)


def window_load(start: CpuSample, end: CpuSample) -> dict[str, float]:
    """CPU use between two samples, in cores (1.0 = one full core).

    ``other_cores`` is machine-wide busy time not explained by the processes we sampled: the
    other tenants of this VM (and our own orchestrator, which sleeps during a run).
    """
    wall = max(end.system.wall - start.system.wall, 1e-9)
    out: dict[str, float] = {"wall_s": wall}
    ours = 0.0
    for label in start.own:
        delta = end.own[label] - start.own[label]
        out[f"{label}_cpu_s"] = delta
        out[f"{label}_cores"] = delta / wall
        if not math.isnan(delta):
            ours += delta
    busy = end.system.busy - start.system.busy
    out["machine_busy_cores"] = busy / wall
    out["other_cores"] = max(0.0, (busy - ours) / wall)
    out["steal_cores"] = (end.system.steal - start.system.steal) / wall
    return out


def busy_cores(interval: float = 0.5) -> float:
    """Machine-wide busy cores measured over ``interval`` seconds."""
    a = SystemTimes.read()
    time.sleep(interval)
    b = SystemTimes.read()
    return (b.busy - a.busy) / max(b.wall - a.wall, 1e-9)


def wait_quiet(max_busy_cores: float, max_wait_s: float, interval: float = 0.5) -> dict[str, float]:
    """Wait (bounded) until the machine is quiet, so a run does not start inside someone's burst.

    Returns how long we waited and the last busy reading; the run goes ahead either way.
    """
    t0 = time.monotonic()
    last = busy_cores(interval)
    while last > max_busy_cores and time.monotonic() - t0 < max_wait_s:
        last = busy_cores(interval)
    return {"waited_s": round(time.monotonic() - t0, 2), "busy_cores_before": round(last, 3)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], check=False, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine_description(repo: Path) -> dict[str, object]:
    """What a reader needs to judge the numbers: CPU, RAM, kernel, Python, repo revision."""
    status = _git(repo, "status", "--porcelain")
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "mem_total_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "clk_tck": CLK_TCK,
        "repo_commit": _git(repo, "rev-parse", "HEAD"),
        "repo_dirty": bool(status) if status is not None else None,
    }
