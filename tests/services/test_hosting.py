"""Services inside the runtime: events in the log, the hub's verbs, remembered ports, and
`marrow-tui services` against a real marrow-tui process running the example."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from marrow_tui.config.load import load_config
from marrow_tui.services.hosting import Services

from tests.support.hub import WAIT, start_hub
from tests.support.hubproc import REPO, clean_env, running_hub

EXAMPLE = REPO / "examples" / "services"


def example(tmp_path: Path) -> Path:
    """The example's services, in a folder of the test's own (python3 -> this Python)."""
    folder = tmp_path / "services"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".marrow"))
    config = folder / "marrow.toml"
    config.write_text(config.read_text().replace('"python3"', f'"{sys.executable}"'))
    return config


async def until(test: Callable[[], Any], timeout: float = WAIT * 3) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := test()):
            await asyncio.sleep(0.05)
    return value


def states(runtime: Any) -> dict[str, str]:
    return {n: v.state for n, v in runtime.state.services.services.items()}


async def test_services_start_in_order_report_events_and_keep_their_ports(
        tmp_path: Path) -> None:
    loaded = load_config(example(tmp_path))
    assert loaded.config is not None, loaded.diagnostics
    hub = await start_hub(tmp_path / "state")
    services = Services(hub.runtime, loaded.config, tmp_path / "state" / "services")
    seen: list[Any] = []
    hub.runtime.subscribe(lambda events: seen.extend(
        e.data for e in events if e.kind == "service_state"))
    try:
        await services.start()
        await until(lambda: states(hub.runtime) == {"db": "healthy", "cache": "healthy",
                                                    "api": "healthy"})
        healthy = [d["name"] for d in seen if d["state"] == "healthy"]
        assert healthy.index("api") > max(healthy.index("db"), healthy.index("cache"))
        token = (tmp_path / "state" / "operator_token").read_text().strip()
        ops = await hub.agent("ops", operator_token=token)  # restarting takes an operator
        listed = await ops.request(("services",), type="services_list")
        assert [r["name"] for r in listed["services"]] == ["db", "cache", "api"]
        assert "api" in listed["graph"] and "<- db, cache" in listed["graph"]
        old_pid = hub.runtime.state.services.services["db"].pid
        reply = await ops.request(("service_restarting", "error"), type="service_restart",
                                  name="db")
        assert reply["type"] == "service_restarting"
        await until(lambda: hub.runtime.state.services.services["db"].pid not in (None, old_pid)
                    and states(hub.runtime)["db"] == "healthy")
        refused = await ops.request(("error",), type="service_stop", name="nope")
        assert refused["error_code"] == "unknown_service"
        ports = dict(hub.runtime.state.services.ports)
        assert set(ports) == {"db", "cache", "api"}
    finally:
        await services.stop()
        await hub.stop()
    again = await start_hub(tmp_path / "state")
    try:
        assert again.runtime.state.services.ports == ports  # kept in the log
    finally:
        await again.stop()


def test_the_services_command_against_a_running_marrow_tui(tmp_path: Path) -> None:
    config = example(tmp_path)
    command = [sys.executable, "-m", "marrow_tui", "--no-ui", "--host", "127.0.0.1",
               "--port", "0", "--config", str(config), "--state-dir", str(tmp_path / "st")]
    with running_hub(command, tmp_path) as hub:
        # the operator on the hub's machine: the CLI reads the token from the state dir
        env = clean_env() | {"MARROW_HUB_URI": hub.uri, "MARROW_STATE_DIR": str(tmp_path / "st")}

        def marrow(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "marrow_tui", *args], env=env,
                                  capture_output=True, text=True, timeout=WAIT * 2,
                                  check=False)

        async def healthy() -> None:
            async with asyncio.timeout(WAIT * 3):
                while marrow("services").stdout.count("healthy") < 3:
                    await asyncio.sleep(0.1)

        asyncio.run(healthy())
        listed = marrow("services", "--graph")
        assert listed.returncode == 0
        assert listed.stdout.splitlines()[0].split()[:3] == ["SERVICE", "STATE", "PID"]
        assert "wave 2" in listed.stdout
        restarted = marrow("services", "restart", "cache")
        assert restarted.returncode == 0 and "cache" in restarted.stdout
        missing = marrow("services", "stop")
        assert missing.returncode == 2
        unknown = marrow("services", "stop", "nope")
        assert unknown.returncode == 1 and "unknown_service" in unknown.stderr
    output = "".join(hub.output)
    assert "service   api healthy" in output
    assert "service   api stopped" in output  # stopped on the way out


async def test_rows_of_the_last_run_are_not_shown_as_live(tmp_path: Path) -> None:
    """After a restart the log still holds the last run's states: every configured service
    starts out stopped, and one no longer in the config is gone from the list."""
    from marrow_tui.core.events import Event
    from marrow_tui.protocol.frames import Outcome

    hub = await start_hub(tmp_path / "state")
    old = [Event("service_state", {"name": n, "state": "healthy", "pid": 99999, "port": p,
                                   "since": 1.0, "at": 1.0})
           for n, p in (("db", 41000), ("gone", 41001))]
    for event in old:
        hub.runtime.state.apply(event)
    hub.runtime.submit(Outcome(events=old))
    await hub.stop()

    loaded = load_config(example(tmp_path))
    assert loaded.config is not None
    disabled = loaded.config.services[1].__class__(
        **{**{f: getattr(loaded.config.services[1], f)
              for f in loaded.config.services[1].__dataclass_fields__}, "enabled": False})
    config = loaded.config.__class__(
        **{**{f: getattr(loaded.config, f) for f in loaded.config.__dataclass_fields__},
           "services": (loaded.config.services[0], disabled)})
    hub = await start_hub(tmp_path / "state")
    services = Services(hub.runtime, config, tmp_path / "state" / "services")
    try:
        await services.start()
        book = hub.runtime.state.services.services
        assert "gone" not in book
        assert book["cache"].state == "disabled"
        assert book["db"].pid != 99999
        await until(lambda: states(hub.runtime).get("db") == "healthy")
    finally:
        await services.stop()
        await hub.stop()


async def test_the_book_lists_services_in_config_order_whatever_the_log_says(
        tmp_path: Path) -> None:
    """The console's pane and `marrow-tui services` show the order the config was written
    in (dependencies first), even when the log met the services in another order."""
    from marrow_tui.core.events import Event
    from marrow_tui.protocol.frames import Outcome

    hub = await start_hub(tmp_path / "state")
    old = [Event("service_state", {"name": n, "state": "healthy", "since": 1.0, "at": 1.0})
           for n in ("api", "cache", "db")]
    for event in old:
        hub.runtime.state.apply(event)
    hub.runtime.submit(Outcome(events=old))
    await hub.stop()

    loaded = load_config(example(tmp_path))
    assert loaded.config is not None
    hub = await start_hub(tmp_path / "state")
    services = Services(hub.runtime, loaded.config, tmp_path / "state" / "services")
    try:
        await services.start()
        book = hub.runtime.state.services
        assert [view.name for view in book.in_config_order()] == ["db", "cache", "api"]
    finally:
        await services.stop()
        await hub.stop()
