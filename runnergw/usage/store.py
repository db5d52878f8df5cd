"""The ledger's SQLite file, as its own thread uses it: open, write a batch of sums, read a
day's totals, close. Nothing here may run on the reactor thread."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable

from runnergw.usage.entry import UsageKey, UsageSums
from runnergw.usage.schema import LedgerError, check_schema, create_schema

__all__ = ["WAL_PAUSE", "WAL_TRIES", "close_ledger_file", "open_ledger_file", "read_day_totals",
           "write_batch"]

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


def open_ledger_file(path: str, factory: type[sqlite3.Connection],
                     wait: Callable[[float], None] = time.sleep) -> sqlite3.Connection:
    """Open (creating it if need be) the ledger file, its schema made or checked, in WAL
    mode; the caller's thread owns the connection (``wait`` pauses it between tries of a
    file another process holds).

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
        _use_write_ahead_log(connection, wait)
    except sqlite3.Error as e:
        connection.close()
        raise LedgerError(path, f"cannot open ({e})") from e
    except BaseException:
        connection.close()
        raise
    return connection


WAL_TRIES = 100
"""Tries at putting the file in WAL mode while other processes hold it, ``WAL_PAUSE`` apart."""
WAL_PAUSE = 0.05


def _use_write_ahead_log(connection: sqlite3.Connection, wait: Callable[[float], None]) -> None:
    """Put the file in WAL mode, as every writer of it needs. Changing the mode needs the
    file to itself: while another gateway process opens or closes it (``server.workers``),
    SQLite says it is locked at once, whatever the busy timeout; so it is tried again, a
    few seconds at most."""
    for attempt in range(WAL_TRIES):
        try:
            (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() == "wal":
                return
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or attempt == WAL_TRIES - 1:
                raise
            wait(WAL_PAUSE)


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
