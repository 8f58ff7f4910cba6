"""Run synapse-channel's own packaged golden demo against a marrow-tui hub, unmodified.

Run with an interpreter that has synapse-channel installed (never a dependency of ours):
    SYNAPSE_PYTHON tests/hub/compat/synapse_golden_demo.py ws://127.0.0.1:PORT

`synapse_channel.demo.run_coordination_demo` takes no hub URL: it starts a disposable
in-process SynapseHub through `demo_scenario._start_local_hub(hub, port)` and points both
scripted agents, the file-claim guard and the dashboard read at the URI that returns. We
replace only that one seam, so every frame of the scenario goes to our hub instead, and leave
the rest of the demo (agents, guard, verified receipt, the checks on the hub's replies) as
shipped. Exits non-zero, with the demo's own error, when an invariant fails.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from synapse_channel import demo_scenario
from synapse_channel.demo import run_coordination_demo


def point_demo_at(uri: str) -> None:
    async def external_hub(hub: Any, port: int = 0) -> tuple[asyncio.Task[None], str]:
        # The demo cancels and awaits the "server" task on the way out: give it an idle one.
        idle = asyncio.create_task(asyncio.Event().wait())
        return idle, uri

    demo_scenario._start_local_hub = external_hub  # type: ignore[assignment]


def main(uri: str) -> None:
    point_demo_at(uri)
    result = asyncio.run(run_coordination_demo())
    if not result.completed:
        raise SystemExit("golden demo: not completed")
    print(f"golden demo: completed, {len(result.steps)} steps, "
          f"local receipt {result.receipt['epistemic_status']}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
