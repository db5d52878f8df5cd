"""Failing open divides each limit by ``limits.nodes``: settings where that share would let
the nodes together admit more than the limit are refused at load."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers.settings_text import load_errors

__all__ = ["NodeShareTests", "WorkersCountedTests"]

_RUNNERS = "runners:\n  - host: 127.0.0.1:11434\n"
_REDIS = "limits:\n  backend: redis\n  nodes: 3\n"


class NodeShareTests(SynchronousTestCase):
    """A role limit smaller than ``nodes`` that fails open is named with its file and line."""

    def test_concurrency_below_nodes_refused(self) -> None:
        """``concurrency: 1`` on 3 nodes failing open would admit 3 at once (1 per node):
        refused at the role's key, suggesting both ways out."""
        errors = load_errors(self, _RUNNERS + _REDIS + "roles:\n  user:\n    concurrency: 1\n")
        self.assertEqual(errors, [
            "settings.yaml:8: roles.user.concurrency: 1 is less than limits.nodes (3): "
            "failing open (limits.onRedisError.concurrency: open) each node would allow at "
            "least 1, 3 across the nodes; set limits.onRedisError.concurrency: closed or "
            "concurrency to at least 3"])

    def test_rate_below_nodes_refused(self) -> None:
        """``requestsPerMinute: 2`` on 3 nodes failing open: refused at that key."""
        errors = load_errors(self, _RUNNERS + _REDIS
                             + "roles:\n  user:\n    requestsPerMinute: 2\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:8: roles.user.requestsPerMinute: 2 "
                                         "is less than limits.nodes (3)"), error)

    def test_burst_below_nodes_refused(self) -> None:
        """A burst smaller than ``nodes`` is refused even when the rate is large enough."""
        errors = load_errors(self, _RUNNERS + _REDIS +
                       "roles:\n  user:\n    requestsPerMinute: 60\n    burst: 2\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:9: roles.user.burst: 2 is less "
                                         "than limits.nodes (3)"), error)

    def test_quota_below_nodes_failing_open_refused(self) -> None:
        """A daily quota failing open is divided too: ``tokensPerDay: 2`` on 3 nodes."""
        errors = load_errors(self, _RUNNERS + _REDIS + "  onRedisError: {quota: open}\n"
                       "roles:\n  user:\n    tokensPerDay: 2\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:9: roles.user.tokensPerDay: 2 is "
                                         "less than limits.nodes (3)"), error)

    def test_closed_limit_accepted(self) -> None:
        """A limit that refuses while Redis is away is never divided: any size is fine."""
        self.assertEqual(load_errors(self, _RUNNERS + _REDIS + "  onRedisError: {concurrency: "
                               "closed}\nroles:\n  user:\n    concurrency: 1\n"), [])

    def test_limit_of_nodes_accepted(self) -> None:
        """A limit equal to ``nodes`` gives each node 1: the cluster stays within it."""
        self.assertEqual(load_errors(self, _RUNNERS + _REDIS + "roles:\n  user:\n    "
                               "concurrency: 3\n    requestsPerMinute: 3\n"), [])

    def test_local_backend_not_divided(self) -> None:
        """With the limits in this process nothing is divided: no refusal."""
        self.assertEqual(load_errors(self, _RUNNERS + "limits:\n  nodes: 3\n"
                               "roles:\n  user:\n    concurrency: 1\n"), [])


class WorkersCountedTests(SynchronousTestCase):
    """``limits.nodes`` counts every gateway process when a limit fails open."""

    def test_fewer_nodes_than_workers_refused(self) -> None:
        """``workers: 4`` with ``nodes: 2``: each worker failing open would count half of
        each limit, twice the limit on this machine alone; refused at ``limits.nodes``."""
        errors = load_errors(self, _RUNNERS + "server:\n  workers: 4\nroles:\n  user: {}\n"
                       "limits:\n  backend: redis\n  nodes: 2\n")
        self.assertEqual(errors, [
            "settings.yaml:9: limits.nodes: 2 is less than server.workers (4): while Redis "
            "is away each worker counts rateLimit, concurrency with its own share, so "
            "limits.nodes counts every gateway process (the nodes times their workers)"])

    def test_every_limit_closed_accepted(self) -> None:
        """With every limit failing closed nothing is divided: ``nodes`` is not needed."""
        self.assertEqual(load_errors(self, _RUNNERS + "server:\n  workers: 4\nroles:\n  user: {}\n"
                               "limits:\n  backend: redis\n  onRedisError: {rateLimit: "
                               "closed, concurrency: closed}\n"), [])

    def test_nodes_counting_workers_accepted(self) -> None:
        """``nodes`` at least the worker count is accepted."""
        self.assertEqual(load_errors(self, _RUNNERS + "server:\n  workers: 4\nroles:\n  user: {}\n"
                               "limits:\n  backend: redis\n  nodes: 8\n"), [])
