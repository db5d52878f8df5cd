"""The parts kept across reloads: made from the settings, lent to every generation of
routes."""

from __future__ import annotations

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.kept import KeptParts
from runnergw.routes import build_router
from tests.helpers.command_gateway import example
from tests.helpers.node_settings import write_node

__all__ = ["KeptPartsTests"]

_RUNNER = {"host": "127.0.0.1:1", "path": "/a"}


class KeptPartsTests(SynchronousTestCase):
    """``KeptParts.from_settings`` and its use by ``build_router``."""

    def test_hosts_only(self) -> None:
        """Without roles and pipelines only the runner hosts' registry is kept (empty until
        routes are built)."""
        node = write_node(self, runners=[_RUNNER])
        kept = KeptParts.from_settings(node.settings, MemoryReactorClock())
        self.assertEqual((kept.limits, kept.jobs), (None, None))
        assert kept.hosts is not None
        self.assertEqual(kept.hosts.keys(), frozenset())

    def test_limits_with_roles(self) -> None:
        """A ``roles`` section needs limits, on the configured ledger, not yet open."""
        ledger = os.path.abspath(self.mktemp())
        node = write_node(self, runners=[_RUNNER], extra={
            "roles": {"user": {"models": ["*"]}}, "policy": {"ledgerPath": ledger}})
        kept = KeptParts.from_settings(node.settings, MemoryReactorClock())
        assert kept.limits is not None and kept.limits.ledger is not None
        self.assertEqual(kept.limits.ledger.path, ledger)
        self.assertIsNone(kept.jobs)

    def test_jobs_with_pipelines(self) -> None:
        """Pipelines need the job parts, in the configured jobs directory."""
        node = write_node(self, descriptors={"text-stats": example("text-stats")})
        kept = KeptParts.from_settings(node.settings, MemoryReactorClock())
        assert kept.jobs is not None
        self.assertEqual(kept.jobs.jobs_path, node.settings.pipelines.jobs_path)

    def test_routes_use_the_kept_parts(self) -> None:
        """Two routers built with the same kept parts share the job parts: the command
        terminals of both generations use the one launcher."""
        node = write_node(self, descriptors={"text-stats": example("text-stats")})
        reactor = MemoryReactorClock()
        kept = KeptParts.from_settings(node.settings, reactor)
        first = build_router(node.settings, node.parts, reactor, kept=kept)
        second = build_router(node.settings, node.parts, reactor, kept=kept)
        terminals = [router.routes[0].terminal for router in (first, second)]
        self.assertIsNot(terminals[0], terminals[1])
        self.assertEqual([t.jobs for t in terminals],  # type: ignore[union-attr]
                         [kept.jobs, kept.jobs])

    def test_runner_hosts_shared(self) -> None:
        """Two routers built with the same kept parts reach the runner through the same
        host (its connections and health)."""
        node = write_node(self, runners=[_RUNNER])
        reactor = MemoryReactorClock()
        kept = KeptParts.from_settings(node.settings, reactor)
        routers = [build_router(node.settings, node.parts, reactor, kept=kept)
                   for _ in range(2)]
        hosts = [router.routes[0].terminal.hosts.hosts for router in routers]  # type: ignore
        self.assertEqual(len(hosts[0]), 1)
        self.assertIs(hosts[0][0], hosts[1][0])


    def test_job_slots_of_the_routes_served(self) -> None:
        """The kept job slots are those of the command routes that serve (started): a
        router built but not serving adds none; without pipelines there are none."""
        node = write_node(self, descriptors={"text-stats": example("text-stats")})
        reactor = MemoryReactorClock()
        kept = KeptParts.from_settings(node.settings, reactor)
        router = build_router(node.settings, node.parts, reactor, kept=kept)
        self.assertEqual(kept.job_slots(), {})
        [route] = router.routes
        route.terminal.start()  # type: ignore[union-attr]
        self.assertEqual(kept.job_slots(),
                         {"text-stats": route.terminal.slots})  # type: ignore[union-attr]
        runners = write_node(self, runners=[_RUNNER])
        self.assertEqual(KeptParts.from_settings(runners.settings, reactor).job_slots(), {})
