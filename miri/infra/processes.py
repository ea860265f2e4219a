"""Questions about processes and ports on this host, answered one way everywhere."""

from __future__ import annotations

import os
import socket

import psutil


def pid_alive(pid: int, *, started_before: float | None = None) -> bool:
    """Whether process ``pid`` runs on this host (a zombie counts as gone).

    ``started_before`` (epoch seconds) also rejects a newer process that reused the pid. A pid
    we may not inspect is taken as alive: wrongly declaring a live owner dead would hand its
    work to another process twice.
    """
    if pid == os.getpid() and started_before is None:
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_before is None or proc.create_time() <= started_before
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
