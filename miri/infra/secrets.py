"""Secrets generated on first start into the data dir (0600) unless given by the environment."""

from __future__ import annotations

import os
from pathlib import Path

from miri.config import Settings
from miri.infra.crypto import new_key


def _read_or_create(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = new_key()
    # O_EXCL: when two processes start at once, exactly one writes and both read the same key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def jwt_secret(settings: Settings) -> str:
    return settings.jwt_secret or _read_or_create(settings.data_dir / "keys" / "jwt.key")


def data_key(settings: Settings) -> str:
    return settings.data_key or _read_or_create(settings.data_dir / "keys" / "data.key")
