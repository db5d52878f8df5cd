"""Status lines: the one place they are written."""

from __future__ import annotations

import functools
from http import HTTPStatus

__all__ = ["reason_phrase", "status_line"]


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (``Unknown`` for unregistered codes)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@functools.lru_cache(maxsize=128)
def status_line(status: int) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n``: every response, interim or final, starts with one of these."""
    if not 100 <= status <= 999:
        raise ValueError(f"not an HTTP status: {status}")
    return f"HTTP/1.1 {status} {reason_phrase(status)}\r\n".encode("ascii")
