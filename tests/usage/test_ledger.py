"""The usage ledger: sums kept in memory, written in batches by its own thread, read back
after a restart, and files it must not use refused."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from runnergw.usage.ledger import LedgerError, UsageEntry, UsageLedger
from runnergw.usage.schema import create_schema

__all__ = ["LedgerFileTests", "LedgerTests"]


class _Clock(Clock):
    """Timers the test moves by hand; results from the ledger's thread come back through the
    running reactor, as trial waits for the test's Deferreds."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(f, *args, **kwargs)


@attrs.define
class _Probe:
    """Watches every statement the ledger's connection runs, and where; can fail writes."""

    fail_writes: bool = False
    calls: list[tuple[threading.Thread, str]] = attrs.Factory(list)

    def factory(self) -> type[sqlite3.Connection]:
        """A connection class reporting to this probe."""
        probe = self

        class ProbedConnection(sqlite3.Connection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                probe.calls.append((threading.current_thread(), "connect"))
                self.set_trace_callback(
                    lambda sql: probe.calls.append((threading.current_thread(), sql)))

            def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
                if probe.fail_writes:
                    raise sqlite3.OperationalError("database or disk is full")
                return super().executemany(sql, rows)

            def close(self) -> None:
                probe.calls.append((threading.current_thread(), "close"))
                super().close()

        return ProbedConnection

    def statements(self, sql: str) -> int:
        """How many times ``sql`` ran."""
        return sum(1 for _, ran in self.calls if ran == sql)


def _entry(subject: str = "alice", *, day: str = "2026-12-05", role: str = "user",
           model: str = "llama3", prompt: int = 10, completion: int = 20,
           truncated: int = 0) -> UsageEntry:
    return UsageEntry(day=day, subject=subject, role=role, model=model, prompt_tokens=prompt,
                      completion_tokens=completion, truncated=truncated)


def _rows(path: Path) -> list[tuple[Any, ...]]:
    """The file's rows, read apart from the ledger."""
    with closing(sqlite3.connect(path)) as connection:
        return list(connection.execute("SELECT * FROM usage ORDER BY day, subject, role, model"))


class LedgerTests(TestCase):
    """Recording, flushing, reading totals and closing, on a real file and thread."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.path = self.directory / "usage.sqlite"
        self.clock = _Clock()
        self.probe = _Probe()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    async def ledger(self, **options: Any) -> UsageLedger:
        """An open ledger on ``self.path``, closed after the test."""
        ledger = UsageLedger(str(self.path), self.clock,
                             connection_factory=self.probe.factory(), **options)
        self.addCleanup(ledger.close)
        await ledger.open()
        return ledger

    def errors(self) -> list[str]:
        """The error events logged, formatted."""
        return [formatEvent(event) for event in self.events
                if event["log_level"].name in ("error", "critical")]

    async def test_sums_written_in_one_transaction_after_the_interval(self) -> None:
        """Entries with the same day, subject, role and model are summed in memory and
        written together, in one transaction, once the interval has passed."""
        ledger = await self.ledger(flush_interval=2.0)
        self.probe.calls.clear()  # opening made the schema in a transaction of its own
        ledger.record(_entry())
        ledger.record(_entry(prompt=1, completion=2, truncated=1))
        ledger.record(_entry("bob", model="qwen"))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1.9)
        await ledger.totals_for_day("2026-12-05")  # whatever the thread was given has run
        self.assertEqual(self.probe.statements("BEGIN IMMEDIATE"), 0)
        self.clock.advance(0.1)
        await ledger.totals_for_day("2026-12-05")
        self.assertEqual(self.probe.statements("BEGIN IMMEDIATE"), 1)
        self.assertEqual(self.probe.statements("COMMIT"), 1)
        await ledger.flush()  # nothing left to write
        self.assertEqual(self.probe.statements("BEGIN IMMEDIATE"), 1)
        self.assertEqual(_rows(self.path), [
            ("2026-12-05", "alice", "user", "llama3", 2, 11, 22, 1),
            ("2026-12-05", "bob", "user", "qwen", 1, 10, 20, 0),
        ])

    async def test_one_request_recorded_without_an_entry(self) -> None:
        """A request's counts given one by one are summed with the entries of its key, as
        one more request."""
        ledger = await self.ledger()
        ledger.record(_entry())
        ledger.record_request("2026-12-05", "alice", "user", "llama3", 1, 2, 1)
        await ledger.flush()
        self.assertEqual(_rows(self.path),
                         [("2026-12-05", "alice", "user", "llama3", 2, 11, 22, 1)])

    async def test_one_request_checked_as_an_entry(self) -> None:
        """A bad day or a negative count given one by one is refused, and nothing kept."""
        ledger = await self.ledger()
        self.assertRaises(ValueError, ledger.record_request, "05/12/2026", "alice", "user",
                          "llama3", 1, 2)
        self.assertRaises(ValueError, ledger.record_request, "2026-12-05", "alice", "user",
                          "llama3", 1, -2)
        await ledger.flush()
        self.assertEqual(_rows(self.path), [])

    async def test_writes_add_to_the_rows(self) -> None:
        """A later batch adds to the row of its key, it does not replace it."""
        ledger = await self.ledger()
        ledger.record(_entry())
        await ledger.flush()
        ledger.record(_entry(prompt=5, completion=5))
        await ledger.flush()
        self.assertEqual(_rows(self.path),
                         [("2026-12-05", "alice", "user", "llama3", 2, 15, 25, 0)])

    async def test_a_full_aggregate_is_written_at_once(self) -> None:
        """When ``max_pending`` keys wait, the write starts without waiting for the timer."""
        ledger = await self.ledger(max_pending=2)
        self.probe.calls.clear()
        ledger.record(_entry("alice"))
        ledger.record(_entry("bob"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        await ledger.flush()
        self.assertEqual(self.probe.statements("COMMIT"), 1)
        self.assertEqual(len(_rows(self.path)), 2)

    async def test_totals_include_what_is_still_in_memory(self) -> None:
        """A quota seeded mid-run counts the usage written and the usage not written yet,
        per subject, over roles and models, for that day only."""
        ledger = await self.ledger()
        ledger.record(_entry("alice", prompt=1, completion=2))
        await ledger.flush()
        ledger.record(_entry("alice", model="qwen", prompt=10, completion=20))
        ledger.record(_entry("alice", role="admin", prompt=100, completion=0))
        ledger.record(_entry("bob", prompt=3, completion=4))
        ledger.record(_entry("carol", day="2026-12-04"))
        self.assertEqual(await ledger.totals_for_day("2026-12-05"),
                         {"alice": 133, "bob": 7})
        self.assertEqual(await ledger.totals_for_day("2026-12-04"), {"carol": 30})
        self.assertEqual(await ledger.totals_for_day("2026-12-06"), {})

    async def test_totals_while_a_write_is_under_way(self) -> None:
        """Usage being written is counted once: neither missed nor counted twice."""
        ledger = await self.ledger()
        ledger.record(_entry(prompt=1, completion=1))
        self.clock.advance(1.0)  # the write is handed to the thread
        totals = ledger.totals_for_day("2026-12-05")
        ledger.record(_entry(prompt=1, completion=1))
        self.clock.advance(1.0)  # a second write, after the read
        self.assertEqual(await totals, {"alice": 4})
        await ledger.flush()
        self.assertEqual(await ledger.totals_for_day("2026-12-05"), {"alice": 4})

    async def test_survives_a_restart(self) -> None:
        """A second ledger on the same file sees the first one's usage, and adds to it."""
        first = await self.ledger()
        first.record(_entry(prompt=1, completion=2))
        await first.close()
        second = await self.ledger()
        self.assertEqual(await second.totals_for_day("2026-12-05"), {"alice": 3})
        second.record(_entry(prompt=1, completion=2))
        await second.close()
        third = await self.ledger()
        self.assertEqual(await third.totals_for_day("2026-12-05"), {"alice": 6})

    async def test_close_writes_what_is_pending(self) -> None:
        """A clean stop loses nothing, leaves no timer, and closing again is harmless."""
        ledger = await self.ledger(flush_interval=60.0)
        ledger.record(_entry())
        await ledger.close()
        self.assertEqual(len(_rows(self.path)), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        await ledger.close()
        self.assertEqual(self.probe.statements("close"), 1)

    async def test_close_leaves_a_file_without_write_ahead_log(self) -> None:
        """In WAL mode while open; back to a plain journal once closed, so a report run
        while the gateway is stopped creates no files beside it."""
        ledger = await self.ledger()
        with closing(sqlite3.connect(self.path)) as reader:
            self.assertEqual(reader.execute("PRAGMA journal_mode").fetchone(), ("wal",))
        await ledger.close()
        with closing(sqlite3.connect(self.path)) as reader:
            self.assertEqual(reader.execute("PRAGMA journal_mode").fetchone(), ("delete",))
        self.assertEqual(sorted(p.name for p in self.directory.iterdir()), ["usage.sqlite"])

    async def test_record_after_close_is_logged_not_raised(self) -> None:
        """A request ending after the stop does not fail because of the ledger; the lost
        usage is an error event (naming no subject)."""
        ledger = await self.ledger()
        await ledger.close()
        ledger.record(_entry())
        [error] = self.errors()
        self.assertIn("not recorded", error)
        self.assertNotIn("alice", error)

    async def test_usage_recorded_before_open_is_kept(self) -> None:
        """Usage recorded while the file opens is written once it is open."""
        ledger = UsageLedger(str(self.path), self.clock)
        self.addCleanup(ledger.close)
        opening = ledger.open()
        ledger.record(_entry())
        await opening
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        await ledger.flush()
        self.assertEqual(len(_rows(self.path)), 1)

    async def test_a_failed_write_is_kept_and_tried_again(self) -> None:
        """Disk full: an error event, the usage back in memory (still in the totals), and
        the write tried again at the next interval; nothing counted twice."""
        ledger = await self.ledger()
        self.probe.fail_writes = True
        ledger.record(_entry(prompt=1, completion=2))
        self.clock.advance(1.0)
        await self.assertFailure(ledger.flush(), LedgerError)
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 2)
        errors = self.errors()
        self.assertEqual(len(errors), 2)
        self.assertIn("Cannot write 1 usage rows", errors[0])
        self.assertNotIn("alice", errors[0])
        self.assertEqual(await ledger.totals_for_day("2026-12-05"), {"alice": 3})
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()], [2.0])

        self.probe.fail_writes = False
        commits = self.probe.statements("COMMIT")
        self.clock.advance(1.0)
        await ledger.flush()
        self.assertEqual(self.probe.statements("COMMIT"), commits + 1)
        self.assertEqual(_rows(self.path), [("2026-12-05", "alice", "user", "llama3", 1, 1, 2, 0)])
        self.assertEqual(self.probe.statements("ROLLBACK"), 2)

    async def test_a_failing_disk_does_not_retry_at_every_record(self) -> None:
        """While writes fail, a full aggregate waits for the interval instead of hammering
        the file at every request."""
        ledger = await self.ledger(max_pending=1)
        self.probe.fail_writes = True
        ledger.record(_entry("alice"))
        await self.assertFailure(ledger.flush(), LedgerError)
        self.flushLoggedErrors(sqlite3.OperationalError)
        begun = self.probe.statements("BEGIN IMMEDIATE")
        ledger.record(_entry("alice"))
        await ledger.totals_for_day("2026-12-05")  # anything the thread was given has run
        self.assertEqual(self.probe.statements("BEGIN IMMEDIATE"), begun)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.probe.fail_writes = False

    async def test_memory_is_bounded_while_writes_fail(self) -> None:
        """Once ``2 * max_pending`` keys wait unwritten, usage under a new key is dropped,
        with one error event, and how much is told once a write succeeds again."""
        ledger = await self.ledger(max_pending=2)
        self.probe.fail_writes = True
        ledger.record(_entry("a"))
        ledger.record(_entry("b"))  # full: written at once (and failing)
        ledger.record(_entry("c"))
        ledger.record(_entry("d"))
        ledger.record(_entry("e"))
        ledger.record(_entry("e"))
        ledger.record(_entry("c"))  # a waiting key still adds up
        self.assertEqual(len(self.errors()), 1)
        self.assertIn("not kept", self.errors()[0])
        await self.assertFailure(ledger.flush(), LedgerError)
        self.flushLoggedErrors(sqlite3.OperationalError)
        self.probe.fail_writes = False
        await ledger.flush()
        self.assertEqual([(row[1], row[4]) for row in _rows(self.path)],
                         [("a", 1), ("b", 1), ("c", 2), ("d", 1)])
        self.assertIn("2 usage records were not kept", self.errors()[-1])

    async def test_close_with_a_failing_disk(self) -> None:
        """Close says what it could not write, and still closes the file and its thread."""
        ledger = await self.ledger()
        self.probe.fail_writes = True
        ledger.record(_entry())
        error = await self.assertFailure(ledger.close(), LedgerError)
        self.flushLoggedErrors(sqlite3.OperationalError)
        self.assertIn("1 usage rows could not be written", str(error))
        self.assertEqual(self.probe.statements("close"), 1)
        await ledger.close()

    async def test_sqlite_only_in_the_ledger_thread(self) -> None:
        """Opening, writing, reading totals and closing all run in one thread that is not
        the reactor's."""
        ledger = await self.ledger()
        ledger.record(_entry())
        self.clock.advance(1.0)
        await ledger.flush()
        await ledger.totals_for_day("2026-12-05")
        await ledger.close()
        threads = {thread for thread, _ in self.probe.calls}
        self.assertEqual(len(threads), 1)
        self.assertIsNot(threads.pop(), threading.main_thread())
        self.assertEqual(self.probe.calls[0][1], "connect")
        self.assertEqual(self.probe.calls[-1][1], "close")

    async def test_open_once(self) -> None:
        """A ledger is opened once."""
        ledger = await self.ledger()
        await self.assertFailure(ledger.open(), LedgerError)

    async def test_closing_an_unopened_ledger(self) -> None:
        """Closing a ledger never opened does nothing (no thread, no file)."""
        await UsageLedger(str(self.path), self.clock).close()
        self.assertFalse(self.path.exists())

    async def test_close_while_opening(self) -> None:
        """A stop during the start waits for the file to open, then closes it."""
        ledger = UsageLedger(str(self.path), self.clock, connection_factory=self.probe.factory())
        opening = ledger.open()
        ledger.record(_entry())
        await ledger.close()
        await opening
        self.assertEqual(len(_rows(self.path)), 1)
        self.assertEqual(self.probe.statements("close"), 1)

    async def test_totals_need_an_open_ledger(self) -> None:
        """Asking before ``open()`` fails clearly."""
        ledger = UsageLedger(str(self.path), self.clock)
        await self.assertFailure(ledger.totals_for_day("2026-12-05"), LedgerError)
        await self.assertFailure(ledger.flush(), LedgerError)


class LedgerFileTests(TestCase):
    """Files the gateway must refuse to start on, each named in the error."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.path = self.directory / "usage.sqlite"

    async def refused(self, path: Path) -> LedgerError:
        """The error opening a ledger on ``path`` fails with."""
        ledger = UsageLedger(str(path), _Clock())
        error = await self.assertFailure(ledger.open(), LedgerError)
        self.assertIn(str(path), str(error))
        await ledger.close()
        return error

    async def test_missing_directory(self) -> None:
        """The directory is not created: a typo in the path is an error, not a new tree."""
        error = await self.refused(self.directory / "missing" / "usage.sqlite")
        self.assertIn("no directory", str(error))
        self.assertFalse((self.directory / "missing").exists())

    async def test_not_a_database(self) -> None:
        """A corrupt file is refused and left as it is."""
        self.path.write_bytes(b"not sqlite at all " * 100)
        error = await self.refused(self.path)
        self.assertIn("not a usage ledger", str(error))
        self.assertEqual(self.path.read_bytes(), b"not sqlite at all " * 100)

    async def test_not_openable(self) -> None:
        """A path SQLite cannot open (here a directory) is refused."""
        self.path.mkdir()
        self.assertIn("cannot open", str(await self.refused(self.path)))

    async def test_another_database(self) -> None:
        """Some other SQLite database given by mistake is not written into."""
        with closing(sqlite3.connect(self.path)) as connection:
            connection.execute("CREATE TABLE accounts (id INTEGER)")
        self.assertIn("holds the tables accounts", str(await self.refused(self.path)))

    async def test_newer_schema(self) -> None:
        """A file written by a newer runnergw is not touched by an older one."""
        with closing(sqlite3.connect(self.path, isolation_level=None)) as connection:
            create_schema(connection)
            connection.execute("PRAGMA user_version = 99")
        error = await self.refused(self.path)
        self.assertIn("schema version 99 is newer", str(error))

    async def test_new_file_gets_the_schema(self) -> None:
        """A missing file is created with the table and the schema version."""
        ledger = UsageLedger(str(self.path), _Clock())
        await ledger.open()
        await ledger.close()
        with closing(sqlite3.connect(self.path)) as connection:
            self.assertEqual(connection.execute("PRAGMA user_version").fetchone(), (1,))
            self.assertEqual(connection.execute("SELECT COUNT(*) FROM usage").fetchone(), (0,))
