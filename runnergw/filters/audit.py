"""The ``audit`` filter: one JSON line per request, whatever its outcome."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from runnergw.audit_log import AuditLog
from runnergw.chain.exchange import Exchange
from runnergw.chain.interfaces import IFilter

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["AuditFilter"]


def _milliseconds(start: float, end: float | None) -> float | None:
    return None if end is None else round((end - start) * 1000.0, 3)


class _TimeFormat:
    """``datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")``, with
    the date and time of day written once per second rather than once per record."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second < 0:
            return datetime.fromtimestamp(when, timezone.utc).isoformat(
                timespec="milliseconds")
        # As datetime does: the fraction rounded to microseconds (which may carry into the
        # next second), then cut to milliseconds.
        micro = round((when - second) * 1e6)
        if micro >= 1_000_000:
            second += 1
            micro -= 1_000_000
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.")
            self._second = second
        return f"{self._prefix}{micro // 1000:03d}+00:00"


@implementer(IFilter)
class AuditFilter:
    """Records who asked what of which runner, and how it went. Never a token or a prompt."""

    name = "audit"

    def __init__(self, audit_log: AuditLog) -> None:
        self.audit_log = audit_log
        self._time = _TimeFormat()

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> AuditFilter:
        """Writes to the gateway's audit trail (``audit.path``)."""
        return cls(context.audit_log)

    def done(self, exchange: Exchange) -> None:
        """Write the exchange's audit line."""
        identity = exchange.identity
        record: dict[str, Any] = {
            "time": self._time(exchange.started),
            "request_id": exchange.request_id,
            "client": exchange.client_address,
            "subject": identity.subject if identity else None,
            "role": identity.role if identity else None,
            "token": identity.token_kind if identity else None,
            "route": exchange.route.name if exchange.route else None,
            "method": exchange.method,
            "path": exchange.path,
            "model": exchange.model,
            "status": exchange.status,
            "bytes_in": exchange.bytes_in,
            "bytes_out": exchange.bytes_out,
            "ttfb_ms": _milliseconds(exchange.started, exchange.first_byte_at),
            "duration_ms": _milliseconds(exchange.started, exchange.finished_at),
            "upstream": exchange.upstream,
            "outcome": exchange.outcome,
        }
        if exchange.reason:
            record["reason"] = exchange.reason
        if exchange.notes:
            record.update(exchange.notes)
        self.audit_log.write(record)
