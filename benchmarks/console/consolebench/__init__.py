"""Console benchmark for marrow-tui: the console under 100 agents x 10 events/s, and 10,000 claims.

Two processes per measured run, as in real use:

* ``console_proc`` is marrow-tui's console process: runtime + hub + Textual app in one event
  loop (the app driven headless through Pilot at 120x40), with instruments that count screen
  updates, time event -> row and key -> screen, and watch the event loop for stalls.
* ``loadgen`` is the agents: N real WebSocket connections to the hub on 127.0.0.1 from a separate
  process, each paced at R frames/s with a realistic mix. It never imports marrow_tui or Textual.

``runner`` starts one console process per run (fresh state each time), interleaves scenarios and
repetitions, and writes the raw JSON; ``report`` renders ``results/CONSOLE.md`` from it.
``hubbench.procinfo`` and ``hubbench.stats`` (the hub benchmark's helpers) are reused.
"""
