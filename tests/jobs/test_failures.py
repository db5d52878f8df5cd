"""What the client is answered when a job cannot run: the program's own fault is its 400; the
node's resources running out a 503 to retry; no room a 507; anything else a 500 the
operator finds in the log."""

from __future__ import annotations

import errno
import os

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange
from runnergw.http.headers import Headers
from runnergw.jobs.failures import (
    RETRY_AFTER,
    node_failure,
    output_refusal,
    start_refusal,
    storage_refusal,
)

__all__ = ["NodeFailureTests", "RefusalTests"]

_JOBS = "/var/lib/runnergw/jobs"


def _exchange() -> Exchange:
    """A command request in the terminal's hands."""
    return Exchange(request_id="req-9", method="POST", path="/m/", query="", version="HTTP/1.1",
                    headers=Headers([("Host", "node")]), client_address="192.0.2.1",
                    secure=True, started=0.0, content_length=0)


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class NodeFailureTests(SynchronousTestCase):
    """A failure of the node's own, not of the request."""

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_resources_running_out_is_a_503_to_retry(self) -> None:
        """Too many open files: 503 with Retry-After; nothing for the operator to fix."""
        exchange = _exchange()
        for code in (errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM, errno.ENOBUFS):
            refusal = node_failure(exchange, _error(code), "job start", "not shown", _JOBS)
            self.assertEqual((refusal.status, refusal.headers),
                             (503, (("Retry-After", RETRY_AFTER),)))
        self.assertEqual(exchange.outcome, "ok")
        self.assertEqual(len(self.events), 0)

    def test_anything_else_is_a_logged_500(self) -> None:
        """A failing disk: 500 with the given message, an error outcome, and a log line
        naming the request, what failed, where and why."""
        exchange = _exchange()
        refusal = node_failure(exchange, _error(errno.EIO), "job start",
                               "The job could not be started", _JOBS)
        self.assertEqual((refusal.status, refusal.message),
                         (500, "The job could not be started"))
        self.assertEqual(refusal.reason, f"job start: {os.strerror(errno.EIO)}")
        self.assertEqual(exchange.outcome, "error")
        [event] = self.events
        self.assertEqual((event["request_id"], event["what"], event["jobs_path"],
                          event["reason"]), ("req-9", "job start", _JOBS, os.strerror(errno.EIO)))


class RefusalTests(SynchronousTestCase):
    """The answers the command terminal gives for each step that fails."""

    def test_a_program_that_cannot_start_is_the_clients_400(self) -> None:
        """Missing or not executable: 400 naming the program, the command failed."""
        for code in (errno.ENOENT, errno.EACCES, errno.ENOEXEC):
            exchange = _exchange()
            refusal = start_refusal(exchange, _error(code), "/opt/model/run", _JOBS)
            self.assertEqual((refusal.status, refusal.message), (
                400, f"Command execution failed: cannot start /opt/model/run: "
                     f"{os.strerror(code)}"))
            self.assertEqual(exchange.outcome, "command_failed")

    def test_a_start_failing_for_the_node_is_the_nodes(self) -> None:
        """Out of descriptors while starting: 503, never the program's 400."""
        refusal = start_refusal(_exchange(), _error(errno.EMFILE), "/opt/model/run", _JOBS)
        self.assertEqual(refusal.status, 503)

    def test_no_room_for_the_upload_is_507(self) -> None:
        """A full disk or quota: 507; other storage failures name the upload."""
        for code in (errno.ENOSPC, errno.EDQUOT):
            refusal = storage_refusal(_exchange(), _error(code), "upload storage", _JOBS)
            self.assertEqual((refusal.status, refusal.message),
                             (507, "The node has no room for the upload"))
        refusal = storage_refusal(_exchange(), _error(errno.EROFS), "upload storage", _JOBS)
        self.assertEqual((refusal.status, refusal.message),
                         (500, "The node could not store the upload"))

    def test_outputs_the_node_cannot_read(self) -> None:
        """Outputs that cannot be opened are the node's 500, not a signed missing output."""
        refusal = output_refusal(_exchange(), _error(errno.EIO), _JOBS)
        self.assertEqual((refusal.status, refusal.message),
                         (500, "The outputs could not be read"))
        self.assertEqual(refusal.reason, f"outputs: {os.strerror(errno.EIO)}")
