"""The ledger file's schema: made in one step, its version checked before any use."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.usage.schema import SCHEMA_VERSION, LedgerError, check_schema, create_schema

__all__ = ["SchemaTests"]


class SchemaTests(SynchronousTestCase):
    """Which files are ledgers, and of which version."""

    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        self.path = directory / "usage.sqlite"

    def connect(self) -> sqlite3.Connection:
        """An autocommit connection to the file, closed after the test."""
        connection = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(connection.close)
        return connection

    def test_new_file_is_version_zero(self) -> None:
        """A new, empty file has no schema yet."""
        self.assertEqual(check_schema(self.connect(), "usage.sqlite"), 0)

    def test_created_schema_has_the_current_version(self) -> None:
        """After ``create_schema`` the file is a ledger of this runnergw's version."""
        connection = self.connect()
        create_schema(connection)
        self.assertEqual(check_schema(connection, "usage.sqlite"), SCHEMA_VERSION)
        self.assertFalse(connection.in_transaction)

    def test_creation_is_all_or_nothing(self) -> None:
        """A creation that fails leaves neither the table nor the version behind."""
        connection = self.connect()
        connection.execute("CREATE TABLE usage (x)")  # in the way
        self.assertRaises(sqlite3.OperationalError, create_schema, connection)
        self.assertFalse(connection.in_transaction)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone(), (0,))

    def test_newer_version_refused(self) -> None:
        """A file of a newer version is refused, naming the file and both versions."""
        connection = self.connect()
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        error = self.assertRaises(LedgerError, check_schema, connection, "usage.sqlite")
        self.assertEqual(str(error), f"usage.sqlite: schema version {SCHEMA_VERSION + 1} is "
                                     f"newer than this runnergw's ({SCHEMA_VERSION}); use a "
                                     "newer runnergw")

    def test_other_database_refused(self) -> None:
        """A database with tables but no ledger version is someone else's."""
        connection = self.connect()
        connection.execute("CREATE TABLE b (x)")
        connection.execute("CREATE TABLE a (x)")
        error = self.assertRaises(LedgerError, check_schema, connection, "usage.sqlite")
        self.assertEqual(str(error), "usage.sqlite: not a usage ledger (it holds the tables a, b)")

    def test_not_a_database_refused(self) -> None:
        """Bytes that are not SQLite are refused, with SQLite's reason."""
        self.path.write_bytes(b"\x00garbage" * 512)
        with closing(sqlite3.connect(self.path)) as connection:
            error = self.assertRaises(LedgerError, check_schema, connection, "usage.sqlite")
        self.assertEqual(error.path, "usage.sqlite")
        self.assertIn("not a usage ledger (file is not a database)", str(error))

    def test_schema_made_by_another_process_meanwhile(self) -> None:
        """A new file whose schema another gateway process made while this one waited for
        the lock (both saw version 0) is used as it is, not made twice."""
        connection = self.connect()
        create_schema(connection)
        create_schema(connection)  # as the second process does, having seen version 0
        self.assertEqual(check_schema(connection, "usage.sqlite"), SCHEMA_VERSION)
