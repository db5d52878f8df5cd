"""``BadRequest``: what the server answers a request it cannot accept."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import runnergw.http
from runnergw.http.errors import BadRequest
from runnergw.http.status import reason_phrase

__all__ = ["BadRequestTests"]


def _raised_statuses() -> set[int]:
    """Every status the HTTP package builds a ``BadRequest`` with."""
    statuses = set()
    for path in Path(runnergw.http.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "BadRequest" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                statuses.add(node.args[0].value)
    return statuses


class BadRequestTests(SynchronousTestCase):
    """The status and message a refused client gets."""

    def test_status_and_message(self) -> None:
        """Both are kept for the answer and the audit trail."""
        error = BadRequest(431, "header block too large")
        self.assertEqual((error.status, error.message), (431, "header block too large"))
        self.assertEqual(error.args, (431, "header block too large"))
        self.assertIsInstance(error, Exception)

    def test_every_status_used_is_documented(self) -> None:
        """The statuses the server refuses with are those ``BadRequest`` lists, each with a
        standard reason phrase a client understands."""
        documented = {int(s) for s in re.findall(r"\b\d{3}\b", BadRequest.__doc__ or "")}
        used = _raised_statuses()
        self.assertTrue(used)
        self.assertLessEqual(used, documented)
        for status in used:
            with self.subTest(status=status):
                self.assertNotEqual(reason_phrase(status), "Unknown")
