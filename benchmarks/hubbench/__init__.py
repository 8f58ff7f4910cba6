"""Side-by-side benchmark of marrow-tui's hub, synapse-channel's hub and a bare echo server.

The package is split so that each piece can be run and trusted on its own:

* ``driver``      hub-agnostic client scenarios; talks to any ``--uri`` over WebSocket only.
* ``echo_server`` the transport ceiling: a bare websockets echo server.
* ``hubs``        starts and stops hub processes (each ended by its own PID).
* ``runner``      the orchestrator: fresh hub per cell, interleaved, raw JSON out.
* ``report``      renders ``results/RESULTS.md`` from the raw JSON.
* ``procinfo``    ``/proc`` readers (CPU, RSS, machine-wide load).
* ``stats``       percentiles and median/min/max summaries.

Nothing here imports marrow_tui or synapse_channel: both hubs are black boxes behind a socket.
"""
