"""Several gateway processes (``server.workers``) writing one usage ledger: SQLite in WAL
mode with ``BEGIN IMMEDIATE`` takes every process's batches whole, none lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from runnergw.usage.store import close_ledger_file, open_ledger_file, read_day_totals
from tests.helpers.python_program import run_program

__all__ = ["LedgerProcessesTests"]

BATCHES = 200
"""Batches each process writes, one transaction each."""

_WRITER = """
import sqlite3, sys
from runnergw.usage.entry import UsageSums
from runnergw.usage.store import close_ledger_file, open_ledger_file, write_batch
connection = open_ledger_file(sys.argv[1], sqlite3.Connection)
key = ("2026-12-05", sys.argv[2], "user", "llama3.2:latest")
for _ in range(int(sys.argv[3])):
    write_batch(connection, {key: UsageSums(1, 10, 5, 0)})
    write_batch(connection, {("2026-12-05", "shared", "user", "m"): UsageSums(1, 1, 0, 0)})
close_ledger_file(connection)
"""


class LedgerProcessesTests(TestCase):
    """Two processes, one ledger file."""

    timeout = 60

    async def test_two_writers_lose_nothing(self) -> None:
        """Two processes each adding to their own subject and to a shared one at the same
        time: every batch is counted, in both sums."""
        path = str(Path(self.mktemp()).resolve())
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        close_ledger_file(open_ledger_file(path, sqlite3.Connection))  # made once
        writers = []
        for subject in ("alice", "bob"):
            writers.append(run_program(_WRITER, path, subject, str(BATCHES)))
        for code, errors in await gatherResults(writers):
            self.assertEqual(code, 0, errors.decode())
        connection = open_ledger_file(path, sqlite3.Connection)
        try:
            totals = read_day_totals(connection, "2026-12-05")
            requests = dict(connection.execute(
                "SELECT subject, requests FROM usage WHERE day = '2026-12-05'").fetchall())
        finally:
            close_ledger_file(connection)
        self.assertEqual(totals, {"alice": 15 * BATCHES, "bob": 15 * BATCHES,
                                  "shared": 2 * BATCHES})
        self.assertEqual(requests["shared"], 2 * BATCHES)
