"""The usage ledger's file: one SQLite table of sums per day, subject, role and model, and the
schema version kept in ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "LedgerError", "check_schema", "create_schema"]

SCHEMA_VERSION = 1
"""The version this runnergw writes; a file of a newer version is refused, never rewritten."""

_TABLE = """
CREATE TABLE usage (
    day TEXT NOT NULL,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    PRIMARY KEY (day, subject, role, model)
)
"""


class LedgerError(Exception):
    """A ledger file that cannot be used; the message names the file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_schema(connection: sqlite3.Connection, path: str) -> int:
    """The schema version of the file behind ``connection``: 0 for a new, empty file, else
    ``SCHEMA_VERSION`` or older.

    Raises:
        LedgerError: the file is not an SQLite database, holds tables but no ledger (some
            other database given by mistake), or was written by a newer runnergw.
    """
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        tables = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    except sqlite3.DatabaseError as e:
        raise LedgerError(path, f"not a usage ledger ({e})") from e
    if version > SCHEMA_VERSION:
        raise LedgerError(path, f"schema version {version} is newer than this runnergw's "
                                f"({SCHEMA_VERSION}); use a newer runnergw")
    if version == 0 and tables:
        raise LedgerError(path, f"not a usage ledger (it holds the tables {', '.join(tables)})")
    return int(version)


def create_schema(connection: sqlite3.Connection) -> None:
    """Create the table and set the version, in one transaction (a crash leaves the file
    empty, never half made); nothing when another process made them meanwhile.

    The connection must be in autocommit mode (``isolation_level=None``).
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Another process opening the same new file (``server.workers``) may have made it
        # while this one waited for the lock.
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            connection.execute("COMMIT")
            return
        connection.execute(_TABLE)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
