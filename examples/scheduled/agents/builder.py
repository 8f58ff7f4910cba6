#!/usr/bin/env python3
"""A tiny scheduled agent that works through the tasks in its prompt.

Each task is claimed as a lease on the hub (`marrow-tui claim`), worked on, then released, so
the console's Claims pane shows what the builder holds while it runs.
"""

import os
import re
import subprocess
import sys
import time

prompt = sys.stdin.read()
tasks = re.findall(r"^## (.+)$", prompt.split("--- [Tasks] ---", 1)[-1], re.M) \
    if "--- [Tasks] ---" in prompt else []
session = os.environ.get("MARROW_SESSION", "local")


def hub(*args: str) -> None:
    subprocess.run(["marrow-tui", *args], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=15, check=False)


if not tasks:
    print("no tasks queued; nothing to build", flush=True)
    sys.exit(0)
for number, title in enumerate(tasks, 1):
    lease = f"{session}-{number}"
    hub("claim", lease, f"src/{number}", "--note", title)
    for step in range(1, 4):
        print(f"[{number}/{len(tasks)}] {title}: step {step}/3", flush=True)
        time.sleep(1)
    hub("release", lease)
print(f"built {len(tasks)} task(s): {', '.join(tasks)}")
