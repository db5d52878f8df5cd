"""How a job that cannot run reaches the client: the program's own fault (missing, not
executable) is the client's 400; the node's own failures (a full disk, no file descriptors
left) are a 503 to retry, a 507 or a logged 500."""

from __future__ import annotations

import errno

from twisted.logger import Logger

from runnergw.chain.exchange import Exchange, Reject
from runnergw.logs import level_gate

__all__ = ["RETRY_AFTER", "node_failure", "output_refusal", "start_refusal", "storage_refusal"]

RETRY_AFTER = "10"
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM, errno.ENOBUFS})
"""Resources of the node running out for a while: worth a retry."""
_PROGRAM_ERRORS = frozenset({errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR,
                             errno.ELOOP, errno.ENAMETOOLONG, errno.EPERM})
"""Why a program cannot start that lies with the program (or the descriptor naming it)."""

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


def start_refusal(exchange: Exchange, error: OSError, program: str, jobs_path: str) -> Reject:
    """The answer when a job cannot start: the program's own fault (missing, not
    executable) is the old node's 400, anything else the node's."""
    if error.errno in _PROGRAM_ERRORS:
        exchange.outcome = "command_failed"
        return Reject(400, f"Command execution failed: cannot start {program}: "
                           f"{error.strerror}", reason="command could not start")
    return node_failure(exchange, error, "job start", "The job could not be started", jobs_path)


def output_refusal(exchange: Exchange, error: OSError, jobs_path: str) -> Reject:
    """The answer when the node cannot read a job's outputs."""
    return node_failure(exchange, error, "outputs", "The outputs could not be read", jobs_path)
