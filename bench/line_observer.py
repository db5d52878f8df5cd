"""A filter for the gateway bench that observes every streamed line, as token accounting will.

Each NDJSON line of ``/api/chat`` and ``/api/generate`` answers is parsed as JSON and counted;
nothing is changed. The bench runs the same streams through a runner with and without it.
"""

from __future__ import annotations

import json

from runnergw.chain.exchange import Exchange

__all__ = ["LineObserver"]


class LineObserver:
    """Counts the lines of streamed answers and the tokens the last one reports."""

    name = "lineObserver"

    def request_headers(self, exchange: Exchange) -> None:
        """Observe inference answers only."""
        if exchange.api_path in ("/api/chat", "/api/generate"):
            exchange.observe_response(self)
            exchange.notes["lines"] = 0

    def response_line(self, exchange: Exchange, line: bytes) -> None:
        """Parse and count one line."""
        exchange.notes["lines"] += 1
        if json.loads(line).get("done"):
            exchange.notes["lines_done"] = True
