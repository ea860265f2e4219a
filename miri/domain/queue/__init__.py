"""The waiting room (issue 14): a fair line in front of goods at their opening."""

from miri.domain.queue.model import RoomSettings, Ticket
from miri.domain.queue.service import PassUse, QueueService

__all__ = ["PassUse", "QueueService", "RoomSettings", "Ticket"]
