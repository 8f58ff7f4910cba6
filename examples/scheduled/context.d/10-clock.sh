#!/bin/sh
# Context scripts are executables; their output becomes a block of the prompt.
echo "now: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "agent: ${MARROW_AGENT:-?}"
