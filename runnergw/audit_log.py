"""The audit trail: one JSON object per line, appended to a file or written to stdout."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from twisted.logger import Logger

from runnergw.logs import level_gate

__all__ = ["AuditLog"]

_ENCODER = json.JSONEncoder(separators=(",", ":"))


class AuditLog:
    """Appends JSON lines. ``reopen()`` (on SIGHUP) follows a file moved away by logrotate."""

    log = Logger(observer=level_gate)

    def __init__(self, path: str) -> None:
        self.path = path
        self._stream: TextIO | None = None
        self.reopen()

    def reopen(self) -> None:
        """Open (again) the configured file.

        Raises:
            OSError: the file cannot be opened for appending.
        """
        if self.path in ("", "-"):
            self._stream = sys.stdout if self.path == "-" else None
            return
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        stream = os.fdopen(descriptor, "a", encoding="utf-8", buffering=1)
        old, self._stream = self._stream, stream
        self._close(old)

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (a small write; the stream is line-buffered)."""
        if self._stream is None:
            return
        try:
            self._stream.write(_ENCODER.encode(record) + "\n")
        except (OSError, ValueError):
            self.log.failure("Cannot write to the audit trail {path}", path=self.path)

    def close(self) -> None:
        """Close the file (not stdout)."""
        stream, self._stream = self._stream, None
        self._close(stream)

    def _close(self, stream: TextIO | None) -> None:
        """Close a stream we opened; a record a failed write left behind is logged as lost,
        never raised (the gateway must still stop, or go on in the reopened file)."""
        if stream is None or stream is sys.stdout:
            return
        try:
            stream.close()
        except (OSError, ValueError):
            self.log.failure("Cannot write to the audit trail {path}", path=self.path)
