"""The parts the role filters share: the limit state seeded from the usage ledger at start,
requests held until then, and the ledger written when the gateway stops."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.config.policy import PolicySettings
from runnergw.config.settings import Settings
from runnergw.limits.days import QuotaDays
from runnergw.limits.local import LocalLimitState
from runnergw.limits.parts import LimitParts
from runnergw.usage.ledger import LedgerError, UsageEntry, UsageLedger

__all__ = ["FromSettingsTests", "LedgerRestartTests", "SeedingTests", "WithoutLedgerTests"]

_EVENING = datetime(2026, 12, 5, 22, 30, tzinfo=timezone.utc).timestamp()
"""22:30 UTC, 23:30 in Paris: still 2026-12-05 in both."""


def _entry(subject: str = "alice", *, day: str = "2026-12-05", prompt: int = 10,
           completion: int = 20, model: str = "llama3.2:latest") -> UsageEntry:
    return UsageEntry(day=day, subject=subject, role="user", model=model,
                      prompt_tokens=prompt, completion_tokens=completion)


def _record(parts: LimitParts, entry: UsageEntry) -> None:
    """Record ``entry`` as the usage filter does."""
    parts.record_request(entry.day, entry.subject, entry.role, entry.model,
                         entry.prompt_tokens, entry.completion_tokens, entry.truncated)


class _Ledger:
    """Stands for the usage ledger: its answers are given by the test."""

    def __init__(self, totals: dict[str, int] | None = None) -> None:
        self.totals = totals or {}
        self.opening: Deferred[None] = succeed(None)
        self.asked: list[str] = []
        self.entries: list[UsageEntry] = []
        self.closed = False

    def open(self) -> Deferred[None]:
        return self.opening

    def totals_for_day(self, day: str) -> Deferred[dict[str, int]]:
        self.asked.append(day)
        return succeed(dict(self.totals))

    def record(self, entry: UsageEntry) -> None:
        self.entries.append(entry)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


class _StateWithoutSeed:
    """A limit state that cannot be seeded (one shared by a cluster keeps its own totals)."""


class WithoutLedgerTests(SynchronousTestCase):
    """Parts without a ledger (tests, tools): nothing to wait for, nothing to write."""

    def setUp(self) -> None:
        clock = Clock()
        self.parts = LimitParts(LocalLimitState(clock), QuotaDays(ZoneInfo("UTC"), clock), None)

    def test_ready_at_once(self) -> None:
        """Requests never wait."""
        self.assertIsNone(self.parts.ready())

    def test_start_record_stop(self) -> None:
        """Starting and stopping succeed at once, and usage is recorded nowhere."""
        self.assertIsNone(self.successResultOf(self.parts.start()))
        _record(self.parts, _entry())
        self.assertIsNone(self.successResultOf(self.parts.stop()))
        self.assertIsNone(self.parts.ready())


class SeedingTests(SynchronousTestCase):
    """``start`` reads today's usage from the ledger into the state before requests count."""

    zone = "UTC"

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_EVENING)
        self.ledger = _Ledger({"alice": 300, "bob": 12})
        self.state = LocalLimitState(self.clock)
        self.parts = self.make_parts()

    def make_parts(self, state: Any = None, zone: str = "UTC") -> LimitParts:
        return LimitParts(state or self.state, QuotaDays(ZoneInfo(zone), self.clock),
                          self.ledger)  # type: ignore[arg-type]

    def test_waits_until_started(self) -> None:
        """Before ``start``, requests are given a Deferred to wait on; after, none."""
        waiting = self.parts.ready()
        assert waiting is not None
        self.assertNoResult(waiting)
        self.parts.start()
        self.assertIsNone(self.successResultOf(waiting))
        self.assertIsNone(self.parts.ready())

    def test_every_waiting_request_released(self) -> None:
        """Each request that waited goes on once today's usage is known."""
        waiting = [self.parts.ready() for _ in range(3)]
        self.parts.start()
        for each in waiting:
            assert each is not None
            self.successResultOf(each)

    def test_still_waiting_while_the_ledger_opens(self) -> None:
        """The ledger being opened is not enough: requests wait for its totals."""
        self.ledger.opening = Deferred()
        started = self.parts.start()
        waiting = self.parts.ready()
        assert waiting is not None
        self.assertNoResult(waiting)
        self.ledger.opening.callback(None)
        self.successResultOf(started)
        self.successResultOf(waiting)

    def test_state_seeded_with_todays_totals(self) -> None:
        """Each subject starts the day with what the ledger says it used today."""
        self.successResultOf(self.parts.start())
        self.assertEqual(self.ledger.asked, ["2026-12-05"])
        self.assertEqual((self.state.tokens_used("alice", "2026-12-05"),
                          self.state.tokens_used("bob", "2026-12-05"),
                          self.state.tokens_used("carol", "2026-12-05")), (300, 12, 0))

    def test_today_in_the_zone(self) -> None:
        """Today is the date in the configured zone: at 23:30 UTC it is already the 6th in
        Paris."""
        self.clock.advance(3600)
        parts = self.make_parts(zone="Europe/Paris")
        self.successResultOf(parts.start())
        self.assertEqual(self.ledger.asked, ["2026-12-06"])
        self.assertEqual(self.state.tokens_used("alice", "2026-12-06"), 300)

    def test_ledger_that_cannot_open(self) -> None:
        """A ledger that cannot be opened fails the start, and requests keep waiting: quotas
        that cannot be kept are not applied as if nothing was used."""
        self.ledger.opening = fail(LedgerError("usage.sqlite", "not a ledger"))
        waiting = self.parts.ready()
        assert waiting is not None
        self.failureResultOf(self.parts.start(), LedgerError)
        self.assertNoResult(waiting)
        self.assertIsNotNone(self.parts.ready())

    def test_state_that_keeps_its_own_totals(self) -> None:
        """A state without ``seed`` is left alone; requests go on all the same."""
        parts = self.make_parts(_StateWithoutSeed())
        waiting = parts.ready()
        self.successResultOf(parts.start())
        assert waiting is not None
        self.successResultOf(waiting)

    def test_record_and_stop(self) -> None:
        """Usage goes to the ledger; stopping closes it."""
        self.successResultOf(self.parts.start())
        _record(self.parts, _entry())
        self.assertEqual(self.ledger.entries, [_entry()])
        self.successResultOf(self.parts.stop())
        self.assertTrue(self.ledger.closed)


class _Clock(Clock):
    """Timers the test moves by hand; results from the ledger's thread come back through the
    running reactor, as trial waits for the test's Deferreds."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(f, *args, **kwargs)


class LedgerRestartTests(TestCase):
    """With the real ledger: quotas survive a restart of the gateway."""

    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        self.path = directory / "usage.sqlite"
        self.clock = _Clock()
        self.clock.advance(_EVENING)

    def make_parts(self) -> LimitParts:
        """Parts on ``self.path``, as the gateway makes them at each start (its ledger is
        closed after the test, whatever the test did)."""
        ledger = UsageLedger(str(self.path), self.clock)
        self.addCleanup(ledger.close)
        return LimitParts(LocalLimitState(self.clock), QuotaDays(ZoneInfo("UTC"), self.clock),
                          ledger)

    def rows(self) -> list[tuple[Any, ...]]:
        """What the file holds, read apart from the ledger."""
        with closing(sqlite3.connect(self.path)) as connection:
            return list(connection.execute(
                "SELECT day, subject, prompt_tokens, completion_tokens FROM usage "
                "ORDER BY day, subject"))

    async def test_quota_survives_a_restart(self) -> None:
        """What subjects used today is back in the state after a restart; earlier days are
        not."""
        before = self.make_parts()
        await before.start()
        _record(before, _entry("alice", prompt=10, completion=20))
        _record(before, _entry("alice", prompt=5, completion=5, model="qwen3:latest"))
        _record(before, _entry("bob", prompt=1, completion=2))
        _record(before, _entry("alice", day="2026-12-04", prompt=500, completion=500))
        await before.stop()

        after = self.make_parts()
        await after.start()
        self.assertEqual((after.state.tokens_used("alice", "2026-12-05"),
                          after.state.tokens_used("bob", "2026-12-05")), (40, 3))

    async def test_waiting_requests_released_after_start(self) -> None:
        """Requests that arrived while the ledger was being read go on once it was."""
        parts = self.make_parts()
        waiting = parts.ready()
        assert waiting is not None
        started = parts.start()
        self.assertFalse(waiting.called)
        await started
        self.assertTrue(waiting.called)
        self.assertIsNone(parts.ready())

    async def test_stop_writes_what_is_pending(self) -> None:
        """Stopping writes usage recorded since the last flush, without waiting for the
        flush interval."""
        parts = self.make_parts()
        await parts.start()
        _record(parts, _entry("alice", prompt=10, completion=20))
        self.assertEqual(self.rows(), [])
        await parts.stop()
        self.assertEqual(self.rows(), [("2026-12-05", "alice", 10, 20)])

    async def test_start_fails_on_a_file_that_is_no_ledger(self) -> None:
        """A file that is not a ledger stops the start (the gateway must not run without
        the quotas it promised)."""
        self.path.write_bytes(b"not a database, not at all" * 100)
        parts = self.make_parts()
        with self.assertRaises(LedgerError):
            await parts.start()


class FromSettingsTests(SynchronousTestCase):
    """The parts the gateway makes from its settings."""

    def test_parts_from_the_policy(self) -> None:
        """In-process state, days in ``policy.timeZone`` and the ledger at
        ``policy.ledgerPath``, not yet open."""
        settings = Settings(files=("<test>",), policy=PolicySettings(
            time_zone="Europe/Paris", ledger_path="/var/lib/runnergw/usage.sqlite"))
        clock = Clock()
        parts = LimitParts.from_settings(settings, clock)
        self.assertIsInstance(parts.state, LocalLimitState)
        self.assertEqual(parts.days.zone, ZoneInfo("Europe/Paris"))
        assert parts.ledger is not None
        self.assertEqual(parts.ledger.path, "/var/lib/runnergw/usage.sqlite")
        self.assertIsNotNone(parts.ready())
