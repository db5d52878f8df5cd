"""Each pipeline endpoint's job slots, kept across reloads.

A reload builds new command routes, while the jobs of the routes it replaced may still run:
the routes of every generation that serve one endpoint count their jobs in the same
``JobSlots``, so ``concurrency`` holds across a reload. A reload that changes an endpoint's
limits resizes its slots; an endpoint a reload removed keeps its slots while the jobs of its
retiring route run, and they are forgotten once no route serves it and its jobs are over.
"""

from __future__ import annotations

from runnergw.jobs.slots import JobSlots

__all__ = ["EndpointSlots"]


class EndpointSlots:
    """The job slots of each endpoint served, by endpoint name."""

    def __init__(self) -> None:
        self._slots: dict[str, JobSlots] = {}
        self._holders: dict[str, set[object]] = {}
        """The routes' terminals serving each endpoint: the current one, and those a reload
        replaced until they are retired."""

    def lend(self, endpoint: str, concurrency: int, max_waiting: int) -> JobSlots:
        """The slots a route just built for ``endpoint`` counts its jobs in: the kept ones,
        else new ones with these limits. A route built by a reload that is then refused
        changes nothing: slots are only kept, and resized, once a route serves (``serve``)."""
        kept = self._slots.get(endpoint)
        return kept if kept is not None else JobSlots(concurrency, max_waiting)

    def serve(self, endpoint: str, holder: object, slots: JobSlots, concurrency: int,
              max_waiting: int) -> JobSlots:
        """``holder`` (a route's terminal) serves ``endpoint`` from now on, with these
        limits: the endpoint's kept slots are resized to them, or ``slots`` are kept from now
        on. Returns the kept slots."""
        kept = self._slots.setdefault(endpoint, slots)
        self._holders.setdefault(endpoint, set()).add(holder)
        kept.resize(concurrency, max_waiting)
        self._forget_unused()
        return kept

    def leave(self, endpoint: str, holder: object) -> None:
        """``holder`` serves ``endpoint`` no more (retired or stopped): once no route serves
        it and its jobs are over, its slots are forgotten."""
        holders = self._holders.get(endpoint)
        if holders is not None:
            holders.discard(holder)
        self._forget_unused()

    def current(self) -> dict[str, JobSlots]:
        """The slots of every endpoint served, and of every endpoint a reload removed whose
        last requests are still in hand."""
        self._forget_unused()
        return dict(self._slots)

    def _forget_unused(self) -> None:
        unused = [endpoint for endpoint, slots in self._slots.items()
                  if not self._holders.get(endpoint) and slots.idle]
        for endpoint in unused:
            del self._slots[endpoint]
            self._holders.pop(endpoint, None)
