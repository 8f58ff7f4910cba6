"""Where `marrow-tui web` may listen: the standard library only, so the command can refuse a
bind before loading the web server."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, tls: bool, operator_token: str | None) -> str | None:
    """Why `host` may not be served on, or None: beyond loopback, the page and the token's
    login go over the network, so both TLS and the operator token are required."""
    if is_loopback(host) or (tls and operator_token):
        return None
    return (f"refusing to serve the console on {host} without TLS and the operator token: "
            "anyone who can reach it could act as the operator; pass --tls-cert, --tls-key "
            "and --operator-token (or MARROW_OPERATOR_TOKEN), or bind 127.0.0.1")
