"""A small Python program run in a process of its own (several processes writing one file)."""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol

__all__ = ["run_program"]


class _Program(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[tuple[int, bytes]] = Deferred()
        self.errors = b""

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if reason.check(ProcessDone, ProcessTerminated) else -1
        self.ended.callback((code, self.errors))


def run_program(source: str, *args: str) -> Deferred[tuple[int, bytes]]:
    """Start ``python -c source args…`` with the test's interpreter and environment; fires
    with its exit code and what it wrote on standard error."""
    program = _Program()
    reactor.spawnProcess(program, sys.executable, [sys.executable, "-c", source, *args],
                         env=None)
    return program.ended
