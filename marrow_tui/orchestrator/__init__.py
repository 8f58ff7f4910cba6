"""The Markdown issue orchestrator's pure parts (smol-symphony compatible).

tracker: the `issues/<State>/<ID>.md` folder; workflow: WORKFLOW.md (YAML + strict Liquid);
workspaces: per-issue workspace paths, hook environment, mark_done.md; rules: backoff,
eligibility, ordering, slot accounting and the continuation circuit breaker.

Nothing here imports Textual or asyncio: the dispatcher builds on these synchronously-tested
pieces. See docs in each module for the decisions taken where the Symphony spec and smol differ.
"""

from __future__ import annotations
