"""The last unit of a streamed answer the gateway has to end itself (it stops): an NDJSON
``{"error": "…"}`` line or an OpenAI-style SSE ``data: {"error": {…}}`` event, in the shapes
the runners' own errors have, so a client reads a well-formed end rather than a cut."""

from __future__ import annotations

import json

__all__ = ["RETRY_AFTER", "final_error_unit", "unit_separator"]

RETRY_AFTER = "10"
"""Seconds a client refused because the gateway stops is told to wait (another instance or
this one restarted answers by then)."""


def final_error_unit(framing: str, message: str) -> bytes | None:
    """The last unit, with its terminator, of an answer framed as ``framing`` (``ndjson``
    or ``sse``); None for another framing (such an answer has no unit to add)."""
    if framing == "ndjson":
        return json.dumps({"error": message}).encode() + b"\n"
    if framing == "sse":
        event = {"error": {"message": message, "type": "api_error", "param": None,
                           "code": None}}
        return b"data: " + json.dumps(event).encode() + b"\n\n"
    return None


def unit_separator(framing: str, tail: bytes) -> bytes:
    """What must come before a new unit when the answer relayed so far ends with ``tail``
    (its last two bytes): nothing after a whole line or event, else the end of the one cut
    short."""
    if framing == "ndjson":
        return b"" if not tail or tail.endswith(b"\n") else b"\n"
    if not tail or tail.endswith((b"\n\n", b"\r\r")):
        return b""
    return b"\n" if tail.endswith((b"\n", b"\r")) else b"\n\n"
