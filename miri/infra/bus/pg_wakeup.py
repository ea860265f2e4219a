"""Wakes this host's dispatcher when any host commits events (PostgreSQL ``LISTEN``).

On one SQLite file the publisher wakes its own dispatcher after the commit. With several hosts
the event may be committed by another host: each host keeps one connection listening on
``miri_outbox`` (notified by a trigger on ``outbox``) in a thread of its own, and a notice wakes
the dispatcher as a local publish would. The dispatcher's own timer stays as the fallback for
retries falling due and for a listener that lost its connection.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import psycopg

from miri.infra.leadership import KEEPALIVE

log = logging.getLogger(__name__)
CHANNEL = "miri_outbox"


class OutboxListener:
    def __init__(self, url: str, wake: Callable[[], None]) -> None:
        self._url = url
        self._wake = wake
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.notices = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="miri-outbox-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, **KEEPALIVE) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._notify_loop()  # whatever was committed while we were away
                    while not self._stopping.is_set():
                        got = sum(1 for _ in conn.notifies(timeout=1.0, stop_after=256))
                        if got:
                            self.notices += got
                            self._notify_loop()
            except psycopg.Error as exc:
                log.warning("outbox listener lost its connection (%s); reconnecting", exc)
                time.sleep(1.0)

    def _notify_loop(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop closed meanwhile
            pass
