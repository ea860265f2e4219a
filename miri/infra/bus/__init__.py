"""The event bus: a transactional outbox in the database and an asyncio dispatcher.

Publishing is ``bus.record(conn, event)`` inside the ``db.write`` job that makes the change, so the
event exists exactly when the change does: one ``outbox`` row, plus one ``deliveries`` row per
consumer subscribed to its type. After commit ``bus.notify()`` wakes the dispatcher, which
otherwise polls every half second for rows written by other processes.

Delivery is at least once. A consumer makes the effect exactly once by calling
``Bus.first_time(conn, consumer, event_id)`` inside its own write job and doing nothing when it
returns False; since the job is all-or-nothing, a handler that fails half-way leaves no mark.

The parts: ``bus`` (the Bus that modules publish through and the server starts),
``subscriptions`` (who handles what), ``dispatcher`` (claims, delivery, retries, dead letters,
reaping dead workers), ``owners`` (worker ids, and whether their process is gone), ``views``
(what operators see and replay) and ``sqlite_store`` (every statement the bus runs).
"""

from miri.infra.bus.bus import Bus
from miri.infra.bus.subscriptions import Batched, Handler
from miri.infra.bus.views import BusViews

__all__ = ["Batched", "Bus", "BusViews", "Handler"]
