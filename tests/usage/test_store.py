"""The ledger's SQLite file as its thread uses it: batches written whole or not at all, a
day's totals, a file closed without its write-ahead log."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.usage.entry import UsageSums
from runnergw.usage.schema import LedgerError
from runnergw.usage.store import (
    WAL_PAUSE,
    WAL_TRIES,
    close_ledger_file,
    open_ledger_file,
    read_day_totals,
    write_batch,
)

__all__ = ["LedgerFileTests", "SharedFileTests"]


class LedgerFileTests(SynchronousTestCase):
    """One ledger file in a temporary directory."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.path = self.directory / "usage.sqlite"
        self.connection = open_ledger_file(str(self.path), sqlite3.Connection)
        self.addCleanup(self._close)

    def _close(self) -> None:
        if self.connection is not None:
            close_ledger_file(self.connection)

    def rows(self) -> list[tuple[Any, ...]]:
        return list(self.connection.execute(
            "SELECT day, subject, requests, prompt_tokens, completion_tokens FROM usage "
            "ORDER BY day, subject"))

    def test_batches_add_to_the_rows(self) -> None:
        """A second batch under the same key adds to the row, not beside it."""
        key = ("2026-12-05", "alice", "user", "llama3")
        write_batch(self.connection, {key: UsageSums(1, 10, 20, 0)})
        write_batch(self.connection, {key: UsageSums(2, 1, 2, 0)})
        self.assertEqual(self.rows(), [("2026-12-05", "alice", 3, 11, 22)])

    def test_a_failing_batch_writes_nothing(self) -> None:
        """A batch that fails half-way leaves no row of it: the ledger keeps it all in
        memory for the next try, so a partial write would count some usage twice."""
        good = ("2026-12-05", "alice", "user", "llama3")
        bad = ("2026-12-05", object(), "user", "llama3")  # SQLite cannot store it
        batch = {good: UsageSums(1, 10, 20, 0), bad: UsageSums(1, 1, 1, 0)}
        self.assertRaises(sqlite3.Error, write_batch, self.connection, batch)  # type: ignore[arg-type]
        self.assertEqual(self.rows(), [])

    def test_day_totals_per_subject(self) -> None:
        """A day's totals are prompt plus generated tokens per subject, over every role and
        model, and only that day."""
        write_batch(self.connection, {
            ("2026-12-05", "alice", "user", "llama3"): UsageSums(1, 10, 20, 0),
            ("2026-12-05", "alice", "admin", "qwen"): UsageSums(1, 1, 2, 0),
            ("2026-12-05", "bob", "user", "llama3"): UsageSums(1, 5, 5, 0),
            ("2026-12-04", "alice", "user", "llama3"): UsageSums(1, 100, 100, 0),
        })
        self.assertEqual(read_day_totals(self.connection, "2026-12-05"),
                         {"alice": 33, "bob": 10})

    def test_closed_without_write_ahead_log(self) -> None:
        """A closed file has no -wal or -shm beside it: a report run later reads one file."""
        write_batch(self.connection, {("2026-12-05", "a", "r", "m"): UsageSums(1, 1, 1, 0)})
        close_ledger_file(self.connection)
        self.connection = None  # type: ignore[assignment]
        self.assertEqual(sorted(p.name for p in self.directory.iterdir()), ["usage.sqlite"])
        with closing(sqlite3.connect(self.path)) as reader:
            self.assertEqual(reader.execute("SELECT COUNT(*) FROM usage").fetchone(), (1,))

    def test_missing_directory_is_not_created(self) -> None:
        """A typo in the path is an error naming it, not a new directory tree."""
        path = self.directory / "missing" / "usage.sqlite"
        error = self.assertRaises(LedgerError, open_ledger_file, str(path), sqlite3.Connection)
        self.assertIn("no directory", str(error))
        self.assertFalse(path.parent.exists())


class _LockedAtFirst(sqlite3.Connection):
    """A connection whose first tries at WAL mode find the file held by another process, as
    SQLite reports it while another gateway process opens or closes the file."""

    refusals = 2

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if sql == "PRAGMA journal_mode = WAL" and type(self).refusals:
            type(self).refusals -= 1
            raise sqlite3.OperationalError("database is locked")
        return super().execute(sql, *args)


class SharedFileTests(SynchronousTestCase):
    """Several gateway processes (``server.workers``) opening one ledger file."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.path = str(self.directory / "usage.sqlite")
        _LockedAtFirst.refusals = 2
        self.pauses: list[float] = []

    def test_wal_mode_tried_again_while_locked(self) -> None:
        """A file another process holds while it opens or closes is put in WAL mode once it
        is free: the gateway does not stop with "database is locked"."""
        connection = open_ledger_file(self.path, _LockedAtFirst, wait=self.pauses.append)
        self.addCleanup(close_ledger_file, connection)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone(), ("wal",))
        self.assertEqual(self.pauses, [WAL_PAUSE, WAL_PAUSE])

    def test_gives_up_after_its_tries(self) -> None:
        """A file that stays locked is an error naming it, after a bounded wait."""
        _LockedAtFirst.refusals = WAL_TRIES
        error = self.assertRaises(LedgerError, open_ledger_file, self.path, _LockedAtFirst,
                                  wait=self.pauses.append)
        self.assertIn("database is locked", str(error))
        self.assertEqual(len(self.pauses), WAL_TRIES - 1)
