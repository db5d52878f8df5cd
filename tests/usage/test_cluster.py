"""The cluster's day totals, read from Redis and printed."""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.config.limits_backend import LimitsSettings
from runnergw.config.settings import Settings
from runnergw.usage.cluster import cluster_totals, format_cluster
from tests.helpers.redis_limits import redis_settings, shared_state
from tests.helpers.redis_server import RedisServer

__all__ = ["ClusterTotalsTests", "FormatClusterTests"]

_TOTALS = {"alice": 120, "bob": 300, "carol": 120}


class FormatClusterTests(SynchronousTestCase):
    """Largest first, ties by name, in each format."""

    def test_table(self) -> None:
        """Aligned columns under a heading naming the day."""
        self.assertEqual(format_cluster(_TOTALS, "2026-12-05", "table"),
                         "SUBJECT  TOKENS (2026-12-05)\n"
                         "bob                      300\n"
                         "alice                    120\n"
                         "carol                    120\n")

    def test_csv(self) -> None:
        """A header line, then one line per subject."""
        self.assertEqual(format_cluster({"bob": 3}, "2026-12-05", "csv"),
                         "day,subject,total_tokens\n2026-12-05,bob,3\n")

    def test_json_empty(self) -> None:
        """No usage that day: an empty list."""
        self.assertEqual(json.loads(format_cluster({}, "2026-12-05", "json")), [])


class ClusterTotalsTests(TestCase):
    """The totals every node counted, from the settings' Redis and prefix."""

    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        return self.server.start()

    async def test_prefix_of_the_settings(self) -> None:
        """Only the totals under the settings' key prefix are read."""
        await shared_state(self, self.server, prefix="east:").add_tokens("alice", "2026-12-05", 5)
        await shared_state(self, self.server, prefix="west:").add_tokens("bob", "2026-12-05", 9)
        settings = Settings(files=("settings.yaml",), limits=LimitsSettings(backend="redis"),
                            redis=redis_settings(self.server, key_prefix="east:"))
        self.assertEqual(await cluster_totals(settings, "2026-12-05", reactor), {"alice": 5})
