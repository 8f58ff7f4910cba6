"""The decider: frames in, decisions through the core, frames out; no I/O."""
