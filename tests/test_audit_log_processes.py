"""Several gateway processes (``server.workers``) appending to one audit file: each record
is one write to a file opened with ``O_APPEND``, so lines never mix, however long."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

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


class _Writer(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[tuple[int, bytes]] = Deferred()
        self.errors = b""

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if reason.check(ProcessDone, ProcessTerminated) else -1
        self.ended.callback((code, self.errors))


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
            writer = _Writer()
            reactor.spawnProcess(writer, sys.executable,
                                 [sys.executable, "-c", _WRITER, str(path), writer_name,
                                  str(RECORDS)], env=None)
            ended.append(writer.ended)
        for code, errors in await gatherResults(ended):
            self.assertEqual(code, 0, errors.decode())
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for writer_name in ("a", "b"):
            self.assertEqual([r["index"] for r in records if r["writer"] == writer_name],
                             list(range(RECORDS)))
