"""Attaching to a runtime that runs elsewhere: its state kept over the wire (mirror.py)."""
