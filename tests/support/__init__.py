"""Helpers the tests share: hubs, consoles, processes."""
