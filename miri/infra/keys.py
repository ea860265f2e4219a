"""Every Redis key name the shop uses, in one place.

All keys start with ``miri:`` so an operator can tell the shop's keys from others on a shared
Redis. Goods keys share the ``miri:goods:`` prefix: the stock snapshot scans it.
"""

from __future__ import annotations

GOODS_PREFIX = "miri:goods:"
GOODS_DIRTY = "miri:goods:dirty"  # goods -> change counter, for the write-back
GOODS_REBUILD_LOCK = "miri:goods:rebuild-lock"
# The stock epoch live stock was loaded for (see goods/upkeep.py); written on the primary only,
# never replicated nor in the AOF, so a promoted replica or a restarted Redis has none.
STOCK_EPOCH = "miri:stock-epoch"
GOODS_RELEASED = "miri:goods:released:"  # release tokens: a retried release is applied once


GOODS_CATALOGUE = "miri:catalogue"  # bumped when goods are registered or edited (listing caches)


def goods(goods_id: int) -> str:
    """Live stock, opening time, per-buyer limit and version of one goods (a hash)."""
    return f"{GOODS_PREFIX}{goods_id}"


def goods_buyers(goods_id: int) -> str:
    """Buyer -> quantity held in active orders, for the per-buyer limit (a hash)."""
    return f"{GOODS_PREFIX}{goods_id}:buyers"


def rate_limit(key: str) -> str:
    return f"miri:rl:{key}"


def token_denied(jti: str) -> str:
    """A logged-out token's id, kept until the token would have expired anyway."""
    return f"miri:deny:{jti}"


def tokens_valid_after(user_id: int) -> str:
    """Tokens of this user issued before this time are refused (password change)."""
    return f"miri:tva:{user_id}"


def idempotency_lock(user_id: int, key: str) -> str:
    """Held while one request with this Idempotency-Key is in flight."""
    return f"miri:idem:{user_id}:{key}"


# -- the waiting room: per goods, a room hash, the pre-queue, the line, tickets and passes ------
QUEUE_PREFIX = "miri:queue:"
QUEUE_ROOMS = "miri:queue:rooms"  # goods ids that have a waiting room (a set)


def queue_room(goods_id: int) -> str:
    """Rate, pass length, counters (tail, head, used, expired), opened and sold-out marks."""
    return f"{QUEUE_PREFIX}{goods_id}"


def queue_pre(goods_id: int) -> str:
    """Buyers who joined before the opening, in arrival order (a list; shuffled at the opening)."""
    return f"{QUEUE_PREFIX}{goods_id}:pre"


def queue_line(goods_id: int) -> str:
    """Buyers waiting for admission, front first (a list)."""
    return f"{QUEUE_PREFIX}{goods_id}:line"


def queue_passes(goods_id: int) -> str:
    """Buyer -> when their unused pass runs out (a sorted set)."""
    return f"{QUEUE_PREFIX}{goods_id}:passes"


def queue_pending(goods_id: int) -> str:
    """Buyer -> when their pass was used by an order whose reservation has not answered yet."""
    return f"{QUEUE_PREFIX}{goods_id}:pending"


def queue_ticket_prefix(goods_id: int) -> str:
    return f"{QUEUE_PREFIX}{goods_id}:t:"


def queue_ticket(goods_id: int, user_id: int) -> str:
    """One buyer's ticket for one goods (a hash): state, rank in line, pass and its expiry."""
    return f"{queue_ticket_prefix(goods_id)}{user_id}"
