"""Coding agents driven over their own protocols (ACP), below the producers that run them."""
