"""The ledger's SQLite file, as its own thread uses it: open, write a batch of sums, read a
day's totals, close. Nothing here may run on the reactor thread."""

from __future__ import annotations

import contextlib
import os
import sqlite3

from runnergw.usage.entry import UsageKey, UsageSums
from runnergw.usage.schema import LedgerError, check_schema, create_schema

__all__ = ["close_ledger_file", "open_ledger_file", "read_day_totals", "write_batch"]

_UPSERT = """
INSERT INTO usage (day, subject, role, model, requests, prompt_tokens, completion_tokens,
                   truncated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (day, subject, role, model) DO UPDATE SET
    requests = requests + excluded.requests,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    truncated = truncated + excluded.truncated
"""

_TOTALS = """
SELECT subject, SUM(prompt_tokens + completion_tokens) FROM usage WHERE day = ?
GROUP BY subject
"""


def open_ledger_file(path: str, factory: type[sqlite3.Connection]) -> sqlite3.Connection:
    """Open (creating it if need be) the ledger file, its schema made or checked, in WAL
    mode; the caller's thread owns the connection.

    Raises:
        LedgerError: the directory is missing, the file cannot be opened, is not a ledger or
            is of a newer schema.
    """
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise LedgerError(path, f"no directory {directory}")
    try:
        connection = sqlite3.connect(path, isolation_level=None, factory=factory)
    except sqlite3.Error as e:
        raise LedgerError(path, f"cannot open ({e})") from e
    try:
        if check_schema(connection, path) == 0:
            create_schema(connection)
        connection.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error as e:
        connection.close()
        raise LedgerError(path, f"cannot open ({e})") from e
    except BaseException:
        connection.close()
        raise
    return connection


def write_batch(connection: sqlite3.Connection, batch: dict[UsageKey, UsageSums]) -> None:
    """Add ``batch`` to the file's sums, in one transaction (all of it or nothing)."""
    rows = [(*key, sums.requests, sums.prompt_tokens, sums.completion_tokens,
             sums.truncated) for key, sums in batch.items()]
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.executemany(_UPSERT, rows)
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise


def read_day_totals(connection: sqlite3.Connection, day: str) -> dict[str, int]:
    """Prompt plus generated tokens per subject on ``day``, as the file holds them."""
    return {subject: int(total) for subject, total in connection.execute(_TOTALS, (day,))}


def close_ledger_file(connection: sqlite3.Connection) -> None:
    """Close the file, back in a rollback journal, so a report run while the gateway is
    stopped finds no WAL to read and creates no -wal/-shm files (a reader holding the file
    keeps it in WAL, which is as good)."""
    try:
        with contextlib.suppress(sqlite3.OperationalError):
            connection.execute("PRAGMA journal_mode = DELETE")
    finally:
        connection.close()
