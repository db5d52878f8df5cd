"""The concurrency slots this node holds in Redis: kept alive while held, given back once
released."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from runnergw.limits.interfaces import ISlot
from runnergw.limits.redis_connection import RedisConnection
from runnergw.limits.redis_give_back import GiveBacks
from runnergw.limits.redis_scripts import REFRESH_SLOTS

__all__ = ["HeldSlots"]


@implementer(ISlot)
class _RedisSlot:
    """A slot held in Redis, refreshed until released."""

    __slots__ = ("_held", "key", "slot_id")

    def __init__(self, held: HeldSlots, key: str, slot_id: str) -> None:
        self._held: HeldSlots | None = held
        self.key = key
        self.slot_id = slot_id

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.release(self)


class HeldSlots:
    """Slots taken by this node: the expiry of all of them is pushed back in one call every
    third of ``slot_expiry`` (a node that dies stops, and its slots expire); a slot
    released is given back with what other requests give back (``GiveBacks``)."""

    log = Logger()

    def __init__(self, connection: RedisConnection, clock: IReactorTime, slot_expiry: float,
                 marker_key: Callable[[str], str], give_backs: GiveBacks) -> None:
        self.connection = connection
        self.slot_expiry = slot_expiry
        self.marker_key = marker_key
        """The key of a slot's marker, set once it was given back."""
        self.give_backs = give_backs
        self._held: dict[str, _RedisSlot] = {}
        """Slot id → slot."""
        self._refresher = LoopingCall(self.refresh)
        self._refresher.clock = clock

    def hold(self, slots_key: str, slot_id: str) -> ISlot:
        """A slot just taken in ``slots_key``, kept until released."""
        slot = self._held[slot_id] = _RedisSlot(self, slots_key, slot_id)
        if not self._refresher.running:
            self._refresher.start(self.slot_expiry / 3, now=False)
        return slot

    def release(self, slot: _RedisSlot) -> None:
        self._held.pop(slot.slot_id, None)
        if not self._held and self._refresher.running:
            self._refresher.stop()
        self.give_backs.free_slot(slot.key, self.marker_key(slot.slot_id), slot.slot_id)

    def refresh(self) -> None:
        """Push back the expiry of every slot held, in one call (counting again one that
        expired while Redis was away, unless it was given back)."""
        held = list(self._held.values())
        if not held:
            return
        keys = [key for slot in held for key in (slot.key, self.marker_key(slot.slot_id))]
        refreshed = REFRESH_SLOTS.run(
            self.connection, keys, [repr(self.slot_expiry), *(slot.slot_id for slot in held)])
        refreshed.addCallback(self._counted_again)
        refreshed.addErrback(lambda failure: self.log.warn(
            "Could not refresh {count} concurrency slots in Redis: {reason}",
            count=len(held), reason=failure.getErrorMessage(), event="limiter_slots_stale"))

    def _counted_again(self, again: int) -> None:
        if again:
            self.log.warn("{count} concurrency slots held had expired in Redis (away longer "
                          "than limits.slotExpiry): counted again", count=again,
                          event="limiter_slots_counted_again")

    def stop(self) -> None:
        """Stop refreshing (the slots still held expire in Redis)."""
        if self._refresher.running:
            self._refresher.stop()
