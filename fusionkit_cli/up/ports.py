"""Ports: free ones for endpoints without a port, and a clear report when a configured one is taken.

Configured ports are checked before anything is spawned:

    check_free("127.0.0.1", 8080, "the router (server.port / --port)")   # raises PortInUse, naming the holder
    port = free_port()
"""

from __future__ import annotations

import contextlib
import socket

import psutil

__all__ = ["PortInUse", "check_free", "free_port"]


class PortInUse(Exception):
    """A configured port is taken; the message names the port, what wanted it and (if psutil can tell) who holds it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _holder(port: int) -> str:
    with contextlib.suppress(psutil.AccessDenied, OSError):
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    proc = psutil.Process(conn.pid)
                    return f" by pid {conn.pid} ({' '.join(proc.cmdline()[:4]) or proc.name()})"
    return ""


def check_free(host: str, port: int, what: str) -> None:
    with socket.socket() as sock:
        # As uvicorn does: a port held only by TIME_WAIT connections is free to bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise PortInUse(f"port {port} for {what} is already in use{_holder(port)}; nothing was started") from None
