"""Secrets generated on first start into the data dir (0600) unless given by the environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from miri.config import Settings
from miri.infra.crypto import new_key


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        # An empty JWT key would let anyone sign tokens; never run on one.
        raise RuntimeError(f"{path} is empty; delete it to generate a new key, or restore it")
    return value


def _read_or_create(path: Path) -> str:
    if path.exists():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a private temporary file, then linked into place: the key file appears
    # complete or not at all, and when processes start at once exactly one link wins and all
    # read the same key.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(new_key() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return _read(path)


def jwt_secret(settings: Settings) -> str:
    return settings.jwt_secret or _read_or_create(settings.data_dir / "keys" / "jwt.key")


def data_key(settings: Settings) -> str:
    return settings.data_key or _read_or_create(settings.data_dir / "keys" / "data.key")


def redis_password(settings: Settings, *, create: bool) -> str | None:
    """The embedded Redis's password: made when it must listen on TCP (for a replica).

    Over the unix socket (mode 0700) no password is needed; a loopback TCP port is open to every
    local user, so from then on every client of that data dir authenticates.
    """
    path = settings.data_dir / "keys" / "redis.key"
    if create:
        return _read_or_create(path)
    return _read(path) if path.exists() else None
