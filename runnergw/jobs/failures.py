"""How the node's own failures (a full disk, no file descriptors left) reach the client."""

from __future__ import annotations

import errno

from twisted.logger import Logger

from runnergw.chain.exchange import Exchange, Reject
from runnergw.logs import level_gate

__all__ = ["RETRY_AFTER", "node_failure", "storage_refusal"]

RETRY_AFTER = "10"
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM, errno.ENOBUFS})
"""Resources of the node running out for a while: worth a retry."""

log = Logger(namespace="runnergw.jobs.failures", observer=level_gate)


def node_failure(exchange: Exchange, error: OSError, what: str, message: str,
                 jobs_path: str) -> Reject:
    """A failure of the node's own, not of the request: its resources running out for a
    while (too many open files) is a 503 to retry; anything else (a read-only or failing
    disk) a 500 the operator must look at, logged with the reason."""
    reason = f"{what}: {error.strerror}"
    if error.errno in _EXHAUSTED:
        return Reject(503, "The node is busy, try again later",
                      headers=(("Retry-After", RETRY_AFTER),), reason=reason)
    log.error("Request {request_id}: {what} failed in {jobs_path}: {reason}",
              request_id=exchange.request_id, what=what, jobs_path=jobs_path,
              reason=error.strerror)
    exchange.outcome = "error"
    return Reject(500, message, reason=reason)


def storage_refusal(exchange: Exchange, error: OSError, what: str, jobs_path: str) -> Reject:
    """The answer when the jobs directory cannot take a job: no room is 507."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return Reject(507, "The node has no room for the upload",
                      reason=f"{what}: {error.strerror}")
    return node_failure(exchange, error, what, "The node could not store the upload", jobs_path)
