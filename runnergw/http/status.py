"""Reason phrases for status lines."""

from __future__ import annotations

from http import HTTPStatus

__all__ = ["reason_phrase"]


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (``Unknown`` for unregistered codes)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
