"""The final error unit of a stream the gateway ends: an NDJSON line or an SSE event."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.final_error import final_error_unit, unit_separator

__all__ = ["FinalUnitTests"]

class FinalUnitTests(SynchronousTestCase):
    """The bytes of the final unit, and what must come before it."""

    def test_ndjson_line(self) -> None:
        """One JSON object line, as Ollama writes its errors."""
        self.assertEqual(final_error_unit("ndjson", 'a "quoted" stop'),
                         b'{"error": "a \\"quoted\\" stop"}\n')

    def test_sse_event(self) -> None:
        """One ``data:`` event in OpenAI's error shape, ended by a blank line."""
        unit = final_error_unit("sse", "stop")
        assert unit is not None
        self.assertTrue(unit.endswith(b"\n\n"))
        self.assertEqual(json.loads(unit[len(b"data: "):]),
                         {"error": {"message": "stop", "type": "api_error", "param": None,
                                    "code": None}})

    def test_other_framings_have_none(self) -> None:
        """A JSON body or raw bytes have no unit that could end them well."""
        self.assertIsNone(final_error_unit("json", "stop"))
        self.assertIsNone(final_error_unit("bytes", "stop"))

    def test_separators(self) -> None:
        """A unit cut short is ended before the final one; a whole one needs nothing."""
        for framing, tail, separator in (("ndjson", b"}\n", b""), ("ndjson", b'"}', b"\n"),
                                         ("ndjson", b"", b""), ("sse", b"\n\n", b""),
                                         ("sse", b"}\n", b"\n"), ("sse", b"}}", b"\n\n")):
            with self.subTest(framing=framing, tail=tail):
                self.assertEqual(unit_separator(framing, tail), separator)
