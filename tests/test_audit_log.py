"""The audit trail itself: JSON lines appended to a file, stdout or nowhere, and a file that
follows logrotate when the gateway gets SIGHUP."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from runnergw.audit_log import AuditLog

__all__ = ["AuditFileTests", "AuditStdoutTests", "AuditWriteFailureTests"]


def _lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class AuditFileTests(SynchronousTestCase):
    """An audit trail in a file, as ``audit.path`` names it."""

    def setUp(self) -> None:
        previous = os.umask(0o022)
        self.addCleanup(os.umask, previous)
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.path = self.directory / "audit.log"

    def open(self) -> AuditLog:
        audit_log = AuditLog(str(self.path))
        self.addCleanup(audit_log.close)
        return audit_log

    def test_one_compact_json_object_per_line(self) -> None:
        """Each record is one line of JSON, readable by line-oriented tools, at once (a
        crash loses no record already written)."""
        audit_log = self.open()
        audit_log.write({"request_id": "r1", "status": 200})
        self.assertEqual(self.path.read_text(), '{"request_id":"r1","status":200}\n')
        audit_log.write({"request_id": "r2", "path": "/api/chat\nforged"})
        self.assertEqual(_lines(self.path), [{"request_id": "r1", "status": 200},
                                             {"request_id": "r2", "path": "/api/chat\nforged"}])

    def test_appends_to_an_existing_trail(self) -> None:
        """A restart adds to the trail; yesterday's lines stay."""
        self.path.write_text('{"request_id":"old"}\n')
        self.open().write({"request_id": "new"})
        self.assertEqual(_lines(self.path), [{"request_id": "old"}, {"request_id": "new"}])

    def test_created_readable_by_owner_and_group_only(self) -> None:
        """A new trail is mode 0640: client addresses and subjects are not for every user."""
        self.open()
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o640)

    def test_reopen_follows_logrotate(self) -> None:
        """After logrotate moves the file away, reopen (SIGHUP) starts a new file there; the
        moved file keeps what was written before."""
        audit_log = self.open()
        audit_log.write({"n": 1})
        rotated = self.directory / "audit.log.1"
        self.path.rename(rotated)
        audit_log.write({"n": 2})
        audit_log.reopen()
        audit_log.write({"n": 3})
        self.assertEqual(_lines(rotated), [{"n": 1}, {"n": 2}])
        self.assertEqual(_lines(self.path), [{"n": 3}])
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o640)

    def test_failed_reopen_keeps_the_old_file(self) -> None:
        """When the file cannot be opened again, reopen raises and records still go to the
        file open until then: no record is lost."""
        audit_log = self.open()
        moved = self.directory.with_name("moved")
        self.directory.rename(moved)
        self.assertRaises(OSError, audit_log.reopen)
        audit_log.write({"n": 1})
        self.assertEqual(_lines(moved / "audit.log"), [{"n": 1}])

    def test_unopenable_file_refused_at_start(self) -> None:
        """A trail that cannot be opened is an error when the gateway starts, not later."""
        self.assertRaises(OSError, AuditLog, str(self.directory / "missing" / "audit.log"))

    def test_nothing_written_after_close(self) -> None:
        """Once closed (the gateway stops), records are dropped instead of failing."""
        audit_log = self.open()
        audit_log.close()
        audit_log.write({"n": 1})
        audit_log.close()
        self.assertEqual(self.path.read_text(), "")


class AuditStdoutTests(SynchronousTestCase):
    """``audit.path: "-"`` (standard output) and ``""`` (no trail)."""

    def setUp(self) -> None:
        self.stdout = io.StringIO()
        self.patch(sys, "stdout", self.stdout)

    def test_dash_is_stdout(self) -> None:
        """"-" writes the lines to standard output, beside twistd's log."""
        audit_log = AuditLog("-")
        audit_log.write({"request_id": "r1"})
        self.assertEqual(self.stdout.getvalue(), '{"request_id":"r1"}\n')

    def test_stdout_survives_close_and_reopen(self) -> None:
        """Stopping the gateway or SIGHUP never closes standard output."""
        audit_log = AuditLog("-")
        audit_log.reopen()
        audit_log.write({"n": 1})
        audit_log.close()
        self.assertFalse(self.stdout.closed)
        self.assertEqual(self.stdout.getvalue(), '{"n":1}\n')

    def test_empty_path_is_off(self) -> None:
        """"" turns the trail off: records go nowhere, and no file is made."""
        here = set(os.listdir("."))
        audit_log = AuditLog("")
        audit_log.write({"n": 1})
        audit_log.reopen()
        audit_log.write({"n": 2})
        audit_log.close()
        self.assertEqual(self.stdout.getvalue(), "")
        self.assertEqual(set(os.listdir(".")), here)


class AuditWriteFailureTests(SynchronousTestCase):
    """A trail that cannot be written to (a full disk) takes neither requests nor the
    gateway's stop down with it."""

    def setUp(self) -> None:
        if not os.path.exists("/dev/full"):
            raise SkipTest("no /dev/full on this system")
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.audit_log = AuditLog("/dev/full")

    def failures(self) -> list[dict[str, Any]]:
        return [event for event in self.events if "log_failure" in event]

    def test_failed_write_is_logged_not_raised(self) -> None:
        """A record that cannot be written is logged with the file; the request that wrote
        it is not failed."""
        self.audit_log.write({"n": 1})
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        [event] = self.failures()
        self.assertEqual(event["path"], "/dev/full")
        self.audit_log.close()
        self.flushLoggedErrors(OSError)

    def test_close_after_a_failed_write(self) -> None:
        """The gateway stops cleanly after the disk was full: closing the trail logs the
        record it could not write instead of raising."""
        self.audit_log.write({"n": 1})
        self.audit_log.close()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)
        self.audit_log.write({"n": 2})
        self.audit_log.close()
        self.assertEqual(len(self.failures()), 2)

    def test_reopen_after_a_failed_write(self) -> None:
        """SIGHUP after the disk was full opens the file again without raising: the trail
        goes on in the new file."""
        self.audit_log.write({"n": 1})
        self.audit_log.reopen()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)
        self.audit_log.close()
