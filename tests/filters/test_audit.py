"""The ``audit`` filter on its own: one JSON line per request, never a token or a prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.audit_log import AuditLog
from runnergw.chain.exchange import Exchange, Reject
from runnergw.filters.audit import AuditFilter
from runnergw.filters.token import TokenFilter
from runnergw.testing import Answer, filter_from_settings, make_exchange, run_filters
from tests.http.support import NOW, mint, token_verifier

__all__ = ["AuditFilterTests"]


class AuditFilterTests(SynchronousTestCase):
    """What one request leaves in the audit trail."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.audit_log = AuditLog(str(self.path))
        self.addCleanup(self.audit_log.close)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines()]

    def test_line_fields(self) -> None:
        """A served request's line names who, what, where and how it went."""
        token = mint("alice")
        exchange = make_exchange(
            "POST", "/api/chat", request_id="req-7",
            headers=[("Host", "gw"), ("Authorization", f"Bearer {token}")],
            body=b'{"model": "llama3", "prompt": "the secret plan"}')
        exchange.started = NOW
        run = self.successResultOf(run_filters(
            [AuditFilter(self.audit_log), TokenFilter(token_verifier())], exchange,
            Answer.json({"response": "the secret answer"})))
        self.assertEqual(run.status, 200)
        (record,) = self.records()
        self.assertEqual(record, {
            "time": record["time"], "request_id": "req-7", "client": "192.0.2.10",
            "subject": "alice", "role": None, "token": "v4.public", "route": "test",
            "method": "POST", "path": "/api/chat", "model": None, "status": 200,
            "bytes_in": 0, "bytes_out": 0, "ttfb_ms": None, "duration_ms": None,
            "upstream": None, "outcome": "ok"})
        self.assertTrue(record["time"].endswith("+00:00"))
        text = self.path.read_text()
        for secret in (token, "secret plan", "secret answer"):
            self.assertNotIn(secret, text)

    def test_time_of_each_line(self) -> None:
        """Each line gives the UTC time its request started, to the millisecond (rounded as
        Python's datetime rounds it), also for requests in the same second and across a
        second's end."""
        audit = AuditFilter(self.audit_log)
        moments = [NOW + 0.25, NOW + 0.9994, NOW + 0.9999996, NOW + 1.001, NOW + 86400.5]
        for started in moments:
            exchange = make_exchange("GET", "/api/tags")
            exchange.notes.clear()  # the harness's own note, never sent to the runner
            exchange.started = started
            audit.done(exchange)
        self.assertEqual([record["time"] for record in self.records()], [
            "2023-11-14T22:13:20.250+00:00", "2023-11-14T22:13:20.999+00:00",
            "2023-11-14T22:13:21.000+00:00", "2023-11-14T22:13:21.001+00:00",
            "2023-11-15T22:13:20.500+00:00"])

    def test_refused_request(self) -> None:
        """A refused request is audited with its status, outcome and reason."""

        class Deny:
            name = "deny"

            def request_headers(self, exchange: Exchange) -> None:
                raise Reject(403, "Your plan does not include this model",
                             reason="role free not allowed")

        self.successResultOf(run_filters([AuditFilter(self.audit_log), Deny()]))
        (record,) = self.records()
        self.assertEqual((record["status"], record["outcome"], record["reason"],
                          record["subject"]), (403, "denied", "role free not allowed", None))

    def test_timings_and_notes(self) -> None:
        """Times to first byte and to the end are in milliseconds; filters' notes are added."""
        exchange = make_exchange(subject="bob", role="pro")
        exchange.started, exchange.first_byte_at, exchange.finished_at = 100.0, 100.25, 101.5
        exchange.model, exchange.upstream, exchange.status = "llama3", "local", 200
        exchange.bytes_in, exchange.bytes_out = 12, 345
        exchange.notes = {"tokens_out": 17}
        AuditFilter(self.audit_log).done(exchange)
        (record,) = self.records()
        self.assertEqual((record["ttfb_ms"], record["duration_ms"]), (250.0, 1500.0))
        self.assertEqual((record["model"], record["upstream"], record["role"]),
                         ("llama3", "local", "pro"))
        self.assertEqual((record["bytes_in"], record["bytes_out"]), (12, 345))
        self.assertEqual(record["tokens_out"], 17)
        self.assertNotIn("reason", record)

    def test_one_line_whatever_happens(self) -> None:
        """A request whose runner part fails still leaves exactly one line."""

        class Broken:
            name = "broken"

            def request_headers(self, exchange: Exchange) -> None:
                raise RuntimeError("bug")

        self.successResultOf(run_filters([AuditFilter(self.audit_log), Broken()]))
        self.flushLoggedErrors(RuntimeError)
        (record,) = self.records()
        self.assertEqual((record["status"], record["outcome"]), (500, "error"))

    def test_built_from_settings(self) -> None:
        """From settings, the filter writes to the gateway's audit trail."""
        built = filter_from_settings("audit", audit_log=self.audit_log)
        self.assertIs(built.audit_log, self.audit_log)
