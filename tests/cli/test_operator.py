"""The operator's secret from the command line: `marrow-tui answer`, `steering cancel`,
`release --force` and `services stop`, as real processes against a real hub, with the token
read from the state dir, given with --operator-token or $MARROW_OPERATOR_TOKEN, or absent."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from marrow_tui.core.events import Event
from marrow_tui.hub.secrets import agent_key
from marrow_tui.protocol.frames import Outcome

from tests.support.hub import Hub
from tests.support.hubproc import REPO, clean_env

CLI_TIMEOUT = 30.0


async def cli(hub: Hub, *args: str, env: dict[str, str] | None = None,
              cwd: Path = REPO) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marrow_tui", *args, "--uri", hub.uri,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **(env or {})}, cwd=cwd)
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    assert process.returncode is not None
    assert "Traceback" not in err.decode(), err.decode()
    return process.returncode, out.decode(), err.decode()


def token(hub: Hub) -> str:
    return (hub.state_dir / "operator_token").read_text().strip()


async def test_answer_takes_the_operator_token_from_the_state_dir(hub: Hub,
                                                                  tmp_path: Path) -> None:
    alice = await hub.agent("demo/alice")
    rid = (await alice.request(("steer_opened",), type="steer_ask", question="ship?"))["id"]
    code, _, err = await cli(hub, "answer", rid, "yes", "--name", "cli/nobody",
                             "--state-dir", str(tmp_path / "elsewhere"))
    assert code == 1
    assert f"refused: Only an operator may answer {rid}. [not_operator]" in err
    # a run of ours is an agent: it never goes looking for the operator's token
    run = {"MARROW_AGENT": "cli/run", "MARROW_AGENT_KEY": agent_key(hub.state_dir, "cli/run"),
           "MARROW_STATE_DIR": str(hub.state_dir)}
    code, _, err = await cli(hub, "answer", rid, "yes", "--name", "cli/run", env=run)
    assert code == 1 and "[not_operator]" in err
    code, out, err = await cli(hub, "answer", rid, "yes", "--name", "cli/ann",
                               "--state-dir", str(hub.state_dir))
    assert code == 0, err
    assert f"answered {rid}" in out
    reply = await alice.until("steer_reply", id=rid)
    assert (reply["answer"], reply["answered_by"]) == ("yes", "cli/ann")


async def test_a_remote_operator_passes_the_token(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    first = (await alice.request(("steer_opened",), type="steer_ask", question="a?"))["id"]
    second = (await alice.request(("steer_opened",), type="steer_ask", question="b?"))["id"]
    code, _, err = await cli(hub, "answer", first, "no", "--name", "remote/ann",
                             "--operator-token", token(hub))
    assert code == 0, err
    code, out, err = await cli(hub, "steering", "cancel", second, "--name", "remote/ann",
                               env={"MARROW_OPERATOR_TOKEN": token(hub)})
    assert code == 0, err
    assert out.strip() == f"cancelled {second}"
    assert (await alice.until("steer_reply", id=second))["state"] == "cancelled"
    code, _, err = await cli(hub, "answer", second, "x", "--name", "remote/eve",
                             "--operator-token", "guess")
    assert code == 3
    assert "Invalid operator token." in err and "4010" in err


async def test_release_force_ends_another_agents_lease_only_when_asked(hub: Hub) -> None:
    alice = await hub.agent("demo/alice")
    await alice.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    ops = ["--name", "cli/ann", "--state-dir", str(hub.state_dir)]
    code, _, err = await cli(hub, "release", "T1", *ops)
    assert code == 1
    assert "held by demo/alice" in err and "--force" in err
    code, _, err = await cli(hub, "release", "T1", "--force", "--name", "cli/eve",
                             "--state-dir", str(hub.state_dir / "nope"))
    assert code == 1 and "owned by demo/alice" in err
    assert hub.runtime.state.claims.get("T1") is not None
    code, out, err = await cli(hub, "release", "T1", "--force", *ops)
    assert code == 0, err
    assert out.strip() == "released T1 (held by demo/alice)"
    released = await alice.until("release_granted", task_id="T1")
    assert released["released_by"] == "cli/ann"


async def test_the_cli_takes_its_name_back_as_the_operator(hub: Hub, tmp_path: Path) -> None:
    """`claim` then `release` are two sessions: the second takes back a name that holds a
    lease, which takes proof; on the hub's own machine the operator token is that proof."""
    ops = ["--name", "cli/ann", "--state-dir", str(hub.state_dir)]
    code, _, err = await cli(hub, "claim", "T1", "src", *ops)
    assert code == 0, err
    code, _, err = await cli(hub, "release", "T1", "--name", "cli/ann",
                             "--state-dir", str(tmp_path / "elsewhere"))
    assert code == 3 and "4016" in err and "agent key" in err
    code, out, err = await cli(hub, "release", "T1", *ops)
    assert code == 0, err
    assert hub.runtime.state.claims.get("T1") is None


async def test_a_permission_request_from_the_command_line(hub: Hub) -> None:
    """`steering` names a permission request's choices; `answer` takes only one of them."""
    runtime = hub.runtime
    event = runtime.state.steering.decide_ask(
        "OC-1", runtime.clock(), question="Allow execute: rm -rf build?",
        choices=["Allow once", "Reject"], kind="permission", session="OC-1-1")
    assert isinstance(event, Event)
    runtime.state.apply(event)
    runtime.submit(Outcome(events=[event]))
    await runtime.settled()
    rid = event.data["id"]
    code, out, err = await cli(hub, "steering", "--state-dir", str(hub.state_dir))
    assert code == 0, err
    assert out.splitlines()[-1] == f'{rid} asks permission: answer with one of "Allow once", ' \
                                   '"Reject"'
    code, _, err = await cli(hub, "answer", rid, "sure", "--state-dir", str(hub.state_dir))
    assert code == 1 and "[not_a_choice]" in err
    code, out, err = await cli(hub, "answer", rid, "Allow once",
                               "--state-dir", str(hub.state_dir))
    assert code == 0, err
    assert runtime.state.steering.get(rid).answer == "Allow once"  # type: ignore[union-attr]
