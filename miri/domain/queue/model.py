"""The waiting room as the rest of the shop sees it: a room's settings and figures, and tickets.

A ticket's stored state only moves forward (WAITING -> ADMITTED -> USED or EXPIRED); what a buyer
is shown is derived at read time from the ticket and the room's figures: a pass past its expiry
is EXPIRED at once (before the sweep records it), and while the goods are sold out every ticket
still waiting or holding a pass is SOLD_OUT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WAITING, ADMITTED, USED, EXPIRED, SOLD_OUT = "WAITING", "ADMITTED", "USED", "EXPIRED", "SOLD_OUT"
STATES = (WAITING, ADMITTED, USED, EXPIRED, SOLD_OUT)
DEFAULT_ADMIT_PER_SECOND = 50
DEFAULT_PASS_SECONDS = 120
MAX_ADMIT_PER_SECOND = 10_000
MIN_PASS_SECONDS, MAX_PASS_SECONDS = 10, 3600


@dataclass(frozen=True)
class RoomSettings:
    """How one goods' waiting room runs (the ``waitingRoom`` of the goods body)."""

    enabled: bool = True
    admit_per_second: int = DEFAULT_ADMIT_PER_SECOND
    pass_seconds: int = DEFAULT_PASS_SECONDS

    def to_api(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "admitPerSecond": self.admit_per_second,
            "passSeconds": self.pass_seconds,
        }


def admit_per_second(value: int) -> int:
    if not 1 <= value <= MAX_ADMIT_PER_SECOND:
        raise ValueError(f"admitPerSecond must be an integer from 1 to {MAX_ADMIT_PER_SECOND}")
    return value


def pass_seconds(value: int) -> int:
    if not MIN_PASS_SECONDS <= value <= MAX_PASS_SECONDS:
        raise ValueError(
            f"passSeconds must be an integer from {MIN_PASS_SECONDS} to {MAX_PASS_SECONDS}"
        )
    return value


@dataclass(frozen=True)
class RoomFigures:
    """One read of a room's hash (and the goods' opening): what every waiting ticket needs."""

    goods_id: int
    enabled: bool
    admit_per_second: int
    pass_seconds: int
    opens_at: float | None  # epoch seconds; None: on sale from the start
    shuffled: bool  # the pre-queue has been shuffled into the line (the sale has opened)
    head: int  # tickets admitted from the front of the line so far
    tail: int  # ranks given out so far
    pre_queue: int  # tickets waiting for the opening
    holding: int  # admitted tickets whose pass is neither used nor expired (as last swept)
    used: int
    expired: int
    sold_out_tickets: int  # tickets ended SOLD_OUT by an order refused for stock
    sold_out: bool
    sold_out_at: float | None
    admitted_total: int

    @property
    def waiting(self) -> int:
        return self.pre_queue + max(self.tail - self.head, 0)

    def eta(self, position: int) -> int:
        return math.ceil(position / max(self.admit_per_second, 1))

    def status(self, now: float) -> dict[str, Any]:
        """The admin figures of API.md (tickets by state), and a few more for the operator."""
        told = self.waiting + self.holding if self.sold_out else 0
        return {
            "goodsId": self.goods_id,
            "enabled": self.enabled,
            "waiting": 0 if self.sold_out else self.waiting,
            "admitted": 0 if self.sold_out else self.holding,
            "used": self.used,
            "expired": self.expired,
            "soldOut": self.sold_out_tickets + told,
            "saleSoldOut": self.sold_out,
            "admitPerSecond": self.admit_per_second,
            "passSeconds": self.pass_seconds,
            "admittedTotal": self.admitted_total,
            "preQueue": self.pre_queue,
            "opened": self.opens_at is None or now >= self.opens_at,
            "etaLastSeconds": 0 if self.sold_out else self.eta(self.waiting),
        }


@dataclass(frozen=True)
class TicketRecord:
    """A ticket as Redis holds it."""

    ticket_id: str
    goods_id: int
    user_id: int
    state: str
    rank: int  # place in line (1-based, over the room's life); 0 while in the pre-queue
    arrival: int  # join order, for the benchmark's fairness figures
    pre_queue: bool  # joined before the opening
    pass_token: str | None
    pass_expires: float | None
    joined_at: float
    admitted_at: float | None

    @classmethod
    def from_hash(cls, goods_id: int, h: dict[str, str]) -> TicketRecord:
        return cls(
            ticket_id=h["id"],
            goods_id=goods_id,
            user_id=int(h["user"]),
            state=h["state"],
            rank=int(h.get("rank") or 0),
            arrival=int(h.get("arrival") or 0),
            pre_queue=h.get("pre") == "1",
            pass_token=h.get("pass") or None,
            pass_expires=float(h["exp"]) if h.get("exp") else None,
            joined_at=float(h.get("joined") or 0),
            admitted_at=float(h["admitted"]) if h.get("admitted") else None,
        )

    def still_waiting(self, room: RoomFigures) -> bool:
        """Whether this copy still tells the truth given newer room figures (no re-read needed)."""
        if self.state != WAITING:
            return False
        if room.sold_out:  # shown SOLD_OUT whatever else changed: no need to read it again
            return True
        if self.rank == 0:
            return not room.shuffled
        return self.rank > room.head


@dataclass(frozen=True)
class Ticket:
    """What the buyer is shown (API.md's ticket)."""

    ticket_id: str
    goods_id: int
    state: str
    position: int | None
    eta_seconds: int | None
    pass_token: str | None
    pass_expires_at: float | None

    def to_api(self, iso: Any) -> dict[str, Any]:
        return {
            "ticketId": self.ticket_id,
            "goodsId": self.goods_id,
            "state": self.state,
            "position": self.position,
            "etaSeconds": self.eta_seconds,
            "passToken": self.pass_token,
            "passExpiresAt": iso(self.pass_expires_at) if self.pass_expires_at else None,
        }


def shown(record: TicketRecord, room: RoomFigures, now: float) -> Ticket:
    """The ticket as the buyer sees it now."""
    state = record.state
    if state == ADMITTED and (record.pass_expires or 0) <= now:
        state = EXPIRED
    if state in (WAITING, ADMITTED) and room.sold_out:
        state = SOLD_OUT
    position = eta = None
    if state == WAITING:
        if record.rank == 0 or not room.shuffled:
            # In the pre-queue: nobody has a place until the opening shuffles them all.
            position = None
            eta = max(math.ceil((room.opens_at or now) - now), 0)
        else:
            position = max(record.rank - room.head, 1)
            eta = room.eta(position)
    holding = state == ADMITTED
    return Ticket(
        ticket_id=record.ticket_id,
        goods_id=record.goods_id,
        state=state,
        position=position,
        eta_seconds=eta,
        pass_token=record.pass_token if holding else None,
        pass_expires_at=record.pass_expires if holding else None,
    )
