"""Usage ledger files written as the gateway leaves them, for the report and the command."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from runnergw.usage.schema import create_schema

__all__ = ["SAMPLE_USAGE", "write_ledger"]

SAMPLE_USAGE: Sequence[tuple[str, str, str, str, int, int, int, int]] = (
    # day, subject, role, model, requests, prompt, completion, truncated
    ("2026-12-04", "alice", "user", "llama3", 2, 100, 200, 0),
    ("2026-12-05", "alice", "user", "qwen", 1, 10, 20, 1),
    ("2026-12-05", "bob", "admin", "llama3", 3, 300, 600, 0),
    ("2026-12-06", "carol", "user", "llama3", 1, 5, 25, 0),
    ("2026-12-06", "dave", "user", "qwen", 1, 25, 5, 0),
)
"""Four subjects over three days and two models; carol and dave tie on total tokens."""


def write_ledger(path: Path, rows: Sequence[tuple[object, ...]] = SAMPLE_USAGE) -> None:
    """A ledger file at ``path`` holding ``rows``."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        create_schema(connection)
        connection.executemany("INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
