"""The usage report: sums read back from a ledger file, grouped and sorted, in three formats,
without ever writing to the file."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from contextlib import closing
from datetime import date
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.usage.report import Row, format_csv, format_json, format_table, usage_report
from runnergw.usage.schema import LedgerError
from tests.helpers.ledgers import write_ledger

__all__ = ["FormatTests", "ReportTests"]

class ReportTests(SynchronousTestCase):
    """Reading the ledger for a person."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.path = self.directory / "usage.sqlite"
        write_ledger(self.path)

    def test_by_subject_most_first(self) -> None:
        """Per subject over every day, role and model; the biggest user first, a tie by
        name."""
        self.assertEqual(usage_report(str(self.path)), [
            Row("bob", 3, 300, 600, 900, 0),
            Row("alice", 3, 110, 220, 330, 1),
            Row("carol", 1, 5, 25, 30, 0),
            Row("dave", 1, 25, 5, 30, 0),
        ])

    def test_by_model(self) -> None:
        """Per model, the most used first."""
        self.assertEqual(usage_report(str(self.path), by="model"), [
            Row("llama3", 6, 405, 825, 1230, 0),
            Row("qwen", 2, 35, 25, 60, 1),
        ])

    def test_by_day_in_order(self) -> None:
        """Per day, oldest first whatever the totals."""
        self.assertEqual([row.key for row in usage_report(str(self.path), by="day")],
                         ["2026-12-04", "2026-12-05", "2026-12-06"])

    def test_since(self) -> None:
        """``since`` leaves out the days before it, and keeps that day."""
        rows = usage_report(str(self.path), since=date(2026, 12, 5), by="day")
        self.assertEqual([row.key for row in rows], ["2026-12-05", "2026-12-06"])
        self.assertEqual(usage_report(str(self.path), since=date(2027, 1, 1)), [])

    def test_unknown_grouping(self) -> None:
        """A grouping other than subject, model or day is refused, never put in the SQL."""
        self.assertRaises(ValueError, usage_report, str(self.path), by="role; DROP")

    def test_missing_file_named_and_not_created(self) -> None:
        """A missing ledger is an error naming it; the report does not create it."""
        missing = self.directory / "missing.sqlite"
        error = self.assertRaises(LedgerError, usage_report, str(missing))
        self.assertEqual(str(error), f"{missing}: no such file")
        self.assertFalse(missing.exists())

    def test_corrupt_file(self) -> None:
        """A file that is not a ledger is an error naming it."""
        self.path.write_bytes(b"garbage " * 200)
        error = self.assertRaises(LedgerError, usage_report, str(self.path))
        self.assertIn(f"{self.path}: not a usage ledger", str(error))

    def test_empty_file(self) -> None:
        """An empty file is not a ledger (the gateway makes the schema when it creates one)."""
        self.path.write_bytes(b"")
        error = self.assertRaises(LedgerError, usage_report, str(self.path))
        self.assertIn("not a usage ledger", str(error))

    def test_newer_schema(self) -> None:
        """A ledger from a newer runnergw is not read with the wrong columns."""
        with closing(sqlite3.connect(self.path)) as connection:
            connection.execute("PRAGMA user_version = 2")
        error = self.assertRaises(LedgerError, usage_report, str(self.path))
        self.assertIn("schema version 2 is newer", str(error))

    def test_reads_while_the_gateway_writes(self) -> None:
        """With the gateway's file in WAL mode and a write transaction open, the report
        still reads what was committed: it waits for no write lock."""
        with closing(sqlite3.connect(self.path, isolation_level=None, timeout=0)) as writer:
            writer.execute("PRAGMA journal_mode = WAL")
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO usage VALUES ('2026-12-07', 'erin', 'user', 'qwen', "
                           "1, 1, 1, 0)")
            self.assertEqual(len(usage_report(str(self.path))), 4)
            writer.execute("COMMIT")
            self.assertEqual(len(usage_report(str(self.path))), 5)

    def test_creates_no_file(self) -> None:
        """Reading a ledger the gateway closed leaves the directory as it was, even for a
        name that needs escaping in an SQLite URI."""
        odd = self.directory / "usage #1?.sqlite"
        self.path.rename(odd)
        self.assertEqual(len(usage_report(str(odd))), 4)
        self.assertEqual([p.name for p in self.directory.iterdir()], [odd.name])


class FormatTests(SynchronousTestCase):
    """The three ways a report is printed."""

    rows = [Row("alice", 3, 110, 220, 330, 1), Row("bob-the-builder", 12, 5, 6, 11, 0)]

    def test_table(self) -> None:
        """Numbers right-aligned under headings named after the grouping."""
        self.assertEqual(format_table(self.rows, "subject"), (
            "SUBJECT          REQUESTS  PROMPT  COMPLETION  TOTAL  TRUNCATED\n"
            "alice                   3     110         220    330          1\n"
            "bob-the-builder        12       5           6     11          0\n"))

    def test_empty_table_has_its_heading(self) -> None:
        """No usage prints the heading line and nothing else."""
        self.assertEqual(format_table([], "day"),
                         "DAY  REQUESTS  PROMPT  COMPLETION  TOTAL  TRUNCATED\n")

    def test_json(self) -> None:
        """An array of objects with every field; an empty report is ``[]``."""
        self.assertEqual(json.loads(format_json(self.rows))[1], {
            "key": "bob-the-builder", "requests": 12, "prompt_tokens": 5,
            "completion_tokens": 6, "total_tokens": 11, "truncated": 0})
        self.assertEqual(format_json([]), "[]\n")

    def test_csv(self) -> None:
        """A header line and one line per row, quoted as CSV needs."""
        rows = [*self.rows, Row('a, "b"', 1, 1, 1, 2, 0)]
        text = format_csv(rows)
        self.assertTrue(text.startswith(
            "key,requests,prompt_tokens,completion_tokens,total_tokens,truncated\n"
            "alice,3,110,220,330,1\n"))
        self.assertEqual(list(csv.reader(io.StringIO(text)))[-1],
                         ['a, "b"', "1", "1", "1", "2", "0"])
        self.assertEqual(format_csv([]).count("\n"), 1)
