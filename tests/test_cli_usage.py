"""``runnergw usage``: the usage ledger reported as a table, JSON or CSV."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.cli import main
from tests.helpers.ledgers import write_ledger

__all__ = ["UsageCommandTests"]


def _run(*argv: str) -> tuple[int, str, str]:
    """Run the command; returns its status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


class UsageCommandTests(SynchronousTestCase):
    """What an operator sees reading the ledger given with ``--ledger``."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.ledger = self.directory / "usage.sqlite"
        write_ledger(self.ledger)

    def usage(self, *argv: str) -> tuple[int, str, str]:
        """``runnergw usage --ledger <the test's ledger> argv…``."""
        return _run("usage", "--ledger", str(self.ledger), *argv)

    def test_table_by_subject_by_default(self) -> None:
        """With no options: a table, one line per subject, the biggest user first."""
        status, out, err = self.usage()
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, (
            "SUBJECT  REQUESTS  PROMPT  COMPLETION  TOTAL  TRUNCATED\n"
            "bob             3     300         600    900          0\n"
            "alice           3     110         220    330          1\n"
            "carol           1       5          25     30          0\n"
            "dave            1      25           5     30          0\n"))

    def test_json_by_day_since(self) -> None:
        """``--since`` and ``--by day`` with ``--format json``: an array of objects."""
        status, out, _ = self.usage("--since", "2026-12-05", "--by", "day", "--format", "json")
        self.assertEqual(status, 0)
        self.assertEqual([(row["key"], row["total_tokens"]) for row in json.loads(out)],
                         [("2026-12-05", 930), ("2026-12-06", 60)])

    def test_csv_by_model(self) -> None:
        """``--format csv``: a header line, then a line per model."""
        status, out, _ = self.usage("--by", "model", "--format", "csv")
        self.assertEqual(status, 0)
        self.assertEqual(out.splitlines(), [
            "key,requests,prompt_tokens,completion_tokens,total_tokens,truncated",
            "llama3,6,405,825,1230,0",
            "qwen,2,35,25,60,1",
        ])

    def test_empty_ledger(self) -> None:
        """No usage yet: the table's heading alone, or ``[]``."""
        write_ledger(self.ledger.with_name("empty.sqlite"), ())
        self.ledger = self.ledger.with_name("empty.sqlite")
        self.assertEqual(self.usage(), (
            0, "SUBJECT  REQUESTS  PROMPT  COMPLETION  TOTAL  TRUNCATED\n", ""))
        self.assertEqual(self.usage("--format", "json"), (0, "[]\n", ""))

    def test_bad_since(self) -> None:
        """A ``--since`` that is not a YYYY-MM-DD date is a usage error, status 2."""
        for since in ("yesterday", "2026-13-01", "20261205", "2026-12-05T00:00"):
            status, out, err = self.usage("--since", since)
            self.assertEqual((status, out), (2, ""))
            self.assertEqual(err, f"runnergw: --since: expected a date as YYYY-MM-DD, "
                                  f"got {since!r}\n")

    def test_missing_ledger(self) -> None:
        """A ledger file that is not there is named, status 2, and not created."""
        missing = self.directory / "nope.sqlite"
        self.assertEqual(_run("usage", "--ledger", str(missing)),
                         (2, "", f"runnergw: {missing}: no such file\n"))
        self.assertFalse(missing.exists())

    def test_corrupt_ledger(self) -> None:
        """A file that is not a ledger is named, status 2."""
        self.ledger.write_bytes(b"garbage " * 200)
        status, out, err = self.usage()
        self.assertEqual((status, out), (2, ""))
        self.assertTrue(err.startswith(f"runnergw: {self.ledger}: not a usage ledger"))
