"""Secrets generated on first start into the data dir (0600) unless given by the environment.

With a database URL several hosts serve one shop: each must sign and check tokens and decrypt
personal data with the same keys, so none may make its own. Such a host takes them from
``MIRI_JWT_SECRET`` / ``MIRI_DATA_KEY`` or from ``MIRI_KEYS_DIR`` (a shared secret mount holding
``jwt.key`` and ``data.key``), and refuses to start without them.
"""

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


class MissingSharedKey(RuntimeError):
    """A host of a shared database would have generated a key of its own."""


def _shared_or_local(settings: Settings, given: str | None, name: str, variable: str) -> str:
    if given:
        return given
    if settings.keys_dir is not None:
        path = settings.keys_dir / name
        if not path.exists():
            raise MissingSharedKey(f"{path} does not exist (MIRI_KEYS_DIR must hold {name})")
        return _read(path)
    local = settings.data_dir / "keys" / name
    if settings.database_url and not local.exists():
        raise MissingSharedKey(
            f"with a database URL every host must use the same keys: set {variable} (and the"
            " other key) or MIRI_KEYS_DIR pointing at a shared secret mount with jwt.key and"
            " data.key; `miri keys show` on the first host prints them"
        )
    return _read_or_create(local)


def jwt_secret(settings: Settings) -> str:
    return _shared_or_local(settings, settings.jwt_secret, "jwt.key", "MIRI_JWT_SECRET")


def data_key(settings: Settings) -> str:
    return _shared_or_local(settings, settings.data_key, "data.key", "MIRI_DATA_KEY")


def payment_webhook_secret(settings: Settings) -> str:
    """The key the payment provider signs its webhooks with (``MIRI_PAYMENT_WEBHOOK_SECRET``).

    A real provider hands it out and the operator sets it; the built-in test provider signs with
    the same key, so a lone shop may generate one. Hosts of a shared database must share it.
    """
    return _shared_or_local(
        settings,
        settings.payment_webhook_secret,
        "payment-webhook.key",
        "MIRI_PAYMENT_WEBHOOK_SECRET",
    )


def redis_password(settings: Settings, *, create: bool) -> str | None:
    """The embedded Redis's password: made when it must listen on TCP (for a replica).

    Over the unix socket (mode 0700) no password is needed; a loopback TCP port is open to every
    local user, so from then on every client of that data dir authenticates.
    """
    path = settings.data_dir / "keys" / "redis.key"
    if create:
        return _read_or_create(path)
    return _read(path) if path.exists() else None
