"""Label values come from small fixed sets, whatever the client sent."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.metrics.labels import (
    OUTCOMES,
    REASON_KINDS,
    method_class,
    outcome_label,
    reason_kind,
    status_label,
)

__all__ = ["EveryOutcomeTests", "MethodClassTests", "OutcomeAndStatusTests", "ReasonKindTests"]


class MethodClassTests(SynchronousTestCase):
    """Methods are grouped: a client inventing methods adds no series."""

    def test_classes(self) -> None:
        """GET, HEAD and OPTIONS read; POST, PUT, PATCH and DELETE write; anything else is
        ``other``."""
        for method, expected in (("GET", "read"), ("HEAD", "read"), ("OPTIONS", "read"),
                                 ("POST", "write"), ("PUT", "write"), ("PATCH", "write"),
                                 ("DELETE", "write"), ("PROPFIND", "other"),
                                 ("XYZZY-1", "other")):
            with self.subTest(method=method):
                self.assertEqual(method_class(method), expected)


class OutcomeAndStatusTests(SynchronousTestCase):
    """Outcomes and statuses as the exchange recorded them, bounded."""

    def test_known_outcomes_kept(self) -> None:
        """The gateway's outcomes are labels as they are."""
        for outcome in ("ok", "denied", "refused", "client_gone", "upstream_error", "timeout",
                        "truncated", "error", "command_failed", "shutdown"):
            self.assertEqual(outcome_label(outcome), outcome)

    def test_other_outcomes(self) -> None:
        """An outcome some filter invented is counted as ``other``."""
        self.assertEqual(outcome_label("subject alice was rude"), "other")

    def test_status(self) -> None:
        """The status sent; 0 when the client got no response head."""
        self.assertEqual((status_label(200), status_label(503), status_label(0)),
                         ("200", "503", "0"))


class ReasonKindTests(SynchronousTestCase):
    """A reason's text (which may name a model, a role, a file) becomes its kind."""

    def test_the_filters_reasons(self) -> None:
        """The reasons the filters, terminals and server give map to their kinds."""
        for reason, kind in (
                ("token missing", "token"), ("token expired", "token"),
                ("websaas token invalid", "token"), ("role admin not allowed", "role"),
                ("model qwen2.5:7b not allowed", "model"), ("bad model name", "model"),
                ("alias of llama in the path", "model"), ("unknown endpoint", "endpoint"),
                ("management not allowed", "endpoint"), ("rate limited", "rate_limit"),
                ("concurrency limit", "concurrency"), ("daily token quota spent", "quota"),
                ("daily token quota reached", "quota"),
                ("prompt over the daily quota", "quota"),
                ("request body larger than 10 bytes", "body_too_large"),
                ("body not readable", "body"), ("queue full", "queue_full"),
                ("command failed (exit 1, signal None)", "command"),
                ("upload refused: too large", "form"),
                ("role limit: duration 300 > 60", "media_limit"),
                ("client disconnected before the response was complete", "client_gone"),
                ("client stopped reading the response", "client_timeout"),
                ("connect failed: ConnectionRefusedError", "upstream"),
                ("upstream closed the connection before answering", "upstream"),
                ("first byte timeout", "upstream"), ("runner sent nothing for 30s", "upstream"),
                ("internal error", "internal"), ("no runner serves this path", "not_found"),
                ("the gateway stopped before the answer was complete", "stopping"),
                (None, ""), ("", "")):
            with self.subTest(reason=reason):
                self.assertEqual(reason_kind(reason), kind)
                self.assertIn(kind, REASON_KINDS)

    def test_free_text_is_other(self) -> None:
        """A reason of no known kind is ``other``, never its text."""
        self.assertEqual(reason_kind("subject alice@example.com asked /secret/path"), "other")


class EveryOutcomeTests(SynchronousTestCase):
    """No outcome the gateway records falls into ``other`` by mistake."""

    def test_outcomes_set_in_the_code_are_labels(self) -> None:
        """Every ``exchange.outcome = "…"`` in the package is one of OUTCOMES (a drain's
        ``shutdown`` was once counted as ``other``)."""
        package = Path(__file__).resolve().parents[2] / "runnergw"
        found = set()
        for path in package.rglob("*.py"):
            found.update(re.findall(r'\.outcome = "([a-z_]+)"', path.read_text()))
        self.assertIn("shutdown", found)
        self.assertEqual(sorted(found - OUTCOMES), [])

