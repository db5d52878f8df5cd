"""Checks request hooks postpone so that they are made together, and the points where the
chain makes them; waits a client that leaves gives up."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from zope.interface import Attribute, Interface

from runnergw.chain.exchange import Exchange

__all__ = ["IAdmission", "settle_admission", "wait_for_client"]


class IAdmission(Interface):
    """Checks that request hooks gave to one object to make together (the limit filters:
    a state shared through another process answers them all in one round trip), set as
    ``exchange.admission``.

    The chain makes the checks still waiting once the ``request_headers`` hooks are over,
    before any body byte is read, unless one hook ``held`` them for a ``request_body`` hook
    that adds the last one (and makes them all); before the terminal in any case; and before
    answering a refusal or an answer of a later hook, so that a check of an earlier filter
    refuses first, as it would have had each filter asked in turn.
    """

    held = Attribute("True while a request_body hook is to add the last check.")

    def settle() -> Any:  # type: ignore[misc]
        """Make the checks still waiting: None when done at once, else a Deferred (which
        may wait for a concurrency slot; cancelling it gives up); raises (or fails with)
        the ``Reject`` of the first refused."""


async def wait_for_client(pending: Deferred[Any], exchange: Exchange, client: Any) -> bool:
    """Wait for ``pending`` (a hook that answers later, a wait for a slot); a client that
    leaves meanwhile cancels it: False then."""
    client.when_gone(pending.cancel)
    try:
        await pending
    except CancelledError:
        if not client.gone:
            raise
        if exchange.outcome == "ok":
            exchange.outcome = "client_gone"
            exchange.reason = "client disconnected while the request waited"
        return False
    return True


async def settle_admission(exchange: Exchange, client: Any, before_body: bool = False) -> bool:
    """Make the checks ``exchange.admission`` still holds (``before_body``: unless they are
    held for a ``request_body`` hook); a check's refusal raises its ``Reject``. False when
    the client left during a wait."""
    admission = exchange.admission
    if admission is None or (before_body and admission.held):
        return True
    pending = admission.settle()
    if pending is None:
        return True
    return await wait_for_client(pending, exchange, client)
