"""The ``Date`` response header, formatted at most once per second."""

from __future__ import annotations

from email.utils import formatdate

from twisted.internet.interfaces import IReactorTime

__all__ = ["DateHeader"]


class DateHeader:
    """The ``Date`` header text of the clock's current second (RFC 9110 IMF-fixdate)."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._second = -1
        self._text = ""

    def now(self) -> str:
        """The text for now; formatted again only when the second changed."""
        second = int(self._clock.seconds())
        if second != self._second:
            self._second = second
            self._text = formatdate(second, usegmt=True)
        return self._text
