"""Several gateway processes (``server.workers``) appending to one audit file: each record
is one write to a file opened with ``O_APPEND``, so lines never mix, however long."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from tests.helpers.python_program import run_program

__all__ = ["AuditLogProcessesTests"]

RECORDS = 300
"""Records each process appends."""

_WRITER = """
import sys
from runnergw.audit_log import AuditLog
audit = AuditLog(sys.argv[1])
for index in range(int(sys.argv[3])):
    # Longer than the stream's buffer (8 KiB) and a pipe's atomic write (4 KiB).
    audit.write({"writer": sys.argv[2], "index": index, "path": "/" + "x" * 20000})
audit.close()
"""


class AuditLogProcessesTests(TestCase):
    """Two processes, one audit file."""

    timeout = 60

    async def test_lines_never_mix(self) -> None:
        """Two processes appending long records at once: every line is one whole record,
        and every record of both is there."""
        path = Path(self.mktemp()).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        ended = []
        for writer_name in ("a", "b"):
            ended.append(run_program(_WRITER, str(path), writer_name, str(RECORDS)))
        for code, errors in await gatherResults(ended):
            self.assertEqual(code, 0, errors.decode())
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for writer_name in ("a", "b"):
            self.assertEqual([r["index"] for r in records if r["writer"] == writer_name],
                             list(range(RECORDS)))
