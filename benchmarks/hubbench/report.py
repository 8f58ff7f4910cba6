"""Renders ``results/RESULTS.md`` from the raw run files in ``results/``.

Each section is taken from the newest run file that contains it (full runs before quick ones),
so re-running one section refreshes that section only; the file each table came from is named
under it. Ratios are always computed inside one run file, between hubs that were interleaved.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .stats import summary

Record = dict[str, Any]
MIB = 1024.0
TARGETS = {
    "claims_vs_synapse": 3.0,
    "claims_vs_echo": 0.5,
    "chat_vs_synapse": 5.0,
    "restart_s": 1.5,
    "rss_bytes": 80_000_000,
}


# --------------------------------------------------------------------------- loading


def load_runs(results_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("schema") == 1:
            doc["_file"] = path.name
            runs.append(doc)
    return runs


def pick_run(runs: list[dict[str, Any]], section: str) -> dict[str, Any] | None:
    """Newest run holding records of this section; full runs win over quick ones."""
    having = [r for r in runs if any(x.get("section") == section for x in r.get("records", []))]
    if not having:
        return None
    return max(
        having, key=lambda r: (r.get("mode") == "full", r.get("completed", False), r["name"])
    )


# --------------------------------------------------------------------------- formatting


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def cell(values: Iterable[float | None], digits: int = 1) -> str:
    """``median [min–max] (n)`` over runs."""
    s = summary(values)
    if not s["n"]:
        return "–"
    if s["n"] == 1:
        return fmt(s["median"], digits)
    return f"{fmt(s['median'], digits)} [{fmt(s['min'], digits)}–{fmt(s['max'], digits)}]"


def med(values: Iterable[float | None]) -> float | None:
    m = summary(values)["median"]
    return None if m is None else float(m)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value < target
    return "**PASS**" if ok else "**FAIL**"


def dig(rec: Record, *path: str) -> Any:
    cur: Any = rec
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def hub_label(run: dict[str, Any], name: str) -> str:
    return str(dig(run, "hubs", name, "label") or name)


# --------------------------------------------------------------------------- sections


def replay_cost(ready: float | None, empty: float | None) -> float | None:
    return None if ready is None or empty is None else ready - empty


def records(run: dict[str, Any] | None, section: str, scenario: str | None = None) -> list[Record]:
    if run is None:
        return []
    return [
        r
        for r in run.get("records", [])
        if r.get("section") == section and (scenario is None or r.get("scenario") == scenario)
    ]


def values(recs: list[Record], *path: str, ok_only: bool = True) -> list[float | None]:
    return [dig(r, *path) for r in recs if r.get("ok") or not ok_only]


def claims_section(run: dict[str, Any] | None, verdicts: list[list[str]]) -> list[str]:
    out = ["## 1. Claim + release round trips (durability on for both hubs)", ""]
    if run is None:
        return out + ["Not measured.", ""]
    agents = sorted({r["params"]["agents"] for r in records(run, "claims")})
    rows: list[list[str]] = []
    ratio_rows: list[list[str]] = []
    for n in agents:
        per_hub = {
            h: [r for r in records(run, "claims") if r["hub"] == h and r["params"]["agents"] == n]
            for h in ("ours", "synapse", "echo")
        }
        for h, recs in per_hub.items():
            if not recs:
                continue
            is_echo = h == "echo"
            ok = [r for r in recs if r.get("ok")]
            rows.append(
                [
                    str(n),
                    hub_label(run, h),
                    "–" if is_echo else cell(values(recs, "result", "ops_per_s")),
                    cell(values(recs, "result", "round_trips_per_s"), 0),
                    cell(values(recs, "result", "rtt_ms" if is_echo else "claim_rtt_ms", "p50"), 2),
                    cell(values(recs, "result", "rtt_ms" if is_echo else "claim_rtt_ms", "p99"), 2),
                    cell(values(recs, "result", "hub_cpu_ms_per_op"), 2),
                    cell(values(recs, "result", "frames_received_per_op"), 1),
                    cell(
                        [
                            (dig(r, "result", "frames_received_per_op") or 0)
                            * (dig(r, "result", "ops_per_s") or 0)
                            for r in ok
                        ],
                        0,
                    ),
                    cell(values(recs, "result", "load", "hub_cores"), 2),
                    cell(values(recs, "result", "load", "driver_cores"), 2),
                    cell(values(recs, "result", "load", "other_cores", ok_only=False), 2),
                    f"{len(ok)}/{len(recs)}",
                ]
            )
        ours = med(values(per_hub["ours"], "result", "ops_per_s"))
        syn = med(values(per_hub["synapse"], "result", "ops_per_s"))
        ours_rt = med(values(per_hub["ours"], "result", "round_trips_per_s"))
        echo_rt = med(values(per_hub["echo"], "result", "round_trips_per_s"))
        r_syn, r_echo = ratio(ours, syn), ratio(ours_rt, echo_rt)
        ratio_rows.append(
            [
                str(n),
                fmt(r_syn, 2) + "×" if r_syn else "–",
                verdict(r_syn, TARGETS["claims_vs_synapse"]),
                fmt(r_echo, 2) + "×" if r_echo else "–",
                verdict(r_echo, TARGETS["claims_vs_echo"]),
            ]
        )
        verdicts.append(
            [
                f"claims, {n} agent(s): ours ≥ 3× synapse pairs/s",
                fmt(r_syn, 2) + "×" if r_syn else "–",
                verdict(r_syn, 3.0),
            ]
        )
        verdicts.append(
            [
                f"claims, {n} agent(s): ours ≥ 0.5× echo round trips/s",
                fmt(r_echo, 2) + "×" if r_echo else "–",
                verdict(r_echo, 0.5),
            ]
        )
    out += table(
        [
            "agents",
            "hub",
            "pairs/s",
            "round trips/s",
            "claim RTT p50 ms",
            "claim RTT p99 ms",
            "hub CPU ms/op",
            "frames recv/op",
            "frames recv/s",
            "hub cores",
            "driver cores",
            "other load cores",
            "runs ok",
        ],
        rows,
    )
    out += [
        "",
        (
            "Cells are median [min–max] over runs. For the hubs an *op* is one claim+release pair (two "
            "request→reply round trips); for the echo server one frame out and back. *frames recv/op* "
            "counts every frame all agents received per op: grants are broadcast to every socket, so a "
            "hub sends 2 + 2N frames per pair while the echo server sends one; *frames recv/s* is "
            "the resulting transport work (what the ≥ 0.5× echo target does not account for). The "
            "echo row's *claim RTT* is its frame round trip. *hub cores* and *driver cores* are CPU "
            "used in the window (1.0 = one core of the two); *other load* is the rest of the "
            "machine's busy time (other tenants of this VM)."
        ),
        "",
    ]
    out += table(
        ["agents", "ours ÷ synapse (pairs/s)", "≥ 3×", "ours ÷ echo (round trips/s)", "≥ 0.5×"],
        ratio_rows,
    )
    out += ["", f"Source: `results/{run['_file']}`.", ""]
    return out


def chat_section(run: dict[str, Any] | None, verdicts: list[list[str]]) -> list[str]:
    out = ["## 2. Chat fan-out: 1 sender → 10 listeners, window 32, 64-byte payload", ""]
    if run is None:
        return out + ["Not measured.", ""]
    rows = []
    meds: dict[str, float | None] = {}
    for h in ("ours", "synapse"):
        recs = [r for r in records(run, "chat") if r["hub"] == h]
        if not recs:
            continue
        meds[h] = med(values(recs, "result", "deliveries_per_s"))
        rows.append(
            [
                hub_label(run, h),
                cell(values(recs, "result", "deliveries_per_s"), 0),
                cell(values(recs, "result", "messages_per_s"), 0),
                cell(values(recs, "result", "latency_ms", "p50"), 1),
                cell(values(recs, "result", "latency_ms", "p99"), 1),
                cell(values(recs, "result", "hub_cpu_us_per_delivery"), 1),
                cell(values(recs, "result", "lost_after_drain", ok_only=False), 0),
                cell(values(recs, "result", "load", "hub_cores"), 2),
                cell(values(recs, "result", "load", "driver_cores"), 2),
                cell(values(recs, "result", "load", "other_cores", ok_only=False), 2),
                f"{sum(1 for r in recs if r.get('ok'))}/{len(recs)}",
            ]
        )
    out += table(
        [
            "hub",
            "deliveries/s (listener receipts)",
            "messages/s",
            "latency p50 ms",
            "latency p99 ms",
            "hub CPU µs/delivery",
            "lost",
            "hub cores",
            "driver cores",
            "other load cores",
            "runs ok",
        ],
        rows,
    )
    r = ratio(meds.get("ours"), meds.get("synapse"))
    verdicts.append(
        ["chat: ours ≥ 5× synapse deliveries/s", fmt(r, 2) + "×" if r else "–", verdict(r, 5.0)]
    )
    out += [
        "",
        (
            f"ours ÷ synapse deliveries/s: **{fmt(r, 2)}×** (target ≥ 5×: {verdict(r, 5.0)}). "
            "Latency is send → listener 0 with 32 messages in flight, so it is mostly queueing."
        ),
        "",
        f"Source: `results/{run['_file']}`.",
        "",
    ]
    return out


def restart_section(run: dict[str, Any] | None, verdicts: list[list[str]]) -> list[str]:
    out = ["## 3. Restart on a seeded state", ""]
    if run is None:
        return out + ["Not measured.", ""]
    seed_rows, start_rows = [], []
    for h in ("ours", "synapse"):
        seeds = [r for r in records(run, "restart", "seed") if r["hub"] == h]
        if not seeds:
            continue
        sd = seeds[0]
        res = sd.get("result") or {}
        seed_rows.append(
            [
                hub_label(run, h),
                "ok" if sd.get("ok") else "**FAILED**",
                fmt(res.get("events")),
                fmt(res.get("last_msg_id")),
                fmt(res.get("chats_per_s"), 0),
                fmt(sd.get("seed_wall_s"), 1),
                fmt((sd.get("state_bytes") or 0) / 1e6, 1),
            ]
        )
        empties = [r for r in records(run, "restart", "empty_start") if r["hub"] == h]
        restarts = [r for r in records(run, "restart", "restart") if r["hub"] == h]
        ready = [dig(r, "ready", "ready_s") for r in restarts if dig(r, "ready", "ok")]
        empty = [dig(r, "ready", "ready_s") for r in empties if dig(r, "ready", "ok")]
        checks = []
        for r in restarts:
            v = r.get("verify") or {}
            if v.get("ok"):
                checks.append("ok")
            else:
                checks.append(
                    f"claims {v.get('claims_found')}/{v.get('claims_expected')}, board "
                    f"{v.get('board_found')}/{v.get('board_expected')}, msg_id {v.get('msg_id')} "
                    f"(want {v.get('msg_id_expected')}){' ' + v['error'] if v.get('error') else ''}"
                )
        start_rows.append(
            [
                hub_label(run, h),
                cell(empty, 2),
                cell(ready, 2),
                ", ".join(fmt(x, 2) for x in ready) or "–",
                fmt(replay_cost(med(ready), med(empty)), 2),
                "; ".join(checks) or "–",
                cell([(dig(r, "rss_kib") or 0) / MIB for r in restarts], 1),
            ]
        )
        if h == "ours":
            m = med(ready)
            if not checks:
                v = "not measured"
            elif all(c == "ok" for c in checks):
                v = verdict(m, TARGETS["restart_s"], higher_is_better=False)
            else:
                v = "**FAIL** (state not verified)"
            label = f"restart: ours ready < 1.5 s on {fmt(res.get('events'))} events"
            verdicts.append([label, fmt(m, 2) + " s" if m else "–", v])
    out += table(
        ["hub", "seed", "events", "last msg_id", "seed chats/s", "seed wall s", "state on disk MB"],
        seed_rows,
    )
    out += [""]
    out += table(
        [
            "hub",
            "empty start s",
            "restart → ready s",
            "each restart s",
            "≈ replay cost s",
            "verified after restart",
            "RSS after restart MiB",
        ],
        start_rows,
    )
    out += [
        "",
        (
            "*ready* = spawn → first successful connect + `welcome` + "
            "`who_request`/`who_snapshot` round trip. *verified* = `state_request` lists all 50 "
            "seeded claims, `board_request` all 50 seeded board tasks, and a new chat gets the next "
            "`msg_id`. The seed writes 50 claims (30-day TTL) and 50 board tasks first, then the "
            "chats; SIGTERM and wait between starts."
        ),
        "",
        f"Source: `results/{run['_file']}`.",
        "",
    ]
    return out


def memory_section(run: dict[str, Any] | None, verdicts: list[list[str]]) -> list[str]:
    out = ["## 4. Memory: hub RSS idle and with 200 registered idle agents", ""]
    if run is None:
        return out + ["Not measured.", ""]
    rows = []
    for h in ("ours", "synapse"):
        recs = [r for r in records(run, "memory") if r["hub"] == h]
        if not recs:
            continue
        loaded = values(recs, "result", "rss_loaded_kib")
        rows.append(
            [
                hub_label(run, h),
                cell(
                    [
                        None if v is None else v / MIB
                        for v in values(recs, "result", "rss_idle_kib")
                    ],
                    1,
                ),
                cell([None if v is None else v / MIB for v in loaded], 1),
                cell(values(recs, "result", "kib_per_connection"), 0),
                cell(values(recs, "result", "connect_s"), 2),
                cell(values(recs, "result", "who", "who_ms"), 1),
                cell(
                    [
                        None if v is None else v / MIB
                        for v in values(recs, "result", "rss_after_close_kib")
                    ],
                    1,
                ),
                f"{sum(1 for r in recs if r.get('ok'))}/{len(recs)}",
            ]
        )
        if h == "ours":
            m = med(loaded)
            mb = None if m is None else m * 1024 / 1e6
            verdicts.append(
                [
                    "memory: ours < 80 MB RSS with 200 agents",
                    fmt(mb, 1) + " MB" if mb else "–",
                    verdict(mb, TARGETS["rss_bytes"] / 1e6, higher_is_better=False),
                ]
            )
    out += table(
        [
            "hub",
            "idle RSS MiB",
            "RSS with 200 agents MiB",
            "KiB per connection",
            "connect 200 (16 at a time) s",
            "who RTT with 200 connected ms",
            "RSS after they leave MiB",
            "runs ok",
        ],
        rows,
    )
    out += [
        "",
        "80 MB target = 80,000,000 bytes (76.3 MiB).",
        "",
        f"Source: `results/{run['_file']}`.",
        "",
    ]
    return out


def failures_section(runs: list[dict[str, Any] | None]) -> list[str]:
    out = ["## Failures and anomalies", ""]
    seen = set()
    n = 0
    for run in runs:
        if run is None or run["_file"] in seen:
            continue
        seen.add(run["_file"])
        for h, desc in (run.get("hubs") or {}).items():
            if desc.get("unavailable_reason"):
                out.append(f"- `{run['_file']}`: **{h}**: {desc['unavailable_reason']}")
                n += 1
        noisy = [r for r in run.get("records", []) if r.get("ok") and r.get("noisy")]
        if noisy:
            n += 1
            measured = sum(1 for r in run.get("records", []) if "noisy" in r)
            limit = dig(run, "settings", "noisy_other_cores")
            cells = ", ".join(
                f"{r.get('scenario')} {r.get('hub')} {json.dumps(r.get('params') or {})} rep {r.get('rep')}"
                for r in noisy
            )
            out.append(
                f"- `{run['_file']}`: {len(noisy)} of {measured} measured runs kept with other "
                f"load above {limit} cores after the retries (a shared VM; see *other load* in "
                f"the tables): {cells}."
            )
        unclean = [
            r
            for r in run.get("records", [])
            if dig(r, "stop", "killed") or dig(r, "stop", "exit_code") not in (0, None)
        ]
        if unclean:
            n += 1
            out.append(
                f"- `{run['_file']}`: {len(unclean)} hub process(es) did not exit cleanly on "
                "SIGTERM: "
                + ", ".join(f"{r.get('hub')} {r.get('scenario')} {r.get('stop')}" for r in unclean)
            )
        for r in run.get("records", []):
            if r.get("ok"):
                continue
            n += 1
            res = r.get("result") or {}
            out.append(
                f"- `{run['_file']}`: {r.get('section')}/{r.get('scenario')} **{r.get('hub')}** "
                f"{json.dumps(r.get('params') or {})} rep {r.get('rep')}: FAILED"
            )
            detail = {
                k: v
                for k, v in {
                    "ready": None if dig(r, "ready", "ok") else r.get("ready"),
                    "errors": res.get("errors"),
                    "error_samples": res.get("error_samples"),
                    "verify": None if dig(r, "verify", "ok") in (True, None) else r.get("verify"),
                    "hub_alive_after": r.get("hub_alive_after"),
                    "stop": r.get("stop") if not r.get("ok") else None,
                }.items()
                if v not in (None, 0, [])
            }
            if detail:
                out.append("  ```json")
                out += [
                    "  " + line
                    for line in json.dumps(detail, indent=1, default=str)[:4000].splitlines()
                ]
                out.append("  ```")
            tail = r.get("hub_log_tail")
            if tail:
                out.append("  hub log tail:")
                out.append("  ```")
                out += ["  " + line[:300] for line in tail[-15:]]
                out.append("  ```")
    if n == 0:
        out.append("None.")
    out.append("")
    return out


def machine_section(run: dict[str, Any]) -> list[str]:
    m = run.get("machine") or {}
    s = run.get("settings") or {}
    rows = [
        ["CPU", f"{m.get('cpus')} × {m.get('cpu_model')}"],
        ["RAM", f"{m.get('mem_total_gib')} GiB"],
        ["kernel / Python", f"{m.get('kernel')} / CPython {m.get('python')}"],
        [
            "repo commit",
            (m.get("repo_commit") or "(none yet)")
            + (" + uncommitted changes" if m.get("repo_dirty") else ""),
        ],
        [
            "targets",
            "; ".join(f"{n}: {d.get('label')}" for n, d in (run.get("hubs") or {}).items()),
        ],
        [
            "settings",
            (
                f"{s.get('runs')} runs per cell, {s.get('duration')} s measured after "
                f"{s.get('warmup')} s warm-up, quiet wait ≤ {s.get('quiet_max_wait')} s for "
                f"< {s.get('quiet_busy_cores')} busy cores, retry when other load > "
                f"{s.get('noisy_other_cores')} cores (≤ {s.get('tries')} tries)"
            ),
        ],
        ["command", f"`{run.get('command')}` ({run.get('wall_s')} s wall)"],
    ]
    note = (
        "Absolute numbers depend on this VM's CPU and its other tenants; the numbers in "
        "`shared/reference/synapse-protocol.md` §9 came from a different CPU. Compare hubs "
        "within one run (they were interleaved), not across documents."
    )
    return ["## Machine and run", "", *table(["item", "value"], rows), "", note, ""]


def index_section(runs: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            f"`{r['_file']}`",
            str(r.get("mode")),
            "yes" if r.get("completed") else "no",
            ", ".join(r.get("sections", [])),
            ", ".join(n for n, d in (r.get("hubs") or {}).items() if d.get("available")),
            fmt(r.get("wall_s"), 0),
        ]
        for r in sorted(runs, key=lambda r: r["name"], reverse=True)
    ]
    return (
        ["## All runs in results/", ""]
        + table(["file", "mode", "completed", "sections", "targets", "wall s"], rows)
        + [""]
    )


def render(runs: list[dict[str, Any]], forced: dict[str, Any] | None = None) -> str:
    picks: dict[str, dict[str, Any] | None] = {
        sec: (forced if forced is not None else pick_run(runs, sec))
        for sec in ("claims", "chat", "restart", "memory")
    }
    verdicts: list[list[str]] = []
    builders: list[tuple[str, Callable[[dict[str, Any] | None, list[list[str]]], list[str]]]] = [
        ("claims", claims_section),
        ("chat", chat_section),
        ("restart", restart_section),
        ("memory", memory_section),
    ]
    body: list[str] = []
    for sec, build in builders:
        body += build(picks[sec], verdicts)
    main_run = forced or next(
        (picks[s] for s in ("claims", "chat", "restart", "memory") if picks[s]), None
    )
    out = [
        "# Hub benchmark results",
        "",
        (
            "Generated by `benchmarks/run_hub_bench.py` from the raw JSON in this directory; do not "
            "edit by hand (regenerate with `python benchmarks/run_hub_bench.py --report-only`). How "
            "the numbers are made and how to read them: `benchmarks/README.md`."
        ),
        "",
        "## Targets",
        "",
    ]
    out += table(["target", "measured (median ratio or value)", "verdict"], verdicts)
    out += [""]
    if main_run:
        out += machine_section(main_run)
    out += body
    out += failures_section(list(picks.values()))
    out += index_section(runs)
    return "\n".join(out)


def write_results_md(results_dir: Path, source: Path | None) -> Path:
    runs = load_runs(results_dir)
    forced = None
    if source is not None:
        forced = json.loads(source.read_text())
        forced["_file"] = source.name
    out = results_dir / "RESULTS.md"
    out.write_text(render(runs, forced))
    return out
