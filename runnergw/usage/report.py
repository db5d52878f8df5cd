"""The usage report: the ledger's sums per subject, model or day, as a table, JSON or CSV.

It reads the file the gateway writes, read-only: it never creates the file, never takes a
write lock, and may run while the gateway is writing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Literal

import attrs

from runnergw.usage.schema import LedgerError, check_schema

__all__ = ["GROUPINGS", "Grouping", "Row", "format_csv", "format_json", "format_table",
           "usage_report"]

Grouping = Literal["subject", "model", "day"]
GROUPINGS: tuple[Grouping, ...] = ("subject", "model", "day")

_HEADINGS = ("REQUESTS", "PROMPT", "COMPLETION", "TOTAL", "TRUNCATED")


@attrs.frozen
class Row:
    """The sums of one subject, model or day."""

    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    truncated: int
    """How many answers the gateway cut at a quota."""


def _read(path: str, by: Grouping, since: date | None) -> list[tuple[str, int, int, int, int]]:
    """The sums grouped by the column ``by``, from a read-only connection."""
    if not os.path.exists(path):
        raise LedgerError(path, "no such file")
    where, parameters = ("WHERE day >= ?", (since.isoformat(),)) if since else ("", ())
    query = (f"SELECT {by}, SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), "
             f"SUM(truncated) FROM usage {where} GROUP BY {by}")
    try:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            if check_schema(connection, path) == 0:
                raise LedgerError(path, "not a usage ledger (an empty file)")
            return list(connection.execute(query, parameters))
    except sqlite3.Error as e:
        raise LedgerError(path, f"cannot read ({e})") from e


def usage_report(path: str, *, since: date | None = None,
                 by: Grouping = "subject") -> list[Row]:
    """The usage in the ledger file ``path`` from ``since`` on (every day if None), one row
    per subject, model or day: days in order, subjects and models by total tokens, most
    first.

    Raises:
        LedgerError: the file is missing, not a ledger, or of a newer schema.
        ValueError: ``by`` is not one of ``GROUPINGS``.
    """
    if by not in GROUPINGS:
        raise ValueError(f"cannot group usage by {by!r}: choose one of {', '.join(GROUPINGS)}")
    rows = [Row(key=str(key), requests=requests, prompt_tokens=prompt,
                completion_tokens=completion, total_tokens=prompt + completion,
                truncated=truncated)
            for key, requests, prompt, completion, truncated in _read(path, by, since)]
    if by == "day":
        return sorted(rows, key=lambda row: row.key)
    return sorted(rows, key=lambda row: (-row.total_tokens, row.key))


def _numbers(row: Row) -> tuple[int, ...]:
    return (row.requests, row.prompt_tokens, row.completion_tokens, row.total_tokens,
            row.truncated)


def format_table(rows: Sequence[Row], by: Grouping) -> str:
    """Aligned columns under a heading line, for a person; no rows gives the heading only."""
    lines = [(by.upper(), *_HEADINGS)]
    lines.extend((row.key, *(str(n) for n in _numbers(row))) for row in rows)
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    text = []
    for line in lines:
        cells = [line[0].ljust(widths[0])]
        cells.extend(cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True))
        text.append("  ".join(cells).rstrip())
    return "\n".join(text) + "\n"


def format_json(rows: Sequence[Row]) -> str:
    """A JSON array with one object per row (``[]`` when there is none)."""
    return json.dumps([attrs.asdict(row) for row in rows], indent=2) + "\n"


def format_csv(rows: Sequence[Row]) -> str:
    """A header line with the field names, then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(field.name for field in attrs.fields(Row))
    writer.writerows((row.key, *_numbers(row)) for row in rows)
    return out.getvalue()
