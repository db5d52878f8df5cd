"""Each endpoint's job slots, kept across reloads: shared by the routes of one endpoint,
resized by the route that starts serving, forgotten once no route serves the endpoint and
its jobs are over."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.jobs.endpoint_slots import EndpointSlots

__all__ = ["EndpointSlotsTests"]


class EndpointSlotsTests(SynchronousTestCase):
    """``EndpointSlots``: ``lend`` when a route is built, ``serve`` when it starts serving,
    ``leave`` when it is retired."""

    def test_routes_of_one_endpoint_share_its_slots(self) -> None:
        """A route built for an endpoint another route serves counts its jobs in the same
        slots, and serving resizes them to its limits."""
        kept = EndpointSlots()
        old, new = object(), object()
        first = kept.serve("cp", old, kept.lend("cp", 2, 1), 2, 1)
        self.successResultOf(first.acquire())
        lent = kept.lend("cp", 4, 0)
        self.assertIs(lent, first)
        self.assertEqual((lent.concurrency, lent.max_waiting), (2, 1))
        self.assertIs(kept.serve("cp", new, lent, 4, 0), first)
        self.assertEqual((first.concurrency, first.max_waiting, first.running), (4, 0, 1))

    def test_slots_kept_only_once_served(self) -> None:
        """Slots lent to a route that never serves (a refused reload) are not kept."""
        kept = EndpointSlots()
        kept.lend("cp", 1, 0)
        self.assertEqual(kept.current(), {})

    def test_removed_endpoint_kept_while_its_jobs_run(self) -> None:
        """An endpoint whose last route left keeps its slots while a job of it runs, and
        they are forgotten once it is over."""
        kept = EndpointSlots()
        route = object()
        slots = kept.serve("cp", route, kept.lend("cp", 1, 0), 1, 0)
        self.successResultOf(slots.acquire())
        kept.leave("cp", route)
        self.assertEqual(kept.current(), {"cp": slots})
        slots.release()
        self.assertEqual(kept.current(), {})
        self.assertIsNot(kept.lend("cp", 1, 0), slots)

    def test_endpoint_served_by_a_newer_route_stays(self) -> None:
        """The old route of an endpoint leaving (retired) does not forget the slots the
        new route serves with."""
        kept = EndpointSlots()
        old, new = object(), object()
        slots = kept.serve("cp", old, kept.lend("cp", 1, 0), 1, 0)
        kept.serve("cp", new, kept.lend("cp", 1, 0), 1, 0)
        kept.leave("cp", old)
        kept.leave("cp", old)
        self.assertEqual(kept.current(), {"cp": slots})
        kept.leave("cp", new)
        self.assertEqual(kept.current(), {})
