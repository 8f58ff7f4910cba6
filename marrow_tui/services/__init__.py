"""Helper services: processes started in dependency order, health-checked and restarted.

`graph` (pure: waves, cycles, the text `marrow-tui graph` prints), `supervisor` (the processes),
`hosting` (their place in the runtime). The config model is in `marrow_tui.config`. Nothing is
imported here, so `config` can use `graph` without importing the rest.
"""
