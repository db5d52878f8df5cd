"""The ``limits`` section: the backend, what each limit does while Redis is away."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.limits_backend import LimitsSettings
from tests.helpers.settings_text import read_text

__all__ = ["LimitsSettingsTests"]


class LimitsSettingsTests(SynchronousTestCase):
    """Defaults, choices and their errors."""

    def read(self, text: str) -> tuple[LimitsSettings, list[str]]:
        return read_text(self, "limits:\n" + text,
                         lambda root: LimitsSettings.from_yaml(root.section("limits")))

    def test_defaults(self) -> None:
        """Without the section: limits in this process; with Redis, quotas fail closed,
        rate limits and concurrency fail open, slots expire after 30 s, calls after 250 ms."""
        settings, errors = self.read("")
        self.assertEqual(errors, [])
        self.assertFalse(settings.shared)
        self.assertEqual([settings.choice(n) for n in ("rateLimit", "concurrency", "quota")],
                         ["open", "open", "closed"])
        self.assertEqual((settings.slot_expiry, settings.redis_timeout), (30.0, 0.25))

    def test_open_needs_nodes(self) -> None:
        """A limit failing open without ``nodes`` is an error: the share is unknown."""
        _, errors = self.read("  backend: redis\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:2: limits.nodes: needed: rateLimit, "
                                         "concurrency"), error)

    def test_all_closed_without_nodes(self) -> None:
        """Every limit failing closed needs no node count."""
        settings, errors = self.read(
            "  backend: redis\n  onRedisError: {rateLimit: closed, concurrency: closed}\n")
        self.assertEqual(errors, [])
        self.assertEqual(settings.choice("rateLimit"), "closed")

    def test_bad_choice_located(self) -> None:
        """A choice that is neither closed nor open is named with its path."""
        _, errors = self.read("  backend: redis\n  nodes: 2\n  onRedisError:\n"
                              "    quota: maybe\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:5: limits.onRedisError.quota: "
                                         "expected one of closed, open"), error)

    def test_bad_backend(self) -> None:
        """An unknown backend is an error."""
        _, errors = self.read("  backend: memcached\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:2: limits.backend: "), error)

    def test_durations(self) -> None:
        """``slotExpiry`` and ``redisTimeout`` take Go durations."""
        settings, errors = self.read("  backend: redis\n  nodes: 3\n  slotExpiry: 1m\n"
                                     "  redisTimeout: 100ms\n")
        self.assertEqual((settings.nodes, settings.slot_expiry, settings.redis_timeout,
                          errors), (3, 60.0, 0.1, []))
