"""Who holds a claim: worker ids that say their host and pid, and whether that owner is gone."""

from __future__ import annotations

import os
import socket
import uuid

from miri.infra.processes import pid_alive

# Worker ids of the buses made in this process: a claim stamped with our pid but none of these ids
# was left by an earlier process that had the same pid (a restarted container's pid 1).
_OURS: set[str] = set()


def new_worker_id() -> str:
    """``host:pid:random``: unique per Bus, and tells a later process whether the owner died."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def adopt(worker_id: str) -> None:
    """``worker_id`` belongs to a Bus of this process."""
    _OURS.add(worker_id)


def owner_is_dead(worker_id: str) -> bool:
    """True only when ``worker_id`` names a process on this host that no longer exists."""
    parts = worker_id.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return worker_id not in _OURS
    return not pid_alive(pid)
