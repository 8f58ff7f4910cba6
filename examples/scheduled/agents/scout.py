#!/usr/bin/env python3
"""A tiny scheduled agent: reads its prompt on stdin, looks around, reports on the hub.

Everything an agent needs comes from its environment: MARROW_AGENT, MARROW_SESSION,
MARROW_WORKSPACE and MARROW_HUB_URI, so `marrow-tui send` reaches the console that runs it.
"""

import os
import subprocess
import sys
import time

prompt = sys.stdin.read()
name = os.environ.get("MARROW_AGENT", "scout")
blocks = [line for line in prompt.splitlines() if line.startswith("--- [")]
print(f"{name}: prompt of {len(prompt)} chars, blocks: {' '.join(blocks)}", flush=True)
for step in range(1, 6):
    print(f"looking around ({step}/5)", flush=True)
    time.sleep(1)
files = sum(len(names) for _, _, names in os.walk(os.getcwd()))
subprocess.run(["marrow-tui", "send", f"{name}: {files} files in my workspace, all quiet"],
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15, check=False)
print(f"done: {files} files seen")
