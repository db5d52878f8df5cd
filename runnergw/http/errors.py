"""Errors raised while reading a request from a client."""

from __future__ import annotations

__all__ = ["BadRequest"]


class BadRequest(Exception):
    """The client sent something that is not acceptable HTTP; answered, then the connection closes.

    Attributes:
        status: 400, 408, 413, 414, 417, 431, 501 or 505.
        message: a short explanation for the client and the audit trail.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
