"""Renders ``benchmarks/results/RELIABILITY.md`` and the figures block of ``docs/reliability.md``.

    .venv/bin/python benchmarks/reliability/report.py             # from the newest results
    .venv/bin/python benchmarks/reliability/report.py FILE.json    # print one result's section

Each run script calls this after writing its JSON. For each kind (fuzz, sigkill, load) the
newest result at the default size is used (a smaller run only when there is none, and then it is
marked as such). docs/reliability.md is prose written by people; only the part between
``<!-- reliability-figures:begin -->`` and ``<!-- reliability-figures:end -->`` is replaced.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE.parent / "results"
DOC = REPO / "docs" / "reliability.md"
BEGIN = "<!-- reliability-figures:begin -->"
END = "<!-- reliability-figures:end -->"

DEFAULT_SIZE = {
    "fuzz": lambda s: s.get("frames") == 10_000,
    "sigkill": lambda s: s.get("rounds") == 10,
    "load": lambda s: s.get("agents") == 200 and s.get("seconds") == 60,
}
SCRIPT = {"fuzz": "fuzz.py", "sigkill": "sigkill.py", "load": "load.py"}


def newest(results: Path) -> dict[str, tuple[Path, dict[str, Any], bool]]:
    out: dict[str, tuple[Path, dict[str, Any], bool]] = {}
    for path in sorted(results.glob("reliability-*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        kind = r.get("kind")
        if kind not in DEFAULT_SIZE:
            continue
        full = DEFAULT_SIZE[kind](r.get("settings", {}))
        have = out.get(kind)
        if have is None or full >= have[2]:  # files sort by time: newest wins, full size first
            out[kind] = (path, r, full)
    return out


def n(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return "–" if v is None else str(v)


def mb(kib: Any) -> str:
    return "–" if not kib else f"{kib / 1024:.1f} MB"


def provenance(r: dict[str, Any], path: Path, full: bool) -> str:
    g = r.get("git", {})
    m = r.get("machine", {})
    dirty = g.get("dirty_marrow_tui") or []
    tree = (f"commit `{g.get('commit_short')}` plus uncommitted edits to {len(dirty)} file(s) "
            f"under marrow_tui/" if dirty else f"commit `{g.get('commit_short')}` (clean marrow_tui/)")
    size = "" if full else " **(smaller than the default size: a smoke run)**"
    return (f"`{path.name}`, {r.get('date')}, {tree}; {m.get('cpus')} cores "
            f"({m.get('cpu_model')}), Python {m.get('python')}{size}")


def headline(found: dict[str, tuple[Path, dict[str, Any], bool]]) -> list[str]:
    rows = ["| run | tried | survived | acked | lost | notes |", "|---|---|---|---|---|---|"]
    if "fuzz" in found:
        _, r, _ = found["fuzz"]
        s = r.get("summary", {})
        notes = (f"{n(s.get('tracebacks'))} traceback(s) in the hub's stderr, "
                 f"{n(s.get('closes_1011'))} 1011 close(s), {n(s.get('unexpected_outcomes'))} "
                 f"frame(s) not answered as promised ({n(s.get('malformed_that_changed_state'))} "
                 f"of them changed state)")
        rows.append(f"| fuzz ({n(s.get('frames_sent'))} hostile frames) | {n(r.get('tried'))} | "
                    f"{n(r.get('survived'))} | {n(s.get('witness_ops_acked'))} witness ops | "
                    f"{n(r.get('lost'))} | {notes} |")
    if "sigkill" in found:
        _, r, _ = found["sigkill"]
        s = r.get("summary", {})
        rows.append(f"| SIGKILL ({n(s.get('rounds'))} kills, {n(s.get('restarts_checked'))} "
                    f"checked starts) | {n(r.get('tried'))} | {n(r.get('survived'))} | "
                    f"{n(r.get('acked'))} | {n(r.get('lost'))} | "
                    f"{n(s.get('tracebacks'))} traceback(s) |")
    if "load" in found:
        _, r, _ = found["load"]
        s = r.get("summary", {})
        lat = s.get("latency_ms", {})
        rows.append(f"| load ({n(s.get('agents'))} agents × {n(s.get('seconds'))} s) | "
                    f"{n(r.get('tried'))} | {n(r.get('survived'))} | {n(r.get('acked'))} | "
                    f"{n(r.get('lost'))} | ack p50 {n(lat.get('p50'))} ms, p99 {n(lat.get('p99'))}"
                    f" ms; hub RSS peak {mb(s.get('hub_rss_kib', {}).get('peak_kib'))} |")
    return rows


def fuzz_section(path: Path, r: dict[str, Any], full: bool) -> list[str]:
    s = r.get("summary", {})
    out = ["## Fuzz", "", f"Source: {provenance(r, path, full)}.", ""]
    if r.get("error"):
        out += [f"**The run failed:** `{r['error']}`", ""]
    out += [
        f"* Frames sent: {n(s.get('frames_sent'))} in {n(s.get('fuzz_seconds'))} s "
        f"(seed {r['settings'].get('seed')}, {r['settings'].get('workers')} connections).",
        f"* Hub alive afterwards: {n(s.get('hub_alive_after'))}; answering: "
        f"{n(s.get('hub_answering_after'))}; exit code on SIGTERM: {n(s.get('hub_exit_code'))}; "
        f"restart on the same state: exit {n(s.get('restart_exit_code'))}.",
        f"* Tracebacks in the hub's stderr: **{n(s.get('tracebacks'))}**; 1011 closes: "
        f"{n(s.get('closes_1011'))}; probes unanswered: {n(s.get('probe_timeouts'))}.",
        f"* Witness: {n(s.get('witness_ops_acked'))} acked operations, lost: {n(r.get('lost'))}; "
        f"headless lines missing: {n(s.get('witness_output_lines_missing'))}.",
        f"* Hub RSS before / peak / after: {mb(s.get('hub_rss_kib', {}).get('before'))} / "
        f"{mb(s.get('hub_rss_kib', {}).get('peak'))} / {mb(s.get('hub_rss_kib', {}).get('after'))}.",
        "",
        "| category | frames | outcomes | expected | not as expected |",
        "|---|---|---|---|---|",
    ]
    unexpected = r.get("unexpected_by_category", {})
    for cat, outcomes in r.get("by_category", {}).items():
        total = sum(outcomes.values())
        if not total:
            continue
        shown = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1]))
        exp = ", ".join(r.get("expected", {}).get(cat, []))
        bad = unexpected.get(cat, 0)
        out.append(f"| {cat} | {n(total)} | {shown} | {exp} | {'**' + n(bad) + '**' if bad else 0} |")
    out += ["", "*refused*: an `error` or a denial addressed to the frame's sender; *accepted*: a "
            "grant, chat or private answer; *silent*: nothing; *closed:N*: the hub closed the "
            "socket with code N.", ""]
    byf = r.get("ctl_identifiers_by_field", {})
    if byf:
        acc = {f: c.get("accepted", 0) for f, c in byf.items() if c.get("accepted")}
        ref = sorted(f for f, c in byf.items() if not c.get("accepted"))
        out += ["Identifiers with control characters, lone surrogates, ESC or newlines:", "",
                f"* refused in: {', '.join('`' + f + '`' for f in ref) or 'none'}",
                f"* **accepted** in: {', '.join(f'`{f}` ({v})' for f, v in sorted(acc.items())) or 'none'}",
                ""]
    if r.get("tracebacks"):
        out += ["Tracebacks (the log line before each, and the exception):", ""]
        seen: dict[str, int] = {}
        for t in r["tracebacks"]:
            t = re.sub(r"character '[^']*' in position \d+", "character '…' in position N", t)
            seen[t] = seen.get(t, 0) + 1
        shown = len(r["tracebacks"])
        total = r.get("summary", {}).get("tracebacks", shown)
        if total > shown:
            out.append(f"(the first {shown} of {total})")
            out.append("")
        out += [f"* {v}× `{k}`" for k, v in seen.items()]
        out.append("")
    samples = r.get("unexpected_samples", {})
    if samples:
        out += ["Samples of frames not answered as expected:", ""]
        for cat, items in samples.items():
            for it in items[:2]:
                out.append(f"* {cat} → {it.get('outcome')}: `{str(it.get('frame'))[:160]}`")
        out.append("")
    return out


def sigkill_section(path: Path, r: dict[str, Any], full: bool) -> list[str]:
    s = r.get("summary", {})
    out = ["## SIGKILL", "", f"Source: {provenance(r, path, full)}.", ""]
    if r.get("error"):
        out += [f"**The run failed:** `{r['error']}`", ""]
    out += [
        f"{n(s.get('rounds'))} rounds of {r['settings'].get('agents')} agents plus one answerer; "
        f"SIGKILL after {', '.join(f'{x:.2f}' for x in s.get('kill_after_s', []))} s. "
        f"{n(s.get('restarts_checked'))} starts checked (after each kill, then after a clean "
        f"stop). Tracebacks: {n(s.get('tracebacks'))}. Live claims at the end: "
        f"{n(s.get('final_live_claims'))}.", "",
        "| kind | tried | acked | refused | in doubt (ack not received) | lost |",
        "|---|---|---|---|---|---|",
    ]
    for kind, v in r.get("per_kind", {}).items():
        lost = v.get("lost")
        out.append(f"| {kind} | {n(v.get('tried'))} | {n(v.get('acked'))} | {n(v.get('refused'))} "
                   f"| {n(v.get('in_doubt'))} | {'**' + n(lost) + '**' if lost else 0} |")
    beyond = s.get("chat_beyond_retention")
    if beyond:
        out += ["", f"{n(beyond)} acked chats were older than the 10,000 the hub keeps "
                "(a documented bound, not a loss)."]
    beyond = s.get("steer_beyond_retention")
    if beyond:
        out += ["", f"{n(beyond)} answered and acknowledged steering requests were older than "
                "the newest 500 answers, which is all the hub keeps of ended requests once their "
                "asker has acked them (protocol.md §5.3; the log keeps them all). They are not "
                "counted as checked or lost."]
    for c in r.get("checks", []):
        if c.get("samples"):
            out += ["", f"Missing after a start: {'; '.join(c['samples'][:5])}"]
            break
    out.append("")
    return out


def load_section(path: Path, r: dict[str, Any], full: bool) -> list[str]:
    s = r.get("summary", {})
    rss = s.get("hub_rss_kib", {})
    out = ["## Load", "", f"Source: {provenance(r, path, full)}.", ""]
    if r.get("error"):
        out += [f"**The run failed:** `{r['error']}`", ""]
    out += [
        f"{n(s.get('agents'))} agents for {n(s.get('seconds'))} s, mean think time "
        f"{r['settings'].get('think')} s: {n(s.get('ops_per_s'))} acked ops/s. Hub RSS idle "
        f"{mb(rss.get('idle_kib'))}, with the agents connected {mb(rss.get('connected_kib'))}, "
        f"peak {mb(rss.get('peak_kib'))}, end {mb(rss.get('end_kib'))}. Hub CPU "
        f"{n(s.get('hub_cores'))} cores; the agents' process {n(s.get('agents_process_cores'))} "
        f"cores (its loop lag p99 {n(s.get('agents_loop_lag_ms', {}).get('p99'))} ms); other "
        f"load on the machine {n(s.get('other_load_cores'))} cores. Frames received by the "
        f"agents: {n(s.get('frames_received_by_agents'))}. Restart: ready in "
        f"{n(s.get('restart_ready_s'))} s; tracebacks {n(s.get('tracebacks'))}.", "",
        "| kind | tried | acked | refused | in doubt | lost (live / after restart) | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, v in r.get("per_kind", {}).items():
        lat = v.get("latency_ms", {})
        lost = v.get("lost")
        out.append(f"| {kind} | {n(v.get('tried'))} | {n(v.get('acked'))} | {n(v.get('refused'))} "
                   f"| {n(v.get('in_doubt'))} | {'**' + n(lost) + '**' if lost else 0} | "
                   f"{n(lat.get('p50'))} | {n(lat.get('p99'))} | {n(lat.get('max'))} |")
    lat = s.get("latency_ms", {})
    out += [f"| **all** | {n(r.get('tried'))} | {n(r.get('acked'))} | | | {n(r.get('lost'))} | "
            f"{n(lat.get('p50'))} | {n(lat.get('p99'))} | {n(lat.get('max'))} |", ""]
    if r.get("errors"):
        out += ["First errors: " + "; ".join(f"`{e}`" for e in r["errors"][:5]), ""]
    return out


SECTIONS = {"fuzz": fuzz_section, "sigkill": sigkill_section, "load": load_section}


def render(found: dict[str, tuple[Path, dict[str, Any], bool]]) -> str:
    lines = [
        "# Reliability runs", "",
        "Generated by `benchmarks/reliability/report.py` from the JSON results in this folder; "
        "do not edit by hand. What the runs test and what we promise: "
        "[docs/reliability.md](../../docs/reliability.md). Re-run with one command each:", "",
        "```bash",
        ".venv/bin/python benchmarks/reliability/fuzz.py      # 10,000 hostile frames",
        ".venv/bin/python benchmarks/reliability/sigkill.py   # 10 SIGKILL rounds",
        ".venv/bin/python benchmarks/reliability/load.py      # 200 agents x 60 s",
        "```", "",
        *headline(found), "",
    ]
    for kind in ("fuzz", "sigkill", "load"):
        if kind in found:
            lines += SECTIONS[kind](*found[kind])
        else:
            lines += [f"## {kind}", "", f"No result yet: run `{SCRIPT[kind]}`.", ""]
    return "\n".join(lines).rstrip() + "\n"


def doc_block(found: dict[str, tuple[Path, dict[str, Any], bool]]) -> str:
    lines = [BEGIN, "",
             "_Generated from the JSON results by `benchmarks/reliability/report.py`; the full "
             "tables are in [benchmarks/results/RELIABILITY.md](../benchmarks/results/RELIABILITY.md)._",
             "", *headline(found), ""]
    for kind in ("fuzz", "sigkill", "load"):
        if kind in found:
            path, r, full = found[kind]
            lines.append(f"* {kind}: {provenance(r, path, full)}.")
    lines += ["", END]
    return "\n".join(lines)


def render_all(results: Path = RESULTS) -> None:
    found = newest(results)
    (results / "RELIABILITY.md").write_text(render(found))
    if results.resolve() == RESULTS.resolve() and DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            DOC.write_text(head + doc_block(found) + tail)


def main(argv: list[str]) -> int:
    if argv:
        path = Path(argv[0])
        r = json.loads(path.read_text())
        print("\n".join(SECTIONS[r["kind"]](path, r, DEFAULT_SIZE[r["kind"]](r["settings"]))))
        return 0
    render_all(RESULTS)
    print(f"wrote {RESULTS / 'RELIABILITY.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
